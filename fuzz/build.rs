//! Sets `cfg(coinflow_pure)` for this crate: the modules it compiles by path
//! (`coinflow_shared::text_enum!`, `etl/src/rows.rs`) leave their diesel parts out under
//! it, so row validation builds here without diesel.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(coinflow_pure)");
    println!("cargo::rustc-cfg=coinflow_pure");
}

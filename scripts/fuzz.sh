#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (nightly toolchain; cargo install cargo-fuzz
# --locked) for a given time each, then keeps every crash input as a regression case:
#
#   scripts/fuzz.sh [--seconds 60] [TARGET...]     # default: all targets
#
# Targets: header_detection, value_parsing, row_validation, cursor_decoding, sanitize.
# They link only pure modules (no diesel, polars or Rocket). A crash input found is
# copied to fuzz/regressions/<target>/ (rename it to say what it is); `cargo test`
# (shared/tests/fuzz_regressions.rs, etl/tests/fuzz_regressions.rs) replays every file
# there through the same checks, so commit it with the fix. Corpora stay in fuzz/corpus/
# (not committed). Exits 1 when a target found a crash.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT/fuzz"

seconds=60
targets=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --seconds) seconds=$2; shift ;;
        -h | --help) sed -n '2,12p' "$ROOT/scripts/fuzz.sh"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1") ;;
    esac
    shift
done
[[ ${#targets[@]} -gt 0 ]] || targets=(header_detection value_parsing row_validation cursor_decoding sanitize)

cargo +nightly fuzz --version >/dev/null 2>&1 ||
    { echo "cargo-fuzz is missing: cargo install cargo-fuzz (and rustup toolchain install nightly)" >&2; exit 1; }
# Its own target directory: the sanitizer build shares nothing with the normal one.
target_dir=${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}

found=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "regressions/$target"
    echo "=== $target: ${seconds}s"
    status=0
    # The kept regression inputs seed the corpus.
    cargo +nightly fuzz run --target-dir "$target_dir" -O "$target" "corpus/$target" "regressions/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 || status=$?
    for crash in artifacts/"$target"/crash-* artifacts/"$target"/oom-* artifacts/"$target"/timeout-*; do
        [[ -e $crash ]] || continue
        cp "$crash" "regressions/$target/"
        echo "kept $crash as regressions/$target/$(basename "$crash")"
        found=1
    done
    [[ $status -eq 0 ]] || found=1
done
if [[ $found -ne 0 ]]; then
    echo "crash inputs found: fix them, then commit fuzz/regressions/ (cargo test replays them)" >&2
    exit 1
fi
echo "no crash in ${#targets[@]} target(s) x ${seconds}s"

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coinflow_fuzz::shared_checks::cursor_decoding(data));

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coinflow_fuzz::row_checks::row_validation(data));

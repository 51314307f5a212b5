#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coinflow_fuzz::etl_checks::value_parsing(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| redial_fuzz::retry_after(data));

//! Fuzz target: see `pgpool_rs::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgpool_rs::fuzzing::config(data));

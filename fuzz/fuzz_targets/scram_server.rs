//! Fuzz target: see `pgpool_rs::fuzzing::scram_server`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgpool_rs::fuzzing::scram_server(data));

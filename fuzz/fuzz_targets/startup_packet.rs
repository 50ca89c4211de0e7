//! Fuzz target: see `pgpool_rs::fuzzing::startup_packet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgpool_rs::fuzzing::startup_packet(data));

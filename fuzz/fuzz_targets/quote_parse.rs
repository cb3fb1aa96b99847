//! Quote parser: strict and tolerant parse, canonical re-encoding, re-parse equality.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sgx_quote::fuzzing::parse_quote(data));

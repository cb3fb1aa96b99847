//! MAA claim-rule-grammar policies: parses the input as policy text and evaluates whatever
//! parses against fixed SGX claims (bounded parser and evaluator; no panic on any input).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| attestation::maa_policy::fuzz_entry(data));

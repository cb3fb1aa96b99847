//! Attestation server request path: `POST /attest/SgxEnclave` through the real router (real
//! verifier, set A's collateral, fixed clock), raw bodies and well-formed bodies around
//! mutated quotes; checks the status, the JSON error body and the token of every response.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| attestation::fuzzing::attest_request(data));

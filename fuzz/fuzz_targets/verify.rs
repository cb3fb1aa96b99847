#![no_main]
//! Fuzzes `dcap_verify` over (quote, collateral JSON) with an accept-all signature backend (feature
//! `dangerous-fuzzing`) so inputs reach TCB evaluation. Input: quote ‖ ff fe fd fc ‖ collateral JSON.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dcap_verify::fuzzing::verify(data);
});

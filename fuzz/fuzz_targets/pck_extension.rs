//! PCK SGX extension parser (and PEM chain splitting, certificate parsing) with re-encoding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sgx_quote::fuzzing::parse_pck_extension(data));

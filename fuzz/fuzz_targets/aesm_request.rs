//! AESM request path: frame split (bounded length prefix), protobuf decode, typed request,
//! re-encode and decode again.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aesm::fuzzing::request(data));

//! Integration tests of the webhook server (one test binary).

// Test helpers outside `#[test]` functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod fuzzish;
mod pki;
mod router;
mod tls;

use serde_json::Value;

/// An AdmissionReview body from the rules' hand-written test data.
pub fn review_body(name: &str) -> String {
    let path = format!(
        "{}/../sgx-k8s/testdata/admission/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

/// The JSON Patch of a response review (kube-core encodes the bytes as a JSON array of
/// numbers; the API server also accepts base64).
pub fn patch_of(review: &Value) -> Option<Value> {
    let bytes: Vec<u8> = serde_json::from_value(review["response"].get("patch")?.clone()).unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

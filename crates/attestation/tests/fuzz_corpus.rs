//! Replays the committed corpus of the `attest_request` fuzz target
//! (`fuzz/corpus/attest_request/`) through the same entry point, so stable CI catches
//! regressions without nightly. The named seeds are generated here (`CONFCOM_BLESS=1`
//! rewrites them) and each must still get its documented outcome.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use attestation::fuzzing::{
    HAS_DRAFT, HAS_INIT, HAS_NONCE, HAS_RUNTIME, INIT_JSON, Outcome, PATCHED_A, QUOTE, QUOTE_A,
    RUNTIME_JSON, STD_BASE64, attest_request, attest_request_outcome, fields_input, patch,
    raw_input,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/attest_request")
}

fn testdata(rel: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/dcap")
            .join(rel),
    )
    .unwrap()
}

fn ok() -> Outcome {
    Outcome {
        status: 200,
        code: None,
    }
}

fn err(status: u16, code: &str) -> Outcome {
    Outcome {
        status,
        code: Some(code.to_owned()),
    }
}

/// Offsets in set A's quote (v3): signature data length, QE auth data length, and the
/// certification data length (after 32 bytes of auth data and the type). The parser bounds
/// each length, so huge values are malformed rather than truncated.
const SIG_DATA_LEN: u16 = 432;
const AUTH_DATA_LEN: u16 = 1012;
const CERT_DATA_LEN: u16 = 1048;

/// (file name, input, expected outcome).
fn seeds() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    let b64 = |d: &[u8]| URL_SAFE_NO_PAD.encode(d);
    let raw = |v: serde_json::Value| raw_input(v.to_string().as_bytes());
    let a = |present: u8, fields: &[&[u8]]| {
        let mut f = vec![&[][..]];
        f.extend_from_slice(fields);
        fields_input(PATCHED_A, present, &f)
    };
    let patched = |offset: u16, keep: u16, bytes: &[u8]| {
        fields_input(PATCHED_A, 0, &[&patch(offset, keep, bytes)])
    };
    let flip = QUOTE_A[100] ^ 1;
    let deep = format!(
        "{{\"quote\":{}\"AAAA\"{}}}",
        "[".repeat(300),
        "]".repeat(300)
    );
    vec![
        (
            "valid-set-a-raw-body",
            raw(serde_json::json!({ "quote": b64(QUOTE_A) })),
            ok(),
        ),
        (
            "valid-set-a-nonce",
            a(HAS_NONCE, &[b"", b"", b"nonce-1"]),
            ok(),
        ),
        (
            "valid-set-a-standard-base64",
            fields_input(PATCHED_A | STD_BASE64, 0, &[]),
            ok(),
        ),
        (
            "valid-set-a-empty-draft-policy",
            a(HAS_DRAFT, &[b"", b"", b"", b""]),
            ok(),
        ),
        (
            "quote-truncated",
            patched(0, 600, &[]),
            err(400, "QuoteTruncated"),
        ),
        (
            "quote-empty",
            fields_input(QUOTE, 0, &[b""]),
            err(400, "QuoteTruncated"),
        ),
        (
            "quote-signature-corrupted",
            patched(100, u16::MAX, &[flip]),
            err(400, "QuoteVerificationFailed"),
        ),
        (
            "quote-unknown-tee-type",
            patched(4, u16::MAX, &[0x82]),
            err(400, "UnsupportedTee"),
        ),
        (
            "quote-huge-signature-data-length",
            patched(SIG_DATA_LEN, u16::MAX, &[0xff; 4]),
            err(400, "MalformedQuote"),
        ),
        (
            "quote-huge-auth-data-length",
            patched(AUTH_DATA_LEN, u16::MAX, &[0xff; 2]),
            err(400, "MalformedQuote"),
        ),
        (
            "quote-huge-cert-data-length",
            patched(CERT_DATA_LEN, u16::MAX, &[0xff; 4]),
            err(400, "MalformedQuote"),
        ),
        (
            "collateral-not-found-set-b",
            fields_input(
                QUOTE,
                0,
                &[&testdata(
                    "oasis-core/go/common/sgx/pcs/testdata/quote_v3_ecdsa_p256_pck_chain.bin",
                )],
            ),
            err(503, "CollateralNotFound"),
        ),
        (
            "bad-base64-quote",
            raw(serde_json::json!({ "quote": "not base64!!" })),
            err(400, "InvalidBase64"),
        ),
        (
            "bad-base64-runtime-data",
            raw(serde_json::json!({ "quote": "AAAA", "runtimeData": { "data": "%%%" } })),
            err(400, "InvalidBase64"),
        ),
        (
            "wrong-json-types",
            raw(serde_json::json!({ "quote": 5, "runtimeData": "x", "nonce": [] })),
            err(400, "InvalidRequest"),
        ),
        (
            "wrong-json-types-data-item",
            raw(
                serde_json::json!({ "quote": "AAAA", "runtimeData": { "data": 1, "dataType": 2 } }),
            ),
            err(400, "InvalidRequest"),
        ),
        (
            "deeply-nested-json",
            raw_input(deep.as_bytes()),
            err(400, "InvalidRequest"),
        ),
        (
            "runtime-data-mismatch",
            a(HAS_RUNTIME, &[b"hello"]),
            err(400, "RuntimeDataMismatch"),
        ),
        (
            "runtime-data-json-mismatch",
            fields_input(
                PATCHED_A | RUNTIME_JSON,
                HAS_RUNTIME,
                &[b"", b"{\"jwk\":{}}"],
            ),
            err(400, "RuntimeDataMismatch"),
        ),
        (
            "init-time-data-mismatch",
            fields_input(PATCHED_A | INIT_JSON, HAS_INIT, &[b"", b"", b"{}"]),
            err(400, "InitTimeDataMismatch"),
        ),
        (
            "draft-policy-deny",
            a(HAS_DRAFT, &[b"", b"", b"", b"mrsigner: [\"00\"]"]),
            err(401, "PolicyDenied"),
        ),
        (
            "draft-policy-invalid",
            a(HAS_DRAFT, &[b"", b"", b"", b"rules: 5"]),
            err(400, "InvalidRequest"),
        ),
        ("empty-body", raw_input(b""), err(400, "InvalidRequest")),
        ("empty-input", Vec::new(), err(400, "InvalidRequest")),
    ]
}

#[test]
fn corpus_replays_without_panics() {
    let dir = corpus_dir();
    if std::env::var_os("CONFCOM_BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes, _) in seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        attest_request(&data);
        n += 1;
    }
    // Every named seed is committed, and both the committed file and the seed as generated
    // now get its outcome (the fuzzer may have added more files). The bytes themselves may
    // differ: JSON key order depends on serde_json features unified across the workspace.
    let seeds = seeds();
    for (name, bytes, expected) in &seeds {
        let committed = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!("{name} is not committed ({e}): rerun with CONFCOM_BLESS=1")
        });
        assert_eq!(
            &attest_request_outcome(&committed),
            expected,
            "{name} (committed)"
        );
        assert_eq!(
            &attest_request_outcome(bytes),
            expected,
            "{name} (generated)"
        );
    }
    assert!(n >= seeds.len(), "only {n} corpus files");
}

//! Replays the committed fuzz corpus of the `aesm_request` target
//! (`fuzz/corpus/aesm_request/`) through the same entry point, so stable CI catches
//! regressions without nightly. `CONFCOM_BLESS=1` (re)writes the named seed files.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use aesm::frame::encode_frame;
use aesm::{ECDSA_P256_QE3_KEY_ID, Request, RequestKind};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/aesm_request")
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let f = |r: Request| encode_frame(&r.encode()).unwrap();
    let key = Some(ECDSA_P256_QE3_KEY_ID.to_vec());
    vec![
        (
            "seed-init-quote-ex-probe",
            f(Request::InitQuoteEx {
                att_key_id: key.clone(),
                b_pub_key_id: false,
                buf_size: Some(u64::MAX),
            }),
        ),
        (
            "seed-init-quote-ex",
            f(Request::InitQuoteEx {
                att_key_id: key.clone(),
                b_pub_key_id: true,
                buf_size: Some(32),
            }),
        ),
        (
            "seed-get-quote-size-ex",
            f(Request::GetQuoteSizeEx {
                att_key_id: key.clone(),
            }),
        ),
        (
            "seed-get-quote-ex",
            f(Request::GetQuoteEx {
                report: vec![0; 432],
                att_key_id: key.clone(),
                qe_report_info: Some(vec![0; 960]),
                buf_size: 8192,
            }),
        ),
        (
            "seed-select-att-key-id",
            f(Request::SelectAttKeyId {
                att_key_id_list: Some({
                    let mut l = vec![0, 0, 0, 0, 1, 0, 0, 0];
                    l.extend_from_slice(&ECDSA_P256_QE3_KEY_ID);
                    l
                }),
            }),
        ),
        (
            "seed-get-supported-num",
            f(Request::GetSupportedAttKeyIdNum),
        ),
        (
            "seed-get-supported-ids",
            f(Request::GetSupportedAttKeyIds { buf_size: 256 }),
        ),
        (
            "seed-epid-get-quote",
            f(Request::Unsupported(RequestKind::GetQuote)),
        ),
        ("seed-4gib-prefix", vec![0xff, 0xff, 0xff, 0xff]),
        ("seed-truncated", vec![100, 0, 0, 0, 0x8a, 0x01]),
        ("seed-empty-request", vec![0, 0, 0, 0]),
        ("seed-unknown-field", vec![2, 0, 0, 0, 0xf0, 0x01]),
    ]
}

#[test]
fn corpus_replays_without_panics() {
    let dir = corpus_dir();
    if std::env::var_os("CONFCOM_BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        aesm::fuzzing::request(&data);
        n += 1;
    }
    // Every named seed is committed (the fuzzer may have added more).
    for (name, bytes) in seeds() {
        assert_eq!(
            std::fs::read(dir.join(name)).unwrap(),
            bytes,
            "{name} is stale: rerun with CONFCOM_BLESS=1"
        );
    }
    assert!(n >= seeds().len());
}

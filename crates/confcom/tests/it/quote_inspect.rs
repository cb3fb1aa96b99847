//! Tests of the `confcom` subcommand implemented in `src/cmd/quote_inspect.rs`.
//!
//! Expected values come from `testdata/dcap/INDEX.md` ("QE isvsvn" there is the ISVSVN of
//! the QE report inside the signature data, printed here as `qe_report.isv_svn`).

// Test helpers (not `#[test]` functions themselves) unwrap too.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use base64::Engine;
use serde_json::Value;

use super::{confcom, testdata};

/// A real quote and what INDEX.md says about it.
struct Case {
    path: &'static str,
    version: u64,
    tee: &'static str,
    cert_data_type: u64,
    qe_isvsvn: u64,
    trailing: u64,
    /// FMSPC and PCK CA type, for quotes carrying a PCK chain.
    pck: Option<(&'static str, &'static str)>,
}

const CASES: &[Case] = &[
    Case {
        path: "dcap/dcap-qvl/sample/sgx_quote",
        version: 3,
        tee: "sgx",
        cert_data_type: 5,
        qe_isvsvn: 10,
        trailing: 0,
        pck: Some(("00a067110000", "processor")),
    },
    Case {
        path: "dcap/oasis-core/go/common/sgx/pcs/testdata/quote_v3_ecdsa_p256_pck_chain.bin",
        version: 3,
        tee: "sgx",
        cert_data_type: 5,
        qe_isvsvn: 9,
        trailing: 0,
        pck: Some(("00606a000000", "platform")),
    },
    Case {
        path: "dcap/oasis-core/go/common/sgx/pcs/testdata/quote_v3_ecdsa_p256_eppid.bin",
        version: 3,
        tee: "sgx",
        cert_data_type: 3,
        qe_isvsvn: 7,
        trailing: 0,
        pck: None,
    },
    Case {
        path: "dcap/rust-sgx/intel-sgx/pcs/tests/data/quote.bin",
        version: 3,
        tee: "sgx",
        cert_data_type: 5,
        qe_isvsvn: 5,
        trailing: 0,
        pck: Some(("00906ea10000", "processor")),
    },
    Case {
        path: "dcap/rust-sgx/intel-sgx/dcap-ql/tests/quote_pck_cert_chain.bin",
        version: 3,
        tee: "sgx",
        cert_data_type: 5,
        qe_isvsvn: 2,
        trailing: 0,
        pck: Some(("00906ea10000", "processor")),
    },
    Case {
        path: "dcap/rust-sgx/intel-sgx/dcap-ql/tests/quote_pck_cert_chain_corrupted.bin",
        version: 3,
        tee: "sgx",
        cert_data_type: 5,
        qe_isvsvn: 2,
        trailing: 0,
        pck: Some(("00906ea10000", "processor")),
    },
    Case {
        path: "dcap/rust-sgx/intel-sgx/dcap-ql/tests/quote_raw_tcb.bin",
        version: 3,
        tee: "sgx",
        cert_data_type: 3,
        qe_isvsvn: 1,
        trailing: 0,
        pck: None,
    },
    Case {
        path: "dcap/automata-dcap-attestation/rust-crates/samples/quotev3.hex",
        version: 3,
        tee: "sgx",
        cert_data_type: 5,
        qe_isvsvn: 9,
        trailing: 0,
        pck: Some(("00606a000000", "platform")),
    },
    Case {
        path: "dcap/SGX-TDX-DCAP-QuoteVerificationLibrary/Src/AttestationApp/sampleData/quote.dat",
        version: 3,
        tee: "sgx",
        cert_data_type: 1,
        qe_isvsvn: 1,
        trailing: 0,
        pck: None,
    },
    Case {
        path: "dcap/dcap-qvl/sample/tdx_quote",
        version: 4,
        tee: "tdx",
        cert_data_type: 5,
        qe_isvsvn: 6,
        trailing: 70,
        pck: Some(("b0c06f000000", "platform")),
    },
];

fn inspect_json(path: &Path) -> Value {
    let out = confcom(&["quote", "inspect", path.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object on one line");
    serde_json::from_str(&stdout).unwrap()
}

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 2 * len && s.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn json_of_every_real_quote_matches_the_index() {
    for c in CASES {
        let j = inspect_json(&testdata(c.path));
        let ctx = c.path;
        assert_eq!(j["version"], c.version, "{ctx}");
        assert_eq!(j["tee"], c.tee, "{ctx}");
        assert_eq!(j["att_key_type"], "ecdsa-p256", "{ctx}");
        assert_eq!(j["cert_data_type"], c.cert_data_type, "{ctx}");
        assert_eq!(j["qe_report"]["isv_svn"], c.qe_isvsvn, "{ctx}");
        // Intel's QE also writes its ISVSVN into the v3 header; only the synthetic Intel QVL
        // sample (header 0) and v4 quotes (reserved, zero) differ.
        if c.version == 3 && !c.path.contains("sampleData") {
            assert_eq!(j["qe_svn"], c.qe_isvsvn, "{ctx}");
        }
        assert_eq!(j["trailing_bytes"], c.trailing, "{ctx}");
        assert_eq!(
            j["qe_vendor_id"], "939a7233f79c4ca9940a0db3957f0607",
            "{ctx}"
        );
        assert!(j["qe_svn"].is_u64() && j["pce_svn"].is_u64(), "{ctx}");
        assert!(is_hex(&j["report_data"], 64), "{ctx}");
        assert!(j["attributes"]["debug"].is_boolean(), "{ctx}");
        if c.tee == "sgx" {
            assert!(is_hex(&j["mr_enclave"], 32), "{ctx}");
            assert!(is_hex(&j["mr_signer"], 32), "{ctx}");
            assert!(is_hex(&j["attributes"]["hex"], 16), "{ctx}");
            assert!(j["isv_prod_id"].is_u64() && j["isv_svn"].is_u64(), "{ctx}");
        } else {
            assert!(is_hex(&j["td"]["mr_td"], 48), "{ctx}");
        }
        match c.pck {
            Some((fmspc, ca)) => {
                assert_eq!(j["fmspc"], fmspc, "{ctx}");
                assert_eq!(j["pck_ca"], ca, "{ctx}");
                assert_eq!(j["pce_id"], "0000", "{ctx}");
                assert_eq!(j["pck_chain_len"], 3, "{ctx}");
                let comps = j["tcb"]["comp_svn"].as_array().unwrap();
                assert_eq!(comps.len(), 16, "{ctx}");
                assert!(comps.iter().all(|v| v.as_u64().is_some_and(|n| n <= 255)));
                assert!(j["tcb"]["pce_svn"].is_u64(), "{ctx}");
                assert!(is_hex(&j["tcb"]["cpu_svn"], 16), "{ctx}");
            }
            None => {
                if c.cert_data_type == 3 {
                    // Encrypted PPID: the PCK certificate id instead of a chain.
                    assert_eq!(j["pck_cert_id"]["pce_id"], "0000", "{ctx}");
                    assert_eq!(j["pck_cert_id"]["pce_svn"], j["pce_svn"], "{ctx}");
                    assert!(is_hex(&j["pck_cert_id"]["ppid"], 384), "{ctx}");
                }
                assert!(j.get("fmspc").is_none(), "{ctx}");
                assert!(j.get("tcb").is_none(), "{ctx}");
            }
        }
    }
}

#[test]
fn json_fields_of_set_a_are_pinned() {
    let j = inspect_json(&testdata("dcap/dcap-qvl/sample/sgx_quote"));
    // Header values read from the file (little-endian u16 at offsets 8 and 10).
    assert_eq!(j["qe_svn"], 10);
    assert_eq!(j["pce_svn"], 15);
    assert_eq!(j["attributes"]["debug"], false);
    assert_eq!(j["input_encoding"], "binary");
    assert_eq!(j["quote_len"], 4600);
    assert_eq!(j["signed_region_len"], 432);
}

#[test]
fn hex_and_base64_inputs_decode_to_the_same_quote() {
    let bin_path = testdata("dcap/dcap-qvl/sample/sgx_quote");
    let bin = std::fs::read(&bin_path).unwrap();
    let reference = inspect_json(&bin_path);
    let dir = tempfile::tempdir().unwrap();

    // 0x-prefixed hex with line breaks and a trailing newline.
    let hex_text: String = format!("0x{}\n", hex::encode(&bin))
        .as_bytes()
        .chunks(64)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    let hex_path = dir.path().join("quote.hex");
    std::fs::write(&hex_path, hex_text).unwrap();
    let from_hex = inspect_json(&hex_path);
    assert_eq!(from_hex["input_encoding"], "hex");

    let b64_path = dir.path().join("quote.b64");
    std::fs::write(
        &b64_path,
        base64::engine::general_purpose::STANDARD.encode(&bin) + "\n",
    )
    .unwrap();
    let from_b64 = inspect_json(&b64_path);
    assert_eq!(from_b64["input_encoding"], "base64");

    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("input_encoding");
        v
    };
    assert_eq!(strip(from_hex), strip(reference.clone()));
    assert_eq!(strip(from_b64), strip(reference));

    // The bundled automata quote is a hex file (0x-prefixed, newline-terminated).
    let automata = inspect_json(&testdata(
        "dcap/automata-dcap-attestation/rust-crates/samples/quotev3.hex",
    ));
    assert_eq!(automata["input_encoding"], "hex");
}

#[test]
fn human_summary_names_the_key_fields() {
    let out = confcom(&[
        "quote",
        "inspect",
        testdata("dcap/oasis-core/go/common/sgx/pcs/testdata/quote_v3_ecdsa_p256_pck_chain.bin")
            .to_str()
            .unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("v3 SGX"), "{text}");
    assert!(text.contains("FMSPC 00606a000000"), "{text}");
    assert!(text.contains("platform CA"), "{text}");
    assert!(text.contains("MRENCLAVE"), "{text}");
    assert!(text.contains("type 5 (PCK certificate chain)"), "{text}");
}

/// Runs inspect on `bytes` and returns the one stderr line after checking exit code 2.
fn bad_file(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.bin");
    std::fs::write(&path, bytes).unwrap();
    let mut lines = Vec::new();
    for json in [false, true] {
        let mut args = vec!["quote", "inspect", path.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let out = confcom(&args);
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        lines.push(err);
    }
    assert_eq!(lines[0], lines[1], "--json does not change the error line");
    lines.remove(0)
}

#[test]
fn bad_files_exit_2_with_one_line_naming_field_and_offset() {
    let quote = std::fs::read(testdata("dcap/dcap-qvl/sample/sgx_quote")).unwrap();

    let err = bad_file(&quote[..1000]);
    assert!(
        err.contains("truncated signature_data at offset 436"),
        "{err}"
    );

    let mut v6 = quote.clone();
    v6[0] = 6;
    let err = bad_file(&v6);
    assert!(err.contains("unsupported quote version 6"), "{err}");
    assert!(
        err.contains("header.version") && err.contains("offset 0"),
        "{err}"
    );

    let mut big = quote.clone();
    big[1012..1014].copy_from_slice(&0xffffu16.to_le_bytes());
    let err = bad_file(&big);
    assert!(
        err.contains("qe_auth_data.size") && err.contains("offset 1012"),
        "{err}"
    );

    let err = bad_file(b"hello, this is not a quote\n");
    assert!(err.contains("neither hex nor base64"), "{err}");

    let err = bad_file(b"");
    assert!(
        err.contains("truncated header.version at offset 0"),
        "{err}"
    );
}

#[test]
fn missing_file_exits_2() {
    let out = confcom(&["quote", "inspect", "/nonexistent/quote.bin"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
}

//! Tests of the `confcom` subcommand implemented in `src/cmd/verify.rs`.

use super::{confcom, testdata};

const SET_A_TIME: &str = "1751624924";

fn set_a_args<'a>(extra: &[&'a str], q: &'a str, c: &'a str) -> Vec<&'a str> {
    let mut v = vec!["verify", "--quote", q, "--collateral", c];
    v.extend_from_slice(extra);
    v
}

#[test]
fn set_a_verifies_with_status_and_advisories() {
    let q = testdata("dcap/dcap-qvl/sample/sgx_quote");
    let c = testdata("dcap/dcap-qvl/sample/sgx_quote_collateral.json");
    let (q, c) = (q.to_str().unwrap(), c.to_str().unwrap());
    let out = confcom(&set_a_args(&["--at", SET_A_TIME], q, c));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("status: ConfigurationAndSWHardeningNeeded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("INTEL-SA-00289, INTEL-SA-00615"),
        "{stdout}"
    );
}

#[test]
fn json_output_has_the_documented_fields() {
    let q = testdata("dcap/dcap-qvl/sample/sgx_quote");
    let c = testdata("dcap/dcap-qvl/sample/sgx_quote_collateral.json");
    let (q, c) = (q.to_str().unwrap(), c.to_str().unwrap());
    let out = confcom(&set_a_args(&["--at", SET_A_TIME, "--json"], q, c));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(
        v["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(v["fmspc"], "00A067110000");
    assert_eq!(v["debug"], false);
    for k in [
        "mr_enclave",
        "mr_signer",
        "isv_prod_id",
        "isv_svn",
        "report_data",
        "valid_until",
    ] {
        assert!(!v[k].is_null(), "{k} missing in {v}");
    }
    assert_eq!(v["mr_enclave"].as_str().unwrap().len(), 64);
    assert_eq!(v["report_data"].as_str().unwrap().len(), 128);
    // valid_until: the earliest expiry, the QE identity's nextUpdate 2025-07-19T10:01:18Z.
    assert_eq!(v["valid_until"], 1752919278);
}

#[test]
fn expired_collateral_fails_with_one_line_naming_the_step() {
    let q = testdata("dcap/dcap-qvl/sample/sgx_quote");
    let c = testdata("dcap/dcap-qvl/sample/sgx_quote_collateral.json");
    let (q, c) = (q.to_str().unwrap(), c.to_str().unwrap());
    let out = confcom(&set_a_args(&["--at", "1800000000"], q, c));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("expired at"), "{stderr}");
    // --allow-expired turns it into a flag.
    let out = confcom(&set_a_args(
        &["--at", "1800000000", "--allow-expired", "--json"],
        q,
        c,
    ));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["collateral_expired"], true);
}

#[test]
fn corrupted_quote_fails_naming_the_quote_signature() {
    // bad-1 with set D's collateral is covered in the library; here: a flipped byte in set A's report body.
    let q = std::fs::read(testdata("dcap/dcap-qvl/sample/sgx_quote")).unwrap();
    let mut bad = q.clone();
    bad[100] ^= 1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quote.bin");
    std::fs::write(&path, &bad).unwrap();
    let c = testdata("dcap/dcap-qvl/sample/sgx_quote_collateral.json");
    let out = confcom(&set_a_args(
        &["--at", SET_A_TIME],
        path.to_str().unwrap(),
        c.to_str().unwrap(),
    ));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "verification failed: quote signature invalid"
    );
}

#[test]
fn collateral_dir_of_pcs_responses_set_e() {
    // Set E: automata's PCS bodies + CRLs; the TCB signing chain comes from set A's collateral.
    let dir = tempfile::tempdir().unwrap();
    let a: serde_json::Value = serde_json::from_slice(
        &std::fs::read(testdata("dcap/dcap-qvl/sample/sgx_quote_collateral.json")).unwrap(),
    )
    .unwrap();
    let chain = a["tcb_info_issuer_chain"].as_str().unwrap();
    let assets = "dcap/automata-dcap-attestation/evm/forge-test/assets/0825";
    let copy = |from: String, to: &str| {
        std::fs::copy(testdata(&from), dir.path().join(to)).unwrap();
    };
    copy(
        format!("{assets}/sgx_tcbinfov3_00606a000000.json"),
        "tcb_info.json",
    );
    copy(
        format!("{assets}/sgx_qeidentity_v4.json"),
        "qe_identity.json",
    );
    copy(format!("{assets}/platform_crl.der"), "pck_crl.der");
    copy(
        "dcap/automata-dcap-attestation/solana/automata-dcap-framework/tests/data/intel_root_ca_crl.der"
            .into(),
        "root_ca_crl.der",
    );
    std::fs::write(dir.path().join("tcb_info_issuer_chain.pem"), chain).unwrap();
    std::fs::write(dir.path().join("qe_identity_issuer_chain.pem"), chain).unwrap();
    let q = testdata("dcap/automata-dcap-attestation/rust-crates/samples/quotev3.hex");
    let out = confcom(&[
        "verify",
        "--quote",
        q.to_str().unwrap(),
        "--collateral-dir",
        dir.path().to_str().unwrap(),
        "--at",
        "1756530546",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "SWHardeningNeeded");
    assert_eq!(v["advisory_ids"], serde_json::json!(["INTEL-SA-00615"]));
}

/// Raw r‖s from a DER `ECDSA-Sig-Value` (SEQUENCE of two short INTEGERs), for the Fortanix files of set C.
fn der_sig_to_raw(der: &[u8]) -> String {
    assert_eq!(der[0], 0x30);
    let mut out = Vec::new();
    let mut i = 2;
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = usize::from(der[i + 1]);
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    hex::encode(out)
}

/// Set C (Fortanix `.tcb` / `.id` / `.crl`) as a dcap-qvl JSON collateral file.
fn set_c_collateral(dir: &std::path::Path) -> std::path::PathBuf {
    use base64::Engine;
    let data = "dcap/rust-sgx/intel-sgx/pcs/tests/data";
    let load = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(testdata(&format!("{data}/{f}"))).unwrap()).unwrap()
    };
    let sig = |v: &serde_json::Value| {
        let b: Vec<u8> = v["signature"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| u8::try_from(x.as_u64().unwrap()).unwrap())
            .collect();
        der_sig_to_raw(&b)
    };
    let chain = |v: &serde_json::Value| {
        v["ca_chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let tcb = load("00906ea10000.tcb");
    let qe = load("qe3_identity.id");
    let crl = load("processor.crl");
    let crl_b64: String = crl["crl"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let crl_der = base64::engine::general_purpose::STANDARD
        .decode(crl_b64)
        .unwrap();
    let json = serde_json::json!({
        "tcb_info": tcb["raw_tcb_info"],
        "tcb_info_signature": sig(&tcb),
        "tcb_info_issuer_chain": chain(&tcb),
        "qe_identity": qe["raw_enclave_identity"],
        "qe_identity_signature": sig(&qe),
        "qe_identity_issuer_chain": chain(&qe),
        "pck_crl": hex::encode(crl_der),
        "pck_crl_issuer_chain": chain(&crl),
        "root_ca_crl": "",
    });
    let path = dir.join("set_c.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

#[test]
fn debug_enclave_needs_allow_debug() {
    // Set C's quote is a debug enclave; its collateral carries no root CA CRL.
    let dir = tempfile::tempdir().unwrap();
    let c = set_c_collateral(dir.path());
    let q = testdata("dcap/rust-sgx/intel-sgx/pcs/tests/data/quote.bin");
    let (q, c) = (q.to_str().unwrap(), c.to_str().unwrap());
    let base = ["--at", "1591358400", "--allow-missing-crls"];
    let out = confcom(&set_a_args(&base, q, c));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "verification failed: policy: debug enclave rejected"
    );
    let out = confcom(&set_a_args(
        &[&base[..], &["--allow-debug", "--json"]].concat(),
        q,
        c,
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "SWHardeningNeeded");
    assert_eq!(v["debug"], true);
    // Without --allow-missing-crls the missing root CA CRL is named.
    let out = confcom(&set_a_args(&["--at", "1591358400", "--allow-debug"], q, c));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("root CA CRL missing"));
}

#[test]
fn wrong_root_is_rejected() {
    let q = testdata("dcap/dcap-qvl/sample/sgx_quote");
    let c = testdata("dcap/dcap-qvl/sample/sgx_quote_collateral.json");
    let root = testdata(
        "dcap/SGX-TDX-DCAP-QuoteVerificationLibrary/Src/AttestationApp/sampleData/trustedRootCaCert.pem",
    );
    let out = confcom(&set_a_args(
        &["--at", SET_A_TIME, "--root", root.to_str().unwrap()],
        q.to_str().unwrap(),
        c.to_str().unwrap(),
    ));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("trusted root"), "{stderr}");
}

#[test]
fn unsupported_cert_data_type_3_says_pck_certificate_needed() {
    let q = testdata("dcap/oasis-core/go/common/sgx/pcs/testdata/quote_v3_ecdsa_p256_eppid.bin");
    let c = testdata("dcap/dcap-qvl/sample/sgx_quote_collateral.json");
    let out = confcom(&set_a_args(
        &["--at", SET_A_TIME],
        q.to_str().unwrap(),
        c.to_str().unwrap(),
    ));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PCK certificate is needed"), "{stderr}");
}

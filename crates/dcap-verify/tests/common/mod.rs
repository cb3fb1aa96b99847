//! Test helpers: the verification sets A–F of `testdata/dcap/INDEX.md`, with the Fortanix, oasis and automata
//! collateral forms converted to [`Collateral`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod pki;

use std::path::PathBuf;

use dcap_verify::{Collateral, PcsResponses, TrustAnchors, UnixTime};
use der::Decode;

pub fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dcap")
        .join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    std::fs::read(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn read_str(rel: &str) -> String {
    String::from_utf8(read(rel)).unwrap()
}

/// A quote file: binary, or ASCII hex (optionally `0x`-prefixed).
pub fn quote(rel: &str) -> Vec<u8> {
    let b = read(rel);
    if rel.ends_with(".hex") {
        let s = String::from_utf8(b).unwrap();
        let s = s.trim();
        hex::decode(s.strip_prefix("0x").unwrap_or(s)).unwrap()
    } else {
        b
    }
}

/// DER ECDSA signature → raw r‖s.
pub fn der_sig_to_raw(der: &[u8]) -> Vec<u8> {
    let ints: Vec<der::asn1::UintRef<'_>> = Vec::from_der(der).unwrap();
    assert_eq!(ints.len(), 2);
    let mut out = Vec::new();
    for i in ints {
        let b = i.as_bytes();
        assert!(b.len() <= 32);
        out.extend(std::iter::repeat_n(0u8, 32 - b.len()));
        out.extend_from_slice(b);
    }
    out
}

/// A Fortanix `.tcb` / `.id` file: (signed text, raw signature, PEM chain).
pub fn fortanix_signed(rel: &str, key: &str) -> (String, Vec<u8>, String) {
    let v: serde_json::Value = serde_json::from_slice(&read(rel)).unwrap();
    let text = v[key].as_str().unwrap().to_owned();
    let sig: Vec<u8> = v["signature"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect();
    let chain = v["ca_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    (text, der_sig_to_raw(&sig), chain)
}

/// A Fortanix `.crl` file: (DER CRL, PEM chain).
pub fn fortanix_crl(rel: &str) -> (Vec<u8>, String) {
    let v: serde_json::Value = serde_json::from_slice(&read(rel)).unwrap();
    let crl = pem::parse(v["crl"].as_str().unwrap())
        .unwrap()
        .into_contents();
    let chain = v["ca_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    (crl, chain)
}

/// One verification set.
pub struct Set {
    pub name: &'static str,
    pub quote: Vec<u8>,
    pub collateral: Collateral,
    pub anchors: TrustAnchors,
    /// Needs `Policy::allow_missing_crls(true)`.
    pub missing_crls: bool,
    /// The attested enclave is a debug enclave (needs `Policy::allow_debug(true)`).
    pub debug: bool,
    pub expected_status: &'static str,
    pub expected_advisories: Vec<&'static str>,
}

impl Set {
    /// The policy the set needs (missing CRLs / debug allowed where the set requires it).
    pub fn policy(&self) -> dcap_verify::Policy {
        dcap_verify::Policy::default()
            .allow_missing_crls(self.missing_crls)
            .allow_debug(self.debug)
    }

    /// A time inside the window common to the TCB info, QE identity and CRLs (their midpoint), computed from the
    /// collateral so the tests never expire.
    pub fn time(&self) -> UnixTime {
        let (s, e) = window(&self.collateral);
        assert!(s < e, "{}: empty collateral window {s}..{e}", self.name);
        UnixTime(s + (e - s) / 2)
    }
}

fn date(s: &str) -> u64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
        .try_into()
        .unwrap()
}

/// (latest start, earliest end) over TCB info, QE identity and the CRLs.
pub fn window(c: &Collateral) -> (u64, u64) {
    let mut start = 0u64;
    let mut end = u64::MAX;
    for text in [&c.tcb_info, &c.qe_identity] {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        start = start.max(date(v["issueDate"].as_str().unwrap()));
        end = end.min(date(v["nextUpdate"].as_str().unwrap()));
    }
    for crl in [&c.pck_crl, &c.root_ca_crl] {
        if crl.is_empty() {
            continue;
        }
        let l = x509_cert::crl::CertificateList::from_der(crl).unwrap();
        start = start.max(l.tbs_cert_list.this_update.to_unix_duration().as_secs());
        end = end.min(
            l.tbs_cert_list
                .next_update
                .unwrap()
                .to_unix_duration()
                .as_secs(),
        );
    }
    (start, end)
}

const OASIS: &str = "oasis-core/go/common/sgx/pcs/testdata";
const FORTANIX_PCS: &str = "rust-sgx/intel-sgx/pcs/tests/data";
const FORTANIX_QL: &str = "rust-sgx/intel-sgx/dcap-ql/tests";
const AUTOMATA: &str = "automata-dcap-attestation";
const INTEL: &str = "SGX-TDX-DCAP-QuoteVerificationLibrary/Src/AttestationApp/sampleData";

pub fn set_a() -> Set {
    Set {
        name: "A",
        quote: quote("dcap-qvl/sample/sgx_quote"),
        collateral: Collateral::from_json(&read("dcap-qvl/sample/sgx_quote_collateral.json"))
            .unwrap(),
        anchors: TrustAnchors::intel(),
        missing_crls: false,
        debug: false,
        expected_status: "ConfigurationAndSWHardeningNeeded",
        expected_advisories: vec!["INTEL-SA-00289", "INTEL-SA-00615"],
    }
}

/// Set B collateral with the given TCB signing chain file.
pub fn set_b_with_chain(chain_file: &str) -> Set {
    let chain = read(&format!("{OASIS}/{chain_file}"));
    let tcb = read(&format!("{OASIS}/tcb_info_v3_fmspc_00606A000000.json"));
    let qe = read(&format!("{OASIS}/qe_identity_v2.json"));
    let collateral = Collateral::from_pcs(PcsResponses {
        tcb_info: &tcb,
        tcb_info_issuer_chain: &chain,
        qe_identity: &qe,
        qe_identity_issuer_chain: &chain,
        ..PcsResponses::default()
    })
    .unwrap();
    Set {
        name: "B",
        quote: quote(&format!("{OASIS}/quote_v3_ecdsa_p256_pck_chain.bin")),
        collateral,
        anchors: TrustAnchors::intel(),
        missing_crls: true,
        debug: false,
        expected_status: "SWHardeningNeeded",
        expected_advisories: vec!["INTEL-SA-00615", "INTEL-SA-00657"],
    }
}

pub fn set_b() -> Set {
    set_b_with_chain("tcb_info_v3_fmspc_00606A000000_certs.pem")
}

/// Sets C and D share the Fortanix TCB info and processor CRL.
fn fortanix_collateral(tcb_file: &str, qe: (String, Vec<u8>, String)) -> Collateral {
    let (tcb_info, tcb_info_signature, tcb_chain) = fortanix_signed(tcb_file, "raw_tcb_info");
    let (pck_crl, pck_crl_chain) = fortanix_crl(&format!("{FORTANIX_PCS}/processor.crl"));
    Collateral {
        pck_crl_issuer_chain: pck_crl_chain,
        root_ca_crl: Vec::new(),
        pck_crl,
        tcb_info_issuer_chain: tcb_chain,
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain: qe.2,
        qe_identity: qe.0,
        qe_identity_signature: qe.1,
        pck_certificate_chain: None,
    }
}

pub fn set_c_from(dir: &str) -> Set {
    let qe = fortanix_signed(&format!("{dir}/qe3_identity.id"), "raw_enclave_identity");
    Set {
        name: "C",
        quote: quote(&format!("{FORTANIX_PCS}/quote.bin")),
        collateral: fortanix_collateral(&format!("{dir}/00906ea10000.tcb"), qe),
        anchors: TrustAnchors::intel(),
        missing_crls: true,
        debug: true,
        expected_status: "SWHardeningNeeded",
        expected_advisories: vec![],
    }
}

pub fn set_c() -> Set {
    set_c_from(FORTANIX_PCS)
}

/// Set D with the given QE identity file (PCS body) from dcap-ql's tests.
pub fn set_d_with_identity(file: &str) -> Set {
    let (tcb_text, _, chain) =
        fortanix_signed(&format!("{FORTANIX_PCS}/00906ea10000.tcb"), "raw_tcb_info");
    let _ = tcb_text;
    let body = read(&format!("{FORTANIX_QL}/{file}"));
    let (text, sig) = split_pcs(&body, "enclaveIdentity");
    Set {
        name: "D",
        quote: quote(&format!("{FORTANIX_QL}/quote_pck_cert_chain.bin")),
        collateral: fortanix_collateral(
            &format!("{FORTANIX_PCS}/00906ea10000.tcb"),
            (text, sig, chain),
        ),
        anchors: TrustAnchors::intel(),
        missing_crls: true,
        debug: true,
        expected_status: "OutOfDate",
        expected_advisories: vec![],
    }
}

pub fn set_d() -> Set {
    set_d_with_identity("qe3_identity.json")
}

/// The exact inner object of a PCS body and its signature, through the crate's own PCS constructor.
pub fn split_pcs(body: &[u8], key: &str) -> (String, Vec<u8>) {
    let dummy = br#"{"tcbInfo":{},"signature":""}"#;
    let dummy_qe = br#"{"enclaveIdentity":{},"signature":""}"#;
    let c = if key == "enclaveIdentity" {
        Collateral::from_pcs(PcsResponses {
            tcb_info: dummy,
            qe_identity: body,
            ..PcsResponses::default()
        })
        .unwrap()
    } else {
        Collateral::from_pcs(PcsResponses {
            tcb_info: body,
            qe_identity: dummy_qe,
            ..PcsResponses::default()
        })
        .unwrap()
    };
    if key == "enclaveIdentity" {
        (c.qe_identity, c.qe_identity_signature)
    } else {
        (c.tcb_info, c.tcb_info_signature)
    }
}

/// The 2025 TCB signing chain (same key as the 2018 one), taken from set A's collateral: the automata sets carry no
/// issuer chain.
fn tcb_chain_2025() -> String {
    set_a().collateral.tcb_info_issuer_chain
}

pub fn set_e() -> Set {
    let chain = tcb_chain_2025();
    let tcb = read(&format!(
        "{AUTOMATA}/evm/forge-test/assets/0825/sgx_tcbinfov3_00606a000000.json"
    ));
    let qe = read(&format!(
        "{AUTOMATA}/evm/forge-test/assets/0825/sgx_qeidentity_v4.json"
    ));
    let pck_crl = read(&format!(
        "{AUTOMATA}/evm/forge-test/assets/0825/platform_crl.der"
    ));
    let root_crl = read(&format!(
        "{AUTOMATA}/solana/automata-dcap-framework/tests/data/intel_root_ca_crl.der"
    ));
    let collateral = Collateral::from_pcs(PcsResponses {
        tcb_info: &tcb,
        tcb_info_issuer_chain: chain.as_bytes(),
        qe_identity: &qe,
        qe_identity_issuer_chain: chain.as_bytes(),
        pck_crl: Some(&pck_crl),
        pck_crl_issuer_chain: b"",
        root_ca_crl: Some(&root_crl),
        pck_certificate_chain: None,
    })
    .unwrap();
    Set {
        name: "E",
        quote: quote(&format!("{AUTOMATA}/rust-crates/samples/quotev3.hex")),
        collateral,
        anchors: TrustAnchors::intel(),
        missing_crls: false,
        debug: false,
        expected_status: "SWHardeningNeeded",
        expected_advisories: vec!["INTEL-SA-00615"],
    }
}

pub fn set_f() -> Set {
    let chain = tcb_chain_2025();
    let tcb = read(&format!(
        "{AUTOMATA}/evm/forge-test/assets/0625/tcbinfo.json"
    ));
    let qe = read(&format!(
        "{AUTOMATA}/evm/forge-test/assets/0625/identity.json"
    ));
    let collateral = Collateral::from_pcs(PcsResponses {
        tcb_info: &tcb,
        tcb_info_issuer_chain: chain.as_bytes(),
        qe_identity: &qe,
        qe_identity_issuer_chain: chain.as_bytes(),
        ..PcsResponses::default()
    })
    .unwrap();
    Set {
        name: "F",
        quote: quote(&format!("{AUTOMATA}/rust-crates/samples/quotev3.hex")),
        collateral,
        anchors: TrustAnchors::intel(),
        missing_crls: true,
        debug: false,
        expected_status: "SWHardeningNeeded",
        expected_advisories: vec![],
    }
}

/// bad-5: Intel's synthetic sample data, signed by an Intel *test* root (same subject as the real root).
pub fn intel_sample() -> Set {
    let chain = read(&format!("{INTEL}/tcbSignChain.pem"));
    let tcb = read(&format!("{INTEL}/tcbInfo.json"));
    let qe = read(&format!("{INTEL}/qeIdentity.json"));
    let pck_crl = read(&format!("{INTEL}/intermediateCaCrl.der"));
    let root_crl = read(&format!("{INTEL}/rootCaCrl.der"));
    let pck_chain = [
        read(&format!("{INTEL}/pckCert.pem")),
        read(&format!("{INTEL}/pckSignChain.pem")),
    ]
    .concat();
    let collateral = Collateral::from_pcs(PcsResponses {
        tcb_info: &tcb,
        tcb_info_issuer_chain: &chain,
        qe_identity: &qe,
        qe_identity_issuer_chain: &chain,
        pck_crl: Some(&pck_crl),
        pck_crl_issuer_chain: b"",
        root_ca_crl: Some(&root_crl),
        pck_certificate_chain: Some(&pck_chain),
    })
    .unwrap();
    Set {
        name: "bad-5",
        quote: quote(&format!("{INTEL}/quote.dat")),
        collateral,
        anchors: TrustAnchors::from_pem(&read(&format!("{INTEL}/trustedRootCaCert.pem"))).unwrap(),
        missing_crls: false,
        debug: false,
        expected_status: "",
        expected_advisories: vec![],
    }
}

pub fn all_sets() -> Vec<Set> {
    vec![set_a(), set_b(), set_c(), set_d(), set_e(), set_f()]
}

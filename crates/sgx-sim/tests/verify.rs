//! The simulated quote and collateral verify under the DCAP rules with the simulated root
//! as trust anchor (checked with `dcap-verify`), and the PKI survives a save/load cycle.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use dcap_verify::{Collateral, PcsResponses, Policy, TcbStatus, TrustAnchors, UnixTime, Verifier};
use sgx_quote::{MrEnclave, MrSigner, Quote, ReportBody, ReportData};
use sgx_sim::Simulation;
use time::OffsetDateTime;

fn app_body() -> ReportBody {
    let mut rd = [0u8; 64];
    rd[..5].copy_from_slice(b"hello");
    ReportBody {
        mr_enclave: MrEnclave([0x11; 32]),
        mr_signer: MrSigner([0x22; 32]),
        isv_prod_id: 3,
        isv_svn: 4,
        report_data: ReportData(rd),
        ..ReportBody::default()
    }
}

#[test]
fn simulated_quote_is_well_formed_and_signed() {
    let now = OffsetDateTime::now_utc();
    let sim = Simulation::generate(now).unwrap();
    let quote = sim.qe.quote(&app_body()).unwrap();
    assert_eq!(quote.len(), sim.qe.quote_size());
    let q = Quote::parse(&quote).unwrap();
    assert_eq!(q.encode(), quote);
    assert_eq!(q.sgx_report_body(), Some(&app_body()));
    // The header: a v3 ECDSA SGX quote whose QE ID is the first 16 bytes of SHA-256(PPID).
    assert_eq!(
        (q.header.version, q.header.pce_svn),
        (3, sim.pki.platform.pce_svn)
    );
    let ppid_hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &sim.pki.platform.ppid);
    assert_eq!(&q.header.user_data[..16], &ppid_hash.as_ref()[..16]);
    assert_eq!(q.header.user_data[16..], [0; 4]);
    assert_eq!(q.signature.attestation_key, sim.qe.attestation_public_key());
    assert_eq!(&q.signature.qe.qe_report, sim.qe.qe_report());
    // Another app's quote differs in the body and the signature only.
    let mut other_body = app_body();
    other_body.mr_enclave = MrEnclave([0x33; 32]);
    let other = sim.qe.quote(&other_body).unwrap();
    assert_eq!(other.len(), quote.len());
    assert_eq!(other[..48], quote[..48]);
    assert_ne!(other[48..432], quote[48..432]);
    assert_eq!(other[436 + 64..], quote[436 + 64..]);
    // Attestation key signs header ‖ body.
    let mut key = vec![4u8];
    key.extend_from_slice(&q.signature.attestation_key);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
        .verify(q.signed_region, &q.signature.quote_signature)
        .unwrap();
    // The PCK chain carries the SGX extension of the simulated platform.
    let chain = sgx_quote::pck::split_pem_chain(q.pck_chain_pem().unwrap()).unwrap();
    assert_eq!(chain.len(), 3);
    let ext = sgx_quote::pck::SgxExtension::from_cert_der(&chain[0]).unwrap();
    assert_eq!(ext, sim.pki.platform.to_extension());
}

#[test]
fn simulated_quote_verifies_up_to_date_with_dcap_verify() {
    let now = OffsetDateTime::now_utc();
    let sim = Simulation::generate(now).unwrap();
    let quote = sim.qe.quote(&app_body()).unwrap();
    let collateral = sim.collateral(now).unwrap();
    let anchors = TrustAnchors::from_pem(sim.pki.root_ca_pem().as_bytes()).unwrap();
    let verifier = Verifier::new(anchors);
    let t = UnixTime(u64::try_from(now.unix_timestamp()).unwrap());
    let verdict = verifier
        .verify(&quote, &collateral, t, &Policy::default())
        .unwrap();
    assert_eq!(verdict.status(), TcbStatus::UpToDate);
    assert_eq!(verdict.mr_enclave(), [0x11; 32]);
    assert_eq!(&verdict.report_data()[..5], b"hello");

    // Not with Intel's anchors.
    let intel = Verifier::new(TrustAnchors::intel());
    assert!(
        intel
            .verify(&quote, &collateral, t, &Policy::default())
            .is_err()
    );
    // Not after the collateral's nextUpdate.
    let late = UnixTime(t.0 + 31 * 24 * 3600);
    assert!(
        verifier
            .verify(&quote, &collateral, late, &Policy::default())
            .is_err()
    );
}

#[test]
fn state_round_trips_and_export_writes_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let a = sgx_sim::state::load_or_create(dir.path(), now).unwrap();
    let b = sgx_sim::state::load_or_create(dir.path(), now).unwrap();
    assert_eq!(a.pki.root_ca_pem(), b.pki.root_ca_pem());
    assert_eq!(a.qe.pub_key_id(), b.qe.pub_key_id());
    assert_eq!(a.pki.platform, b.pki.platform);

    let out = dir.path().join("export");
    sgx_sim::state::export(&b, &out, now).unwrap();
    for f in [
        "root-ca.pem",
        "collateral.json",
        "pck-chain.pem",
        "pcs/tcb_info.json",
        "pcs/qe_identity.json",
        "pcs/pck_crl.der",
        "pcs/root_ca_crl.der",
        "pcs/tcb_info_issuer_chain.pem",
        "pcs/qe_identity_issuer_chain.pem",
        "pcs/pck_crl_issuer_chain.pem",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // A quote from the reloaded QE verifies against the exported files.
    let quote = b.qe.quote(&app_body()).unwrap();
    let json = std::fs::read(out.join("collateral.json")).unwrap();
    let collateral = Collateral::from_json(&json).unwrap();
    // The PCS-style files carry exactly the same collateral.
    let pcs = |f: &str| std::fs::read(out.join("pcs").join(f)).unwrap();
    let (tcb, qe, pck_crl, root_crl) = (
        pcs("tcb_info.json"),
        pcs("qe_identity.json"),
        pcs("pck_crl.der"),
        pcs("root_ca_crl.der"),
    );
    let (tcb_chain, qe_chain, crl_chain) = (
        pcs("tcb_info_issuer_chain.pem"),
        pcs("qe_identity_issuer_chain.pem"),
        pcs("pck_crl_issuer_chain.pem"),
    );
    let from_pcs = Collateral::from_pcs(PcsResponses {
        tcb_info: &tcb,
        tcb_info_issuer_chain: &tcb_chain,
        qe_identity: &qe,
        qe_identity_issuer_chain: &qe_chain,
        pck_crl: Some(&pck_crl),
        pck_crl_issuer_chain: &crl_chain,
        root_ca_crl: Some(&root_crl),
        pck_certificate_chain: None,
    })
    .unwrap();
    assert_eq!(from_pcs, collateral);
    assert_eq!(
        std::str::from_utf8(&tcb).unwrap(),
        format!(
            "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
            collateral.tcb_info,
            hex::encode(&collateral.tcb_info_signature)
        )
    );
    let root = std::fs::read(out.join("root-ca.pem")).unwrap();
    let v = Verifier::new(TrustAnchors::from_pem(&root).unwrap());
    let t = UnixTime(u64::try_from(now.unix_timestamp()).unwrap());
    let verdict = v
        .verify(&quote, &collateral, t, &Policy::default())
        .unwrap();
    assert_eq!(verdict.status(), TcbStatus::UpToDate);
}

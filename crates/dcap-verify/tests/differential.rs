//! Differential test: the same sets through the `dcap-qvl` crate give the same status and advisories.

mod common;

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::verify::QuoteVerifier;
use dcap_verify::{Collateral, Verifier};

fn to_qvl(c: &Collateral) -> QuoteCollateralV3 {
    QuoteCollateralV3 {
        pck_crl_issuer_chain: c.pck_crl_issuer_chain.clone(),
        root_ca_crl: c.root_ca_crl.clone(),
        pck_crl: c.pck_crl.clone(),
        tcb_info_issuer_chain: c.tcb_info_issuer_chain.clone(),
        tcb_info: c.tcb_info.clone(),
        tcb_info_signature: c.tcb_info_signature.clone(),
        qe_identity_issuer_chain: c.qe_identity_issuer_chain.clone(),
        qe_identity: c.qe_identity.clone(),
        qe_identity_signature: c.qe_identity_signature.clone(),
        pck_certificate_chain: c.pck_certificate_chain.clone(),
    }
}

#[test]
fn dcap_qvl_agrees_on_every_set_it_can_verify() {
    let root = pem::parse(common::read("Intel_SGX_Root_CA.pem"))
        .unwrap()
        .into_contents();
    let mut compared = Vec::new();
    for set in common::all_sets() {
        let t = set.time();
        let ours = Verifier::new(set.anchors.clone())
            .verify(&set.quote, &set.collateral, t, &set.policy())
            .unwrap();
        let qvl = QuoteVerifier::new(root.clone())
            .allow_debug(set.debug)
            .verify(&set.quote, &to_qvl(&set.collateral), t.0);
        match qvl {
            Ok(r) => {
                assert_eq!(r.status, ours.status.as_str(), "set {}", set.name);
                assert_eq!(r.advisory_ids, ours.advisory_ids, "set {}", set.name);
                compared.push(set.name);
            }
            // dcap-qvl needs both CRLs: it cannot verify the sets that ship without them.
            Err(e) if set.missing_crls => eprintln!("set {}: dcap-qvl: {e:#}", set.name),
            Err(e) => panic!("set {}: dcap-qvl failed: {e:#}", set.name),
        }
    }
    assert!(
        compared.contains(&"A") && compared.contains(&"E"),
        "{compared:?}"
    );
}

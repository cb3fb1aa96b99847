//! Golden tests: every real verification set of `testdata/dcap/INDEX.md` (A–F) gives the expected status and
//! advisories at a time inside its collateral window.

mod common;

use dcap_verify::Verifier;

#[test]
fn every_set_gives_the_expected_status_and_advisories() {
    for set in common::all_sets() {
        let v = Verifier::new(set.anchors.clone());
        let policy = set.policy();
        let t = set.time();
        let verdict = v
            .verify(&set.quote, &set.collateral, t, &policy)
            .unwrap_or_else(|e| panic!("set {} at {t}: {e}", set.name));
        assert_eq!(
            verdict.status.as_str(),
            set.expected_status,
            "set {}",
            set.name
        );
        assert_eq!(
            verdict.advisory_ids, set.expected_advisories,
            "set {}",
            set.name
        );
        assert_eq!(verdict.debug, set.debug, "set {}", set.name);
        assert!(!verdict.collateral_expired);
        assert!(verdict.valid_until >= t, "set {}", set.name);
        // Second run goes through the cache and must agree.
        let again = v.verify(&set.quote, &set.collateral, t, &policy).unwrap();
        assert_eq!(again, verdict, "set {} (cached)", set.name);
    }
}

#[test]
fn parallel_cold_path_gives_the_same_verdicts_and_errors() {
    for set in common::all_sets() {
        let t = set.time();
        let seq = Verifier::new(set.anchors.clone())
            .with_parallel_cold_path(false)
            .verify(&set.quote, &set.collateral, t, &set.policy())
            .unwrap();
        let par = Verifier::new(set.anchors.clone()).with_parallel_cold_path(true);
        assert_eq!(
            par.verify(&set.quote, &set.collateral, t, &set.policy())
                .unwrap(),
            seq,
            "set {}",
            set.name
        );
        // Bad TCB info signature and bad quote signature together: the collateral error is reported first.
        let mut c = set.collateral.clone();
        c.tcb_info_signature[5] ^= 1;
        let mut q = set.quote.clone();
        q[100] ^= 1;
        let fresh = Verifier::new(set.anchors.clone()).with_parallel_cold_path(true);
        let err = fresh.verify(&q, &c, t, &set.policy()).unwrap_err();
        assert!(
            matches!(
                err,
                dcap_verify::VerifyError::SignatureInvalid {
                    item: dcap_verify::Item::TcbInfo
                }
            ),
            "set {}: {err:?}",
            set.name
        );
        let err = fresh
            .verify(&q, &set.collateral, t, &set.policy())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "quote signature invalid",
            "set {}",
            set.name
        );
    }
}

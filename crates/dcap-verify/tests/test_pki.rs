//! Tests over a PKI generated with rcgen (`common/pki.rs`): revocation, CRL signatures, validity windows, debug
//! policy and TCB level selection / status merging on controlled inputs.

mod common;

use common::pki::{self, Options};
use dcap_verify::{Item, Policy, TcbStatus, UnixTime, Verifier, VerifyError};

fn run(o: &Options) -> Result<dcap_verify::Verdict, VerifyError> {
    run_with(o, &Policy::default())
}

fn run_with(o: &Options, p: &Policy) -> Result<dcap_verify::Verdict, VerifyError> {
    let g = pki::generate(o);
    Verifier::new(g.anchors.clone()).verify(&g.quote, &g.collateral, g.now, p)
}

#[test]
fn generated_quote_verifies_up_to_date() {
    let g = pki::generate(&Options::default());
    let v = Verifier::new(g.anchors.clone())
        .verify(&g.quote, &g.collateral, g.now, &Policy::default())
        .unwrap();
    assert_eq!(v.status, TcbStatus::UpToDate);
    assert!(v.advisory_ids.is_empty());
    assert_eq!(v.fmspc, pki::FMSPC);
    assert_eq!(v.mr_enclave, [0xe1; 32]);
    assert_eq!(v.isv_prod_id, 7);
    assert!(!v.debug);
    // Not trusted under the real Intel root.
    let err = Verifier::new(dcap_verify::TrustAnchors::intel())
        .verify(&g.quote, &g.collateral, g.now, &Policy::default())
        .unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err:?}");
}

#[test]
fn revoked_pck_certificate_is_rejected() {
    let o = Options {
        pck_crl_revoked: vec![0x77, pki::PCK_SERIAL],
        ..Options::default()
    };
    let err = run(&o).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Revoked {
                item: Item::PckCertificate
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "PCK certificate revoked");
}

#[test]
fn revoked_pck_ca_is_rejected_by_the_root_crl() {
    let o = Options {
        root_crl_revoked: vec![pki::PCK_CA_SERIAL],
        ..Options::default()
    };
    let err = run(&o).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Revoked {
                item: Item::PckCaCertificate
            }
        ),
        "{err:?}"
    );
}

#[test]
fn crl_signed_by_another_key_is_rejected() {
    let o = Options {
        pck_crl_wrong_key: true,
        ..Options::default()
    };
    let err = run(&o).unwrap_err();
    assert!(
        matches!(err, VerifyError::SignatureInvalid { item: Item::PckCrl }),
        "{err:?}"
    );
}

#[test]
fn expired_and_not_yet_valid_pck_certificate() {
    let expired = Options {
        pck_validity: (-300, -1),
        ..Options::default()
    };
    let err = run(&expired).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Expired {
                item: Item::PckCertificate,
                ..
            }
        ),
        "{err:?}"
    );
    // As a flag:
    let v = run_with(&expired, &Policy::default().allow_expired_collateral(true)).unwrap();
    assert!(v.collateral_expired);
    let future = Options {
        pck_validity: (1, 300),
        ..Options::default()
    };
    let err = run(&future).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::NotYetValid {
                item: Item::PckCertificate,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn generated_collateral_window_is_enforced() {
    let g = pki::generate(&Options::default());
    let v = Verifier::new(g.anchors.clone());
    // TCB info: issueDate NOW-10d, nextUpdate NOW+20d; CRLs NOW-5d..NOW+25d.
    let err = v
        .verify(
            &g.quote,
            &g.collateral,
            UnixTime(pki::NOW + 21 * 86_400),
            &Policy::default(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Expired {
                item: Item::TcbInfo,
                ..
            }
        ),
        "{err:?}"
    );
    let err = v
        .verify(
            &g.quote,
            &g.collateral,
            UnixTime(pki::NOW - 6 * 86_400),
            &Policy::default(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::NotYetValid {
                item: Item::PckCrl,
                ..
            }
        ),
        "{err:?}"
    );
    let ok = v
        .verify(&g.quote, &g.collateral, g.now, &Policy::default())
        .unwrap();
    assert_eq!(ok.valid_until, UnixTime(pki::NOW + 20 * 86_400));
}

#[test]
fn debug_enclave_rejected_by_default_and_allowed_on_request() {
    let o = Options {
        debug: true,
        ..Options::default()
    };
    let err = run(&o).unwrap_err();
    assert!(matches!(err, VerifyError::DebugEnclave), "{err:?}");
    let v = run_with(&o, &Policy::default().allow_debug(true)).unwrap();
    assert!(v.debug);
}

#[test]
fn tcb_level_selection_and_merge() {
    // Components all 4, PCESVN 13: the SWHardeningNeeded level.
    let o = Options {
        comp_svn: [4; 16],
        ..Options::default()
    };
    let v = run(&o).unwrap();
    assert_eq!(v.status, TcbStatus::SwHardeningNeeded);
    assert_eq!(v.advisory_ids, ["INTEL-SA-00615"]);

    // One component below level 2 (the rest at 5) falls through to OutOfDate: all 16 components count.
    let mut c = [5u8; 16];
    c[15] = 3;
    let v = run(&Options {
        comp_svn: c,
        ..Options::default()
    })
    .unwrap();
    assert_eq!(v.status, TcbStatus::OutOfDate);

    // PCESVN 12: below the first two levels, matches ConfigurationNeeded; with the QE out of date →
    // OutOfDateConfigurationNeeded and the advisories are the union (platform first).
    let v = run(&Options {
        pce_svn: 12,
        qe_isv_svn: 7,
        ..Options::default()
    })
    .unwrap();
    assert_eq!(v.status, TcbStatus::OutOfDateConfigurationNeeded);
    assert_eq!(v.platform_status, TcbStatus::ConfigurationNeeded);
    assert_eq!(v.qe_status, TcbStatus::OutOfDate);
    assert_eq!(
        v.advisory_ids,
        ["INTEL-SA-00289", "INTEL-SA-00615", "INTEL-SA-00999"]
    );

    // Below every level: TCB not supported.
    let err = run(&Options {
        comp_svn: [0; 16],
        ..Options::default()
    })
    .unwrap_err();
    assert!(matches!(err, VerifyError::TcbNotSupported), "{err:?}");

    // QE below every QE level.
    let err = run(&Options {
        qe_isv_svn: 3,
        ..Options::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::QeTcbNotSupported { isv_svn: 3 }),
        "{err:?}"
    );

    // QE revoked: Revoked, rejected by default, reported when accepted.
    let o = Options {
        qe_isv_svn: 5,
        ..Options::default()
    };
    let err = run(&o).unwrap_err();
    assert!(
        matches!(err, VerifyError::StatusNotAccepted(TcbStatus::Revoked)),
        "{err:?}"
    );
    let v = run_with(&o, &Policy::default().accept_status(TcbStatus::Revoked)).unwrap();
    assert_eq!(v.status, TcbStatus::Revoked);
}

#[test]
fn tcb_info_v2_is_evaluated_like_v3() {
    let o = Options {
        tcb_info_version: 2,
        comp_svn: [4; 16],
        ..Options::default()
    };
    let v = run(&o).unwrap();
    assert_eq!(v.status, TcbStatus::SwHardeningNeeded);
    assert!(v.advisory_ids.is_empty()); // v2 levels carry no advisories
}

#[test]
fn levels_are_ordered_highest_first_whatever_the_input_order() {
    let mut o = Options {
        comp_svn: [4; 16],
        ..Options::default()
    };
    o.tcb_levels.reverse();
    assert_eq!(run(&o).unwrap().status, TcbStatus::SwHardeningNeeded);
}

//! Negative tests on real data: bit flips, time, CRLs, roots, debug, and the known-bad samples of INDEX.md.

mod common;

use dcap_verify::{Collateral, Item, Policy, TrustAnchors, UnixTime, Verifier, VerifyError};

/// Offsets of the v3 quote layout (INDEX.md / research §1.3).
const SIGNED_REGION: std::ops::Range<usize> = 0..432;
const SIGNATURE_DATA: std::ops::Range<usize> = 436..1046; // quote sig, attestation key, QE report, QE sig, auth size + 32 B
const QE_REPORT: std::ops::Range<usize> = 564..948;

fn flip(b: &mut [u8], bit: usize) {
    b[bit / 8] ^= 1 << (bit % 8);
}

#[test]
fn every_bit_flip_in_the_signed_region_and_qe_report_is_rejected() {
    let set = common::set_a();
    let v = Verifier::new(set.anchors.clone());
    let t = set.time();
    let policy = set.policy();
    v.verify(&set.quote, &set.collateral, t, &policy).unwrap();
    let mut flips = 0;
    for range in [SIGNED_REGION, SIGNATURE_DATA] {
        for bit in range.start * 8..range.end * 8 {
            let mut q = set.quote.clone();
            flip(&mut q, bit);
            let err = v.verify(&q, &set.collateral, t, &policy);
            assert!(
                err.is_err(),
                "bit {bit} (byte {:#x}) flip accepted",
                bit / 8
            );
            flips += 1;
        }
    }
    assert!(flips > (432 + QE_REPORT.len()) * 8);
    // And the untouched quote still verifies (the cache was not poisoned).
    v.verify(&set.quote, &set.collateral, t, &policy).unwrap();
}

#[test]
fn qe_report_flips_fail_at_the_qe_report_checks() {
    let set = common::set_a();
    let v = Verifier::new(set.anchors.clone());
    let t = set.time();
    // Warm: the verifier now remembers the genuine QE report as signed by this PCK key, and
    // must still check every altered one.
    v.verify(&set.quote, &set.collateral, t, &set.policy())
        .unwrap();
    for bit in QE_REPORT.start * 8..QE_REPORT.end * 8 {
        let mut q = set.quote.clone();
        flip(&mut q, bit);
        match v.verify(&q, &set.collateral, t, &set.policy()) {
            Err(VerifyError::SignatureInvalid {
                item: Item::QeReport,
            })
            | Err(VerifyError::QeReportDataMismatch)
            // The parser rejects non-zero reserved bytes before any signature check.
            | Err(VerifyError::Quote(_)) => {}
            other => panic!("bit {bit}: {other:?}"),
        }
    }
    // The QE report signature: any altered one is checked, not matched against the memory.
    for bit in (QE_REPORT.end * 8)..(QE_REPORT.end + 64) * 8 {
        let mut q = set.quote.clone();
        flip(&mut q, bit);
        assert!(
            matches!(
                v.verify(&q, &set.collateral, t, &set.policy()),
                Err(VerifyError::SignatureInvalid {
                    item: Item::QeReport
                })
            ),
            "signature bit {bit}"
        );
    }
    v.verify(&set.quote, &set.collateral, t, &set.policy())
        .unwrap();
}

/// Flips every bit of `text` (as stored in the collateral by `set_text`), expecting the signature check to fail.
fn flip_all_bits_of(
    get: fn(&Collateral) -> &String,
    set_text: fn(&mut Collateral, String),
    item: Item,
) {
    let set = common::set_a();
    let v = Verifier::new(set.anchors.clone());
    let t = set.time();
    let policy = set.policy();
    let original = get(&set.collateral).clone().into_bytes();
    let mut checked = 0;
    for bit in 0..original.len() * 8 {
        let mut b = original.clone();
        flip(&mut b, bit);
        // A flip that breaks UTF-8 cannot even be represented as collateral: rejected at construction.
        let Ok(text) = String::from_utf8(b) else {
            continue;
        };
        let mut c = set.collateral.clone();
        set_text(&mut c, text);
        match v.verify(&set.quote, &c, t, &policy) {
            Err(VerifyError::SignatureInvalid { item: i }) if i == item => checked += 1,
            other => panic!("{item} bit {bit}: {other:?}"),
        }
    }
    // Only flips of the top bit of an ASCII byte break UTF-8; every other flip reached the signature check.
    assert_eq!(checked, original.len() * 7);
}

#[test]
fn every_bit_flip_in_the_signed_tcb_info_is_rejected() {
    flip_all_bits_of(|c| &c.tcb_info, |c, t| c.tcb_info = t, Item::TcbInfo);
}

#[test]
fn every_bit_flip_in_the_signed_qe_identity_is_rejected() {
    flip_all_bits_of(
        |c| &c.qe_identity,
        |c, t| c.qe_identity = t,
        Item::QeIdentity,
    );
}

#[test]
fn collateral_signature_flips_are_rejected() {
    let set = common::set_a();
    let v = Verifier::new(set.anchors.clone());
    let t = set.time();
    for bit in 0..64 * 8 {
        let mut c = set.collateral.clone();
        flip(&mut c.tcb_info_signature, bit);
        assert!(
            v.verify(&set.quote, &c, t, &set.policy()).is_err(),
            "tcb sig bit {bit}"
        );
        let mut c = set.collateral.clone();
        flip(&mut c.qe_identity_signature, bit);
        assert!(
            v.verify(&set.quote, &c, t, &set.policy()).is_err(),
            "qe sig bit {bit}"
        );
    }
}

#[test]
fn expired_and_not_yet_valid_collateral_fail_by_default_and_flag_on_request() {
    let set = common::set_a();
    let v = Verifier::new(set.anchors.clone());
    let (start, end) = common::window(&set.collateral);
    for (t, want_expired) in [(end + 1, true), (start - 1, false)] {
        let err = v
            .verify(&set.quote, &set.collateral, UnixTime(t), &set.policy())
            .unwrap_err();
        match (&err, want_expired) {
            (VerifyError::Expired { now, .. }, true)
            | (VerifyError::NotYetValid { now, .. }, false) => {
                assert_eq!(*now, UnixTime(t))
            }
            _ => panic!("at {t}: {err:?}"),
        }
        assert!(err.is_expiry());
        let verdict = v
            .verify(
                &set.quote,
                &set.collateral,
                UnixTime(t),
                &set.policy().allow_expired_collateral(true),
            )
            .unwrap();
        assert!(verdict.collateral_expired);
        assert_eq!(verdict.status.as_str(), set.expected_status);
    }
    let ok = v
        .verify(
            &set.quote,
            &set.collateral,
            set.time(),
            &set.policy().allow_expired_collateral(true),
        )
        .unwrap();
    assert!(!ok.collateral_expired);
    assert_eq!(ok.valid_until, UnixTime(end));
}

#[test]
fn oasis_time_cases_fail_at_the_stated_step() {
    // The oasis-core tests state these failures for set B.
    let set = common::set_b();
    let v = Verifier::new(set.anchors.clone());
    let at = |t| {
        v.verify(&set.quote, &set.collateral, UnixTime(t), &set.policy())
            .unwrap_err()
    };
    assert!(matches!(
        at(1_891_163_522),
        VerifyError::Expired {
            item: Item::PckCertificate | Item::PckCaCertificate,
            ..
        }
    ));
    assert!(matches!(
        at(1_670_238_720),
        VerifyError::NotYetValid {
            item: Item::PckCertificate,
            ..
        }
    ));
    assert!(matches!(at(1_671_194_735), VerifyError::NotYetValid { .. }));
    assert!(matches!(
        at(1_673_786_737),
        VerifyError::Expired {
            item: Item::QeIdentity,
            ..
        }
    ));
}

#[test]
fn crl_from_the_wrong_issuer_is_an_error() {
    let set = common::set_a(); // PCK issued by the Processor CA
    let v = Verifier::new(set.anchors.clone());
    // The Platform CA's CRL (set E) as PCK CRL.
    let mut c = set.collateral.clone();
    c.pck_crl = common::set_e().collateral.pck_crl;
    let err = v
        .verify(&set.quote, &c, set.time(), &set.policy())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CrlIssuerMismatch {
                crl: Item::PckCrl,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Processor"), "{err}");
    // The root CA CRL as PCK CRL.
    let mut c = set.collateral.clone();
    c.pck_crl = c.root_ca_crl.clone();
    let err = v
        .verify(&set.quote, &c, set.time(), &set.policy())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CrlIssuerMismatch {
                crl: Item::PckCrl,
                ..
            }
        ),
        "{err:?}"
    );
    // The PCK CRL as root CA CRL.
    let mut c = set.collateral.clone();
    c.root_ca_crl = c.pck_crl.clone();
    let err = v
        .verify(&set.quote, &c, set.time(), &set.policy())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CrlIssuerMismatch {
                crl: Item::RootCaCrl,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn missing_crls_are_an_error_unless_allowed() {
    let set = common::set_a();
    let v = Verifier::new(set.anchors.clone());
    let mut c = set.collateral.clone();
    c.pck_crl.clear();
    let err = v
        .verify(&set.quote, &c, set.time(), &set.policy())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::CrlMissing { crl: Item::PckCrl }),
        "{err:?}"
    );
    v.verify(
        &set.quote,
        &c,
        set.time(),
        &set.policy().allow_missing_crls(true),
    )
    .unwrap();
}

#[test]
fn wrong_root_is_rejected() {
    let set = common::set_a();
    let test_root = common::read(
        "SGX-TDX-DCAP-QuoteVerificationLibrary/Src/AttestationApp/sampleData/trustedRootCaCert.pem",
    );
    let v = Verifier::new(TrustAnchors::from_pem(&test_root).unwrap());
    let err = v
        .verify(&set.quote, &set.collateral, set.time(), &set.policy())
        .unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err:?}");
}

#[test]
fn both_intel_root_certificates_are_trusted_by_key() {
    for f in [
        "Intel_SGX_Root_CA.pem",
        "Intel_SGX_Root_CA_old-2033-variant.pem",
    ] {
        let a = TrustAnchors::from_pem(&common::read(f)).unwrap();
        assert_eq!(a.keys(), TrustAnchors::intel().keys(), "{f}");
    }
}

#[test]
fn debug_enclave_rejected_under_the_default_policy() {
    let set = common::set_c();
    assert!(set.debug);
    let v = Verifier::new(set.anchors.clone());
    let policy = Policy::default().allow_missing_crls(true);
    let err = v
        .verify(&set.quote, &set.collateral, set.time(), &policy)
        .unwrap_err();
    assert!(matches!(err, VerifyError::DebugEnclave), "{err:?}");
}

#[test]
fn policy_rejects_statuses_and_advisories_on_request() {
    let set = common::set_a();
    let v = Verifier::new(set.anchors.clone());
    let p = set
        .policy()
        .reject_status(dcap_verify::TcbStatus::ConfigurationAndSwHardeningNeeded);
    assert!(matches!(
        v.verify(&set.quote, &set.collateral, set.time(), &p)
            .unwrap_err(),
        VerifyError::StatusNotAccepted(_)
    ));
    let p = set.policy().reject_advisory("INTEL-SA-00615");
    assert!(matches!(
        v.verify(&set.quote, &set.collateral, set.time(), &p).unwrap_err(),
        VerifyError::AdvisoryNotAccepted(a) if a == "INTEL-SA-00615"
    ));
}

#[test]
fn tcb_info_for_another_platform_is_rejected() {
    // Set E's collateral (FMSPC 00606A000000) with set A's quote (FMSPC 00A067110000).
    let a = common::set_a();
    let e = common::set_e();
    let mut c = a.collateral.clone();
    c.tcb_info = e.collateral.tcb_info.clone();
    c.tcb_info_signature = e.collateral.tcb_info_signature.clone();
    let v = Verifier::new(a.anchors.clone());
    let t = UnixTime(common::window(&c).0 + 1);
    let err = v
        .verify(&a.quote, &c, t, &a.policy().allow_expired_collateral(true))
        .unwrap_err();
    assert!(matches!(err, VerifyError::FmspcMismatch { .. }), "{err:?}");
}

#[test]
fn bad_1_corrupted_quote_signature() {
    let mut set = common::set_d();
    set.quote =
        common::quote("rust-sgx/intel-sgx/dcap-ql/tests/quote_pck_cert_chain_corrupted.bin");
    let err = Verifier::new(set.anchors.clone())
        .verify(&set.quote, &set.collateral, set.time(), &set.policy())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::SignatureInvalid { item: Item::Quote }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "quote signature invalid");
}

#[test]
fn bad_2_corrupt_qe_identity() {
    let set = common::set_d_with_identity("corrupt_qe3_identity.json");
    let err = Verifier::new(set.anchors.clone())
        .verify(&set.quote, &set.collateral, set.time(), &set.policy())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::SignatureInvalid {
                item: Item::QeIdentity
            }
        ),
        "{err:?}"
    );
}

#[test]
fn bad_3_edited_issue_dates() {
    let good = common::set_c();
    let bad = common::set_c_from("rust-sgx/intel-sgx/pcs/tests/data/corrupted");
    let err = Verifier::new(bad.anchors.clone())
        .verify(&bad.quote, &bad.collateral, good.time(), &bad.policy())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::SignatureInvalid {
                item: Item::TcbInfo | Item::QeIdentity
            }
        ),
        "{err:?}"
    );
}

#[test]
fn bad_4_wrong_signing_chain() {
    let good = common::set_b();
    let bad = common::set_b_with_chain("tcb_info_v3_fmspc_00606A000000_certs_bad.pem");
    let err = Verifier::new(bad.anchors.clone())
        .verify(&bad.quote, &bad.collateral, good.time(), &bad.policy())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::SignatureInvalid {
                item: Item::TcbInfo | Item::QeIdentity
            }
        ),
        "{err:?}"
    );
}

#[test]
fn bad_5_intel_test_root_rejected_by_the_real_root_and_accepted_by_itself() {
    let set = common::intel_sample();
    let t = set.time();
    let err = Verifier::new(TrustAnchors::intel())
        .verify(&set.quote, &set.collateral, t, &set.policy())
        .unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err:?}");
    let verdict = Verifier::new(set.anchors.clone())
        .verify(
            &set.quote,
            &set.collateral,
            t,
            &set.policy().accept_any_status(),
        )
        .unwrap();
    assert_eq!(verdict.fmspc, [0x00, 0x70, 0x7f, 0, 0, 0]);
}

#[test]
fn cert_data_type_3_says_the_pck_certificate_is_needed() {
    let set = common::set_a();
    for f in [
        "oasis-core/go/common/sgx/pcs/testdata/quote_v3_ecdsa_p256_eppid.bin",
        "rust-sgx/intel-sgx/dcap-ql/tests/quote_raw_tcb.bin",
    ] {
        let q = common::quote(f);
        let err = Verifier::new(TrustAnchors::intel())
            .verify(&q, &set.collateral, set.time(), &set.policy())
            .unwrap_err();
        assert!(
            matches!(err, VerifyError::PckCertificateNeeded { cert_type: 3 }),
            "{f}: {err:?}"
        );
        assert!(
            err.to_string().contains("PCK certificate is needed"),
            "{err}"
        );
    }
}

#[test]
fn tdx_quotes_are_reported_unsupported() {
    let q = common::quote("dcap-qvl/sample/tdx_quote");
    let c =
        Collateral::from_json(&common::read("dcap-qvl/sample/tdx_quote_collateral.json")).unwrap();
    let err = Verifier::new(TrustAnchors::intel())
        .verify(&q, &c, UnixTime(1_751_624_191), &Policy::default())
        .unwrap_err();
    assert!(matches!(err, VerifyError::UnsupportedQuote(_)), "{err:?}");
}

#[test]
fn garbage_quote_is_a_parse_error() {
    let set = common::set_a();
    let err = Verifier::new(TrustAnchors::intel())
        .verify(
            &set.quote[..100],
            &set.collateral,
            set.time(),
            &set.policy(),
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::Quote(_)), "{err:?}");
}

//! `cargo bench -p dcap-verify`: this verifier cold (fresh `Verifier`) and warm (cache populated), dcap-qvl's
//! `verify`, and one bare ECDSA P-256 verification with aws-lc-rs, all on set A's real quote. Prints one line:
//! `verify-bench: cold_us=… warm_us=… dcap_qvl_us=… ecdsa_us=… warm_speedup=… cold_speedup=… warm_floor_ratio=…`,
//! followed by `cold_serial_us=… cold_serial_speedup=…`: the cold run with the helper thread turned off (one core).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use dcap_verify::{Collateral, Policy, TrustAnchors, UnixTime, Verifier};

fn data(rel: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../testdata/dcap/{rel}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Microseconds per call of one batch of `n` calls.
fn batch(n: usize, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quote = data("dcap-qvl/sample/sgx_quote");
    let json = data("dcap-qvl/sample/sgx_quote_collateral.json");
    let collateral = Collateral::from_json(&json).unwrap();
    let now = UnixTime(1_751_624_924);
    let policy = Policy::default();

    let warm_verifier = Verifier::new(TrustAnchors::intel());
    warm_verifier
        .verify(&quote, &collateral, now, &policy)
        .unwrap();

    let root = pem::parse(data("Intel_SGX_Root_CA.pem"))
        .unwrap()
        .into_contents();
    let qvl_collateral = dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: collateral.pck_crl_issuer_chain.clone(),
        root_ca_crl: collateral.root_ca_crl.clone(),
        pck_crl: collateral.pck_crl.clone(),
        tcb_info_issuer_chain: collateral.tcb_info_issuer_chain.clone(),
        tcb_info: collateral.tcb_info.clone(),
        tcb_info_signature: collateral.tcb_info_signature.clone(),
        qe_identity_issuer_chain: collateral.qe_identity_issuer_chain.clone(),
        qe_identity: collateral.qe_identity.clone(),
        qe_identity_signature: collateral.qe_identity_signature.clone(),
        pck_certificate_chain: None,
    };
    let qvl = dcap_qvl::verify::QuoteVerifier::new(root);
    let qvl_report = qvl.verify(&quote, &qvl_collateral, now.0).unwrap();
    let ours = warm_verifier
        .verify(&quote, &collateral, now, &policy)
        .unwrap();
    assert_eq!(qvl_report.status, ours.status.as_str());

    // One bare verification: the quote signature by the attestation key over header ‖ body.
    let signed = &quote[..432];
    let sig = &quote[436..500];
    let mut key = vec![0x04];
    key.extend_from_slice(&quote[500..564]);

    let mut cold_f = || {
        let v = Verifier::new(TrustAnchors::intel());
        black_box(v.verify(&quote, &collateral, now, &policy).unwrap());
    };
    // The same cold run without the helper thread (one core), printed as an extra field.
    let mut cold_serial_f = || {
        let v = Verifier::new(TrustAnchors::intel()).with_parallel_cold_path(false);
        black_box(v.verify(&quote, &collateral, now, &policy).unwrap());
    };
    let mut warm_f = || {
        black_box(
            warm_verifier
                .verify(&quote, &collateral, now, &policy)
                .unwrap(),
        );
    };
    let mut qvl_f = || {
        black_box(qvl.verify(&quote, &qvl_collateral, now.0).unwrap());
    };
    let mut ecdsa_f = || {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, black_box(&key))
            .verify(black_box(signed), black_box(sig))
            .unwrap();
    };
    // Warm-up, then interleaved rounds so that every measurement sees the same machine load.
    for f in [
        &mut cold_f as &mut dyn FnMut(),
        &mut cold_serial_f,
        &mut warm_f,
        &mut qvl_f,
        &mut ecdsa_f,
    ] {
        batch(20, f);
    }
    let (mut cold, mut cold_serial, mut warm, mut dcap, mut ecdsa) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        cold.push(batch(30, &mut cold_f));
        cold_serial.push(batch(30, &mut cold_serial_f));
        dcap.push(batch(30, &mut qvl_f));
        warm.push(batch(150, &mut warm_f));
        ecdsa.push(batch(150, &mut ecdsa_f));
    }
    let (cold, cold_serial, warm, dcap_qvl_us, ecdsa) = (
        median(cold),
        median(cold_serial),
        median(warm),
        median(dcap),
        median(ecdsa),
    );

    println!(
        "verify-bench: cold_us={cold:.1} warm_us={warm:.1} dcap_qvl_us={dcap_qvl_us:.1} ecdsa_us={ecdsa:.1} \
         warm_speedup={:.2} cold_speedup={:.2} warm_floor_ratio={:.2} cold_serial_us={cold_serial:.1} cold_serial_speedup={:.2}",
        dcap_qvl_us / warm,
        dcap_qvl_us / cold,
        warm / (2.0 * ecdsa),
        dcap_qvl_us / cold_serial,
    );
}

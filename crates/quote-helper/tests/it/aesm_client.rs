//! Fortanix's `aesm-client` (an independent implementation of the AESM protocol) against our
//! server; the quote it gets verifies with `dcap-verify` and with `dcap-qvl`.

use std::time::Duration;

use aesm_client::AesmClient;
use aesm_client::unix::AesmClientExt as _;

use super::{app_report, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aesm_client_gets_a_quote_that_dcap_verify_and_dcap_qvl_accept() {
    let srv = start(16, Duration::from_secs(5)).await;
    let socket = srv.socket.clone();
    let mr_enclave = [0xabu8; 32];
    let mut report_data = [0u8; 64];
    report_data[..16].copy_from_slice(b"confcom-aesm-it!");
    let (quote, qe_report, target_info, key_ids) = tokio::task::spawn_blocking(move || {
        let client = AesmClient::with_path(&socket);
        let key_ids = client.get_supported_att_key_ids().unwrap();
        assert_eq!(key_ids.len(), 1);
        let key_id = key_ids[0].clone();
        let info = client.init_quote_ex(key_id.clone()).unwrap();
        assert_eq!(info.pub_key_id().len(), 32);
        let target_info = info.target_info().to_vec();
        let res = client
            .get_quote_ex(
                key_id,
                app_report(mr_enclave, report_data),
                Some(target_info.clone()),
                vec![0x42; 16],
            )
            .unwrap();
        (
            res.quote().to_vec(),
            res.qe_report().to_vec(),
            target_info,
            key_ids,
        )
    })
    .await
    .unwrap();
    assert_eq!(key_ids[0], aesm::ECDSA_P256_QE3_KEY_ID.to_vec());
    assert_eq!(target_info.len(), 512);

    // The QE report binds nonce ‖ quote.
    let qe = sgx_quote::Report::parse(&qe_report).unwrap();
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    h.update(&[0x42; 16]);
    h.update(&quote);
    assert_eq!(&qe.body.report_data.0[..32], h.finish().as_ref());

    // dcap-verify, with the simulated root as the only trust anchor.
    let sim = sgx_sim::state::load(&srv.sim_state).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let collateral = sim.collateral(now).unwrap();
    let t = u64::try_from(now.unix_timestamp()).unwrap();
    let dv_collateral =
        dcap_verify::Collateral::from_json(collateral.to_json().as_bytes()).unwrap();
    let anchors = dcap_verify::TrustAnchors::from_pem(sim.pki.root_ca_pem().as_bytes()).unwrap();
    let verdict = dcap_verify::Verifier::new(anchors)
        .verify(
            &quote,
            &dv_collateral,
            dcap_verify::UnixTime(t),
            &dcap_verify::Policy::default(),
        )
        .unwrap();
    assert_eq!(verdict.status(), dcap_verify::TcbStatus::UpToDate);
    assert_eq!(verdict.mr_enclave(), mr_enclave);
    assert_eq!(verdict.report_data(), report_data);

    // dcap-qvl, given the simulated root.
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
    let qvl = dcap_qvl::verify::QuoteVerifier::new(sim.pki.root_ca_der().unwrap())
        .verify(&quote, &qvl_collateral, t)
        .unwrap();
    assert_eq!(qvl.status, "UpToDate");
    let dcap_qvl::quote::Report::SgxEnclave(body) = qvl.report else {
        panic!("not an SGX report: {:?}", qvl.report)
    };
    assert_eq!(body.mr_enclave, mr_enclave);
    assert_eq!(body.report_data, report_data);
    println!(
        "aesm-client quote verified (dcap-verify: {}, dcap-qvl: {}): mrenclave={} reportdata={}",
        verdict.status().as_str(),
        qvl.status,
        hex::encode(mr_enclave),
        hex::encode(report_data)
    );
    srv.stop().await;
}

use super::*;
use crate::backend::sim::SimBackend;
use sgx_quote::{MrEnclave, Quote, Report, ReportBody, ReportData};

fn backend() -> SimBackend {
    SimBackend::new(sgx_sim::Simulation::generate(time::OffsetDateTime::now_utc()).unwrap())
}

fn report() -> Vec<u8> {
    Report {
        body: ReportBody {
            mr_enclave: MrEnclave([7; 32]),
            report_data: ReportData([9; 64]),
            ..ReportBody::default()
        },
        key_id: [0; 32],
        mac: [0; 16],
    }
    .to_bytes()
    .to_vec()
}

fn key() -> Option<Vec<u8>> {
    Some(ECDSA_P256_QE3_KEY_ID.to_vec())
}

#[test]
fn init_quote_ex_ignores_buf_size_without_pub_key_id() {
    let b = backend();
    // dcap_ql's probe: b_pub_key_id = false with a garbage buf_size.
    let res = handle(
        &b,
        Request::InitQuoteEx {
            att_key_id: key(),
            b_pub_key_id: false,
            buf_size: Some(0xdead_beef_dead_beef),
        },
    );
    let Response::InitQuoteEx {
        target_info,
        pub_key_id_size,
        pub_key_id,
    } = res
    else {
        panic!("{res:?}")
    };
    assert_eq!(target_info.len(), 512);
    assert_eq!(pub_key_id_size, 32);
    assert_eq!(pub_key_id, None);
    // With b_pub_key_id, buf_size counts.
    let small = handle(
        &b,
        Request::InitQuoteEx {
            att_key_id: key(),
            b_pub_key_id: true,
            buf_size: Some(16),
        },
    );
    assert_eq!(small.code(), AesmError::Parameter);
    let ok = handle(
        &b,
        Request::InitQuoteEx {
            att_key_id: None,
            b_pub_key_id: true,
            buf_size: Some(32),
        },
    );
    let Response::InitQuoteEx { pub_key_id, .. } = ok else {
        panic!()
    };
    assert_eq!(pub_key_id.unwrap(), b.pub_key_id().unwrap());
}

#[test]
fn get_quote_ex_pads_to_buf_size_and_rejects_small_buffers() {
    let b = backend();
    let size = b.quote_size().unwrap();
    let res = handle(
        &b,
        Request::GetQuoteEx {
            report: report(),
            att_key_id: key(),
            qe_report_info: None,
            buf_size: 8192,
        },
    );
    let Response::GetQuoteEx {
        quote,
        qe_report_info,
    } = res
    else {
        panic!("{res:?}")
    };
    assert_eq!(quote.len(), 8192);
    assert!(qe_report_info.is_none());
    let (q, trailing) = Quote::parse_tolerant(&quote).unwrap();
    assert_eq!(trailing, 8192 - usize::try_from(size).unwrap());
    assert!(
        quote[usize::try_from(size).unwrap()..]
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(q.sgx_report_body().unwrap().mr_enclave, MrEnclave([7; 32]));

    for buf_size in [size - 1, 0, MAX_QUOTE_BUF + 1] {
        let r = handle(
            &b,
            Request::GetQuoteEx {
                report: report(),
                att_key_id: key(),
                qe_report_info: None,
                buf_size,
            },
        );
        assert_eq!(r.code(), AesmError::Parameter, "buf_size {buf_size}");
    }
    let short_report = handle(
        &b,
        Request::GetQuoteEx {
            report: vec![0; 431],
            att_key_id: key(),
            qe_report_info: None,
            buf_size: size,
        },
    );
    assert_eq!(short_report.code(), AesmError::Parameter);
}

#[test]
fn qe_report_info_gets_a_qe_report_over_nonce_and_quote() {
    let b = backend();
    let size = b.quote_size().unwrap();
    let mut info = vec![0u8; QE_REPORT_INFO_SIZE];
    info[..16].copy_from_slice(&[5; 16]);
    let res = handle(
        &b,
        Request::GetQuoteEx {
            report: report(),
            att_key_id: key(),
            qe_report_info: Some(info),
            buf_size: size,
        },
    );
    let Response::GetQuoteEx {
        quote,
        qe_report_info: Some(info),
    } = res
    else {
        panic!("{res:?}")
    };
    let qe = Report::parse(&info[528..]).unwrap();
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[5; 16]);
    ctx.update(&quote);
    assert_eq!(&qe.body.report_data.0[..32], ctx.finish().as_ref());
    assert_eq!(&qe.body.report_data.0[32..], &[0; 32]);

    let wrong = handle(
        &b,
        Request::GetQuoteEx {
            report: report(),
            att_key_id: key(),
            qe_report_info: Some(vec![0; 959]),
            buf_size: size,
        },
    );
    assert_eq!(wrong.code(), AesmError::Parameter);
}

#[test]
fn key_ids_lists_and_legacy_requests() {
    let b = backend();
    let mut epid = ECDSA_P256_QE3_KEY_ID;
    epid[154] = 0;
    let r = handle(
        &b,
        Request::GetQuoteSizeEx {
            att_key_id: Some(epid.to_vec()),
        },
    );
    assert_eq!(r.code(), AesmError::UnsupportedAttKeyId);
    assert_eq!(
        handle(&b, Request::GetSupportedAttKeyIdNum),
        Response::GetSupportedAttKeyIdNum { num: 1 }
    );
    assert_eq!(
        handle(&b, Request::GetSupportedAttKeyIds { buf_size: 256 }),
        Response::GetSupportedAttKeyIds {
            att_key_ids: ECDSA_P256_QE3_KEY_ID.to_vec()
        }
    );
    assert_eq!(
        handle(&b, Request::GetSupportedAttKeyIds { buf_size: 10 }).code(),
        AesmError::Parameter
    );
    // Select: a list of [EPID, ECDSA] picks ECDSA; [EPID] is unsupported; bad length fails.
    let mut list = vec![0, 0, 0, 0, 2, 0, 0, 0];
    list.extend_from_slice(&epid);
    list.extend_from_slice(&ECDSA_P256_QE3_KEY_ID);
    assert!(matches!(
        handle(
            &b,
            Request::SelectAttKeyId {
                att_key_id_list: Some(list.clone())
            }
        ),
        Response::SelectAttKeyId { .. }
    ));
    let mut only_epid = vec![0, 0, 0, 0, 1, 0, 0, 0];
    only_epid.extend_from_slice(&epid);
    assert_eq!(
        handle(
            &b,
            Request::SelectAttKeyId {
                att_key_id_list: Some(only_epid)
            }
        )
        .code(),
        AesmError::UnsupportedAttKeyId
    );
    list.pop();
    assert_eq!(
        handle(
            &b,
            Request::SelectAttKeyId {
                att_key_id_list: Some(list)
            }
        )
        .code(),
        AesmError::Parameter
    );
    for kind in [
        RequestKind::InitQuote,
        RequestKind::GetQuote,
        RequestKind::GetLaunchToken,
    ] {
        assert_eq!(
            handle(&b, Request::Unsupported(kind)),
            Response::Error {
                kind,
                code: AesmError::ServiceUnavailable
            }
        );
    }
}

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

/// `qe_report_info` against backends with and without QE reports, with a counting fake.
mod qe_report {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const QUOTE: [u8; 100] = [0x51; 100];
    const QE_REPORT: [u8; 432] = [0x42; 432];

    /// Counts `quote` and `qe_report` calls.
    struct Fake {
        qe_reports: bool,
        quotes: AtomicUsize,
        reports: AtomicUsize,
    }

    impl Fake {
        fn new(qe_reports: bool) -> Self {
            Self {
                qe_reports,
                quotes: AtomicUsize::new(0),
                reports: AtomicUsize::new(0),
            }
        }
        fn calls(&self) -> (usize, usize) {
            (
                self.quotes.load(Ordering::SeqCst),
                self.reports.load(Ordering::SeqCst),
            )
        }
    }

    impl QuoteBackend for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn target_info(&self) -> Result<[u8; 512], AesmError> {
            Ok([0; 512])
        }
        fn pub_key_id(&self) -> Result<[u8; 32], AesmError> {
            Ok([0; 32])
        }
        fn quote_size(&self) -> Result<u32, AesmError> {
            Ok(100)
        }
        fn quote(&self, _report: &[u8; 432]) -> Result<Vec<u8>, AesmError> {
            self.quotes.fetch_add(1, Ordering::SeqCst);
            Ok(QUOTE.to_vec())
        }
        fn supports_qe_report(&self) -> bool {
            self.qe_reports
        }
        fn qe_report(
            &self,
            _target_info: &[u8; 512],
            _report_data: [u8; 64],
        ) -> Result<[u8; 432], AesmError> {
            self.reports.fetch_add(1, Ordering::SeqCst);
            Ok(QE_REPORT)
        }
    }

    fn get_quote(b: &dyn QuoteBackend, qe_report_info: Option<Vec<u8>>, buf_size: u32) -> Response {
        handle(
            b,
            Request::GetQuoteEx {
                report: vec![0; REPORT_SIZE],
                att_key_id: Some(ECDSA_P256_QE3_KEY_ID.to_vec()),
                qe_report_info,
                buf_size,
            },
        )
    }

    #[test]
    fn unsupported_qe_report_is_refused_before_quoting() {
        let b = Fake::new(false);
        let res = get_quote(&b, Some(vec![0; QE_REPORT_INFO_SIZE]), 4096);
        assert_eq!(res.code(), AesmError::UnableToGenerateQeReport);
        assert!(matches!(
            res,
            Response::Error {
                kind: RequestKind::GetQuoteEx,
                ..
            }
        ));
        assert_eq!(
            b.calls(),
            (0, 0),
            "no quote may be made for a refused request"
        );
        // A malformed qe_report_info is still a parameter error, also without a quote.
        let res = get_quote(&b, Some(vec![0; QE_REPORT_INFO_SIZE - 1]), 4096);
        assert_eq!(res.code(), AesmError::Parameter);
        assert_eq!(b.calls(), (0, 0));
        // Without qe_report_info the same backend quotes as usual.
        let Response::GetQuoteEx {
            quote,
            qe_report_info,
        } = get_quote(&b, None, 4096)
        else {
            panic!("no quote")
        };
        assert_eq!(quote.len(), 4096);
        assert_eq!(quote.get(..QUOTE.len()), Some(&QUOTE[..]));
        assert_eq!(qe_report_info, None);
        assert_eq!(b.calls(), (1, 0));
    }

    #[test]
    fn supported_qe_report_is_filled_after_the_quote() {
        let b = Fake::new(true);
        let mut info = vec![0u8; QE_REPORT_INFO_SIZE];
        info[..16].copy_from_slice(&[3; 16]);
        info[16..528].copy_from_slice(&[4; 512]);
        let Response::GetQuoteEx {
            qe_report_info: Some(out),
            ..
        } = get_quote(&b, Some(info), 4096)
        else {
            panic!("no qe_report_info")
        };
        assert_eq!(b.calls(), (1, 1));
        assert_eq!(&out[..16], &[3; 16]);
        assert_eq!(&out[16..528], &[4; 512]);
        assert_eq!(&out[528..], &QE_REPORT[..]);
    }

    #[test]
    fn sim_backend_supports_and_fills_qe_reports() {
        let b = backend();
        assert!(b.supports_qe_report());
        let size = b.quote_size().unwrap();
        let info = vec![0u8; QE_REPORT_INFO_SIZE];
        let res = get_quote(&b, Some(info), size);
        let Response::GetQuoteEx {
            qe_report_info: Some(out),
            ..
        } = res
        else {
            panic!("{res:?}")
        };
        assert_ne!(&out[528..], &[0u8; 432][..], "QE report slot left empty");
        assert!(sgx_quote::Report::parse(&out[528..]).is_ok());
    }
}

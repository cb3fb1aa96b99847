//! Hostile and broken clients: the server closes their connections and keeps serving
//! everyone else.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use aesm::{Request, Response};

use std::sync::Arc;

use super::{app_report, client, start};

/// Sends raw bytes and returns what the server answered before closing.
fn raw(socket: &Path, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    if half_close {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    // A reset counts as closed too.
    let _ = s.read_to_end(&mut out);
    out
}

pub(crate) fn quote_ok(socket: &Path) {
    let c = client(socket);
    let size = c.get_quote_size_ex().unwrap();
    let (quote, _) = c
        .get_quote_ex(&app_report([1; 32], [2; 64]), size, None)
        .unwrap();
    assert_eq!(quote.len(), usize::try_from(size).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_huge_and_unknown_frames_are_closed_and_service_continues() {
    let srv = start(8, Duration::from_millis(500)).await;
    let socket = srv.socket.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        // HTTP garbage: its "length" is ~540 MB, over the bound.
        assert!(raw(&socket, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).is_empty());
        // 4 GiB length prefix.
        assert!(raw(&socket, &[0xff, 0xff, 0xff, 0xff], false).is_empty());
        // Both were refused at once, not after the io timeout.
        assert!(started.elapsed() < Duration::from_millis(450));
        // Truncated frame (announces 100 bytes, sends 10, then EOF).
        let mut t = 100u32.to_le_bytes().to_vec();
        t.extend_from_slice(&[0x8a; 10]);
        assert!(raw(&socket, &t, true).is_empty());
        // Valid framing, invalid protobuf.
        assert!(raw(&socket, &[3, 0, 0, 0, 0xff, 0xff, 0xff], false).is_empty());
        // Valid frame, empty Request (no request set).
        assert!(raw(&socket, &[0, 0, 0, 0], false).is_empty());
        // Valid frame with only an unknown field (30: varint 1).
        assert!(raw(&socket, &[2, 0, 0, 0, 0xf0, 0x01], true).is_empty());
        quote_ok(&socket);
        // EPID requests get AESM_SERVICE_UNAVAILABLE, not a hang.
        let res = client(&socket)
            .transact(&Request::Unsupported(aesm::RequestKind::GetQuote))
            .unwrap();
        assert_eq!(res.code(), aesm::AesmError::ServiceUnavailable);
    })
    .await
    .unwrap();
    srv.wait_for_metric(
        r#"confcom_quote_helper_requests_total{type="invalid",result="frame_too_large"} 2"#,
    )
    .await;
    srv.wait_for_metric(
        r#"confcom_quote_helper_requests_total{type="get_quote_ex",result="success"} 1"#,
    )
    .await;
    srv.wait_for_metric("confcom_quote_helper_quote_latency_seconds_count 1")
        .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_do_not_block_others_and_are_dropped_after_the_timeout() {
    let io_timeout = Duration::from_millis(400);
    let srv = start(4, io_timeout).await;
    let socket = srv.socket.clone();
    tokio::task::spawn_blocking(move || {
        // Three clients connect and send nothing (one permit stays free).
        let mut idle: Vec<UnixStream> = (0..3)
            .map(|_| UnixStream::connect(&socket).unwrap())
            .collect();
        let started = Instant::now();
        for _ in 0..5 {
            quote_ok(&socket);
        }
        assert!(
            started.elapsed() < io_timeout,
            "served while idle clients hold connections"
        );
        // The idle ones are closed by the server once the timeout expires.
        for s in &mut idle {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).unwrap_or(0), 0);
        }
        // With every permit taken by silent clients, a new client still gets served once
        // they time out: it waits in the backlog instead of failing.
        let _hogs: Vec<UnixStream> = (0..4)
            .map(|_| UnixStream::connect(&socket).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        quote_ok(&socket);
    })
    .await
    .unwrap();
    srv.wait_for_metric(r#"confcom_quote_helper_requests_total{type="invalid",result="timeout"}"#)
        .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_are_all_served() {
    let srv = start(32, Duration::from_secs(5)).await;
    let socket = srv.socket.clone();
    tokio::task::spawn_blocking(move || {
        let threads: Vec<_> = (0..200u8)
            .map(|i| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    let c = client(&socket);
                    let (quote, _) = c
                        .get_quote_ex(&app_report([i; 32], [i; 64]), 8192, None)
                        .unwrap();
                    let (q, _) = sgx_quote::Quote::parse_tolerant(&quote).unwrap();
                    assert_eq!(q.sgx_report_body().unwrap().mr_enclave.0, [i; 32]);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    })
    .await
    .unwrap();
    srv.wait_for_metric(
        r#"confcom_quote_helper_requests_total{type="get_quote_ex",result="success"} 200"#,
    )
    .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_lifecycle_dir_mode_stale_in_use_and_shutdown() {
    let srv = start(4, Duration::from_secs(1)).await;
    let socket = srv.socket.clone();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    // A second server on the same live socket is refused.
    let sim = sgx_sim::state::load(&srv.sim_state).unwrap();
    let mut reg = prometheus_client::registry::Registry::default();
    let cfg = quote_helper::server::ServerConfig {
        socket: socket.clone(),
        socket_mode: 0o600,
        max_connections: 2,
        max_pending: 16,
        io_timeout: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
    };
    let backend = std::sync::Arc::new(quote_helper::backend::sim::SimBackend::new(sim));
    let err = quote_helper::server::Server::bind(
        cfg.clone(),
        backend.clone(),
        quote_helper::metrics::Metrics::register(&mut reg),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("already listening"), "{err}");
    // Graceful stop removes the socket.
    let _dir = srv.stop().await;
    assert!(!socket.exists());
    // A stale socket file (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let server = quote_helper::server::Server::bind(
        cfg.clone(),
        backend.clone(),
        quote_helper::metrics::Metrics::register(&mut reg),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(server);
    // A regular file at the path is not removed.
    std::fs::remove_file(&socket).unwrap();
    std::fs::write(&socket, b"not a socket").unwrap();
    let err = quote_helper::server::Server::bind(
        cfg,
        backend,
        quote_helper::metrics::Metrics::register(&mut reg),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("not a socket"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_subcommand_and_dcap_startup_error() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: quote_helper::cli::Args,
    }
    let srv = start(4, Duration::from_secs(1)).await;
    let sock = srv.socket.to_str().unwrap().to_owned();
    let ok = quote_helper::cli::run(Cli::parse_from(["x", "probe", "--socket", &sock]).args)
        .await
        .unwrap();
    assert_eq!(ok, std::process::ExitCode::SUCCESS);
    srv.stop().await;
    let down =
        quote_helper::cli::run(Cli::parse_from(["x", "probe", "--socket", &sock]).args).await;
    assert!(down.is_err());

    // The DCAP backend on a machine without SGX: one clear error naming what is missing.
    let dir = tempfile::tempdir().unwrap();
    let dsock = dir.path().join("aesm.socket");
    let err = quote_helper::cli::run(
        Cli::parse_from([
            "x",
            "--backend",
            "dcap",
            "--socket",
            dsock.to_str().unwrap(),
        ])
        .args,
    )
    .await
    .err()
    .unwrap();
    let msg = format!("{err:#}");
    assert!(msg.contains("libsgx_dcap_ql.so.1"), "{msg}");
    if !Path::new("/dev/sgx_enclave").exists() {
        assert!(msg.contains("/dev/sgx_enclave"), "{msg}");
    }
    if !Path::new("/dev/sgx_provision").exists() {
        assert!(msg.contains("/dev/sgx_provision"), "{msg}");
    }
    assert!(!dsock.exists(), "no socket is bound when the backend fails");
}

#[test]
fn responses_from_client_helpers_match_protocol() {
    // The typed client rejects a response for the wrong request.
    let res = Response::GetQuoteSizeEx { quote_size: 1 };
    assert!(Response::decode(&res.encode(), aesm::RequestKind::GetQuoteEx).is_err());
}

/// Reads one response frame, then expects a clean end of stream (not a reset: the server
/// consumes the whole request before closing, whichever path read it).
fn read_response_then_eof(s: &mut UnixStream) -> Response {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; usize::try_from(u32::from_le_bytes(len)).unwrap()];
    s.read_exact(&mut payload).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    Response::decode(&payload, aesm::RequestKind::GetQuoteEx).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_at_once_or_in_pieces_are_answered_and_closed_cleanly() {
    let srv = start(8, Duration::from_secs(5)).await;
    let socket = srv.socket.clone();
    tokio::task::spawn_blocking(move || {
        let req = Request::GetQuoteEx {
            report: app_report([3; 32], [4; 64]),
            att_key_id: None,
            qe_report_info: None,
            buf_size: 8192,
        };
        let frame = aesm::frame::encode_frame(&req.encode()).unwrap();
        // All at once (the request is waiting when the server accepts).
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(&frame).unwrap();
        let Response::GetQuoteEx { quote, .. } = read_response_then_eof(&mut s) else {
            panic!("not a quote");
        };
        assert_eq!(quote.len(), 8192);
        // Whole, but only after a pause: the server finds nothing queued and waits for it.
        let mut s = UnixStream::connect(&socket).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        s.write_all(&frame).unwrap();
        let Response::GetQuoteEx { quote, .. } = read_response_then_eof(&mut s) else {
            panic!("not a quote");
        };
        assert_eq!(quote.len(), 8192);
        // In pieces with pauses: the server first sees a partial frame, then the rest.
        for cut in [2, 4, 100] {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(&frame[..cut]).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            s.write_all(&frame[cut..]).unwrap();
            let Response::GetQuoteEx { quote, .. } = read_response_then_eof(&mut s) else {
                panic!("not a quote");
            };
            assert_eq!(quote.len(), 8192, "cut at {cut}");
        }
    })
    .await
    .unwrap();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_larger_than_the_socket_buffer_are_written_whole_or_time_out() {
    let io_timeout = Duration::from_millis(300);
    let srv = start(4, io_timeout).await;
    let socket = srv.socket.clone();
    tokio::task::spawn_blocking(move || {
        let big = quote_helper::service::MAX_QUOTE_BUF;
        // A client that reads: the padded answer (larger than a unix socket's send buffer)
        // arrives whole.
        let (quote, _) = client(&socket)
            .get_quote_ex(&app_report([3; 32], [4; 64]), big, None)
            .unwrap();
        assert_eq!(quote.len(), usize::try_from(big).unwrap());
        // A client that asks for the same and never reads is cut off after the timeout,
        // while others are served.
        let req = Request::GetQuoteEx {
            report: app_report([5; 32], [6; 64]),
            att_key_id: Some(aesm::keyid::ECDSA_P256_QE3_KEY_ID.to_vec()),
            qe_report_info: None,
            buf_size: big,
        };
        let mut stuck = UnixStream::connect(&socket).unwrap();
        stuck
            .write_all(&aesm::frame::encode_frame(&req.encode()).unwrap())
            .unwrap();
        quote_ok(&socket);
        std::thread::sleep(io_timeout * 2);
        quote_ok(&socket);
        drop(stuck);
    })
    .await
    .unwrap();
    srv.wait_for_metric(r#"result="write_timeout""#).await;
    srv.stop().await;
}

/// The sim backend, with every quote taking `delay` (as an enclave call or a network fetch
/// may): a backend that [may block](quote_helper::QuoteBackend::may_block).
pub(crate) struct SlowBackend {
    pub(crate) inner: quote_helper::backend::sim::SimBackend,
    pub(crate) delay: Duration,
    pub(crate) done: std::sync::atomic::AtomicUsize,
    /// Quotes being made now, and the most at once.
    pub(crate) busy: std::sync::atomic::AtomicUsize,
    pub(crate) peak: std::sync::atomic::AtomicUsize,
}

impl quote_helper::QuoteBackend for SlowBackend {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn target_info(&self) -> Result<[u8; 512], aesm::AesmError> {
        self.inner.target_info()
    }
    fn pub_key_id(&self) -> Result<[u8; 32], aesm::AesmError> {
        self.inner.pub_key_id()
    }
    fn quote_size(&self) -> Result<u32, aesm::AesmError> {
        self.inner.quote_size()
    }
    fn quote(&self, report: &[u8; 432]) -> Result<Vec<u8>, aesm::AesmError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.busy.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        std::thread::sleep(self.delay);
        let q = self.inner.quote(report);
        self.busy.fetch_sub(1, SeqCst);
        self.done.fetch_add(1, SeqCst);
        q
    }
    fn qe_report(
        &self,
        target_info: &[u8; 512],
        report_data: [u8; 64],
    ) -> Result<[u8; 432], aesm::AesmError> {
        self.inner.qe_report(target_info, report_data)
    }
}

/// A server whose every quote takes `delay`, and its backend (to count finished quotes).
pub(crate) async fn start_slow(
    delay: Duration,
    max_connections: usize,
    io_timeout: Duration,
) -> (super::Running, Arc<SlowBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let sim_state = dir.path().join("sim");
    let sim = sgx_sim::state::load_or_create(&sim_state, time::OffsetDateTime::now_utc()).unwrap();
    let backend = Arc::new(SlowBackend {
        inner: quote_helper::backend::sim::SimBackend::new(sim),
        delay,
        done: std::sync::atomic::AtomicUsize::new(0),
        busy: std::sync::atomic::AtomicUsize::new(0),
        peak: std::sync::atomic::AtomicUsize::new(0),
    });
    let srv =
        super::start_backend(dir, sim_state, backend.clone(), max_connections, io_timeout).await;
    (srv, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_served_while_a_blocking_backend_is_busy_with_others() {
    let (srv, backend) = start_slow(Duration::from_secs(2), 8, Duration::from_secs(10)).await;
    let socket = srv.socket.clone();
    tokio::task::spawn_blocking(move || {
        // More slow quotes in flight than the pool starts with.
        let slow: Vec<_> = (0..4)
            .map(|i| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    let c = client(&socket);
                    c.get_quote_ex(&app_report([i; 32], [i; 64]), 8192, None)
                        .unwrap()
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // A quick request is answered while every slow one is still being quoted.
        let size = client(&socket).get_quote_size_ex().unwrap();
        assert!(size > 0);
        assert_eq!(
            backend.done.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the quick request waited for the slow quotes"
        );
        for t in slow {
            assert_eq!(t.join().unwrap().0.len(), 8192);
        }
    })
    .await
    .unwrap();
    srv.stop().await;
}

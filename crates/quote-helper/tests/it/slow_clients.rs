//! Clients that are slow on purpose: connections that send nothing, responses nobody reads,
//! and shutdown with clients still queued. None of them may keep a worker from others.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aesm::Request;

use super::robustness::{quote_ok, start_slow};
use super::{app_report, client, start_tuned};

/// Whether the server has closed `s` (end-of-file or reset), without waiting.
fn closed_by_server(s: &UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let closed = match (&mut &*s).read(&mut b) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent something to a client that sent nothing"),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_silent_clients_hold_no_worker_and_everyone_else_is_served() {
    // Four workers and a 10 s request timeout: with a worker held per silent connection, 300
    // of them would keep everyone else waiting for minutes.
    let io_timeout = Duration::from_secs(10);
    let srv = start_tuned(4, 1024, io_timeout).await;
    let socket = srv.socket.clone();
    let silent: Vec<UnixStream> = tokio::task::spawn_blocking({
        let socket = socket.clone();
        move || {
            (0..300)
                .map(|_| UnixStream::connect(&socket).unwrap())
                .collect()
        }
    })
    .await
    .unwrap();
    srv.wait_for_metric("confcom_quote_helper_connections_waiting 300")
        .await;
    let started = Instant::now();
    tokio::task::spawn_blocking({
        let socket = socket.clone();
        move || {
            for _ in 0..20 {
                quote_ok(&socket);
            }
        }
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < io_timeout,
        "others waited for the silent clients' timeout"
    );
    // The readiness probe gets through too.
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: quote_helper::cli::Args,
    }
    let sock = socket.to_str().unwrap().to_owned();
    let probe = quote_helper::cli::run(Cli::parse_from(["x", "probe", "--socket", &sock]).args)
        .await
        .unwrap();
    assert_eq!(probe, std::process::ExitCode::SUCCESS);
    assert!(silent.iter().all(|s| !closed_by_server(s)));
    // Clients that give up are let go at once, not at their timeout.
    drop(silent);
    srv.wait_for_metric("confcom_quote_helper_connections_waiting 0")
        .await;
    srv.wait_for_metric(
        r#"confcom_quote_helper_requests_total{type="invalid",result="truncated"} 300"#,
    )
    .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_pending_the_longest_waiting_connection_is_closed() {
    let srv = start_tuned(2, 8, Duration::from_secs(30)).await;
    let socket = srv.socket.clone();
    let silent: Vec<UnixStream> = tokio::task::spawn_blocking({
        let socket = socket.clone();
        move || {
            (0..20)
                .map(|i| {
                    let s = UnixStream::connect(&socket).unwrap();
                    if i == 0 {
                        // Let the first one be parked before the others arrive.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    s
                })
                .collect()
        }
    })
    .await
    .unwrap();
    srv.wait_for_metric(r#"{type="invalid",result="evicted"} 12"#)
        .await;
    srv.wait_for_metric("confcom_quote_helper_connections_waiting 8")
        .await;
    let closed: Vec<bool> = silent.iter().map(closed_by_server).collect();
    assert!(
        closed[0],
        "the longest-waiting connection is the one closed"
    );
    assert_eq!(closed.iter().filter(|c| **c).count(), 12, "{closed:?}");
    tokio::task::spawn_blocking(move || quote_ok(&socket))
        .await
        .unwrap();
    srv.stop().await;
}

/// A GetQuoteEx frame asking for the largest quote buffer, which does not fit a Unix
/// socket's send buffer.
fn large_request() -> Vec<u8> {
    let req = Request::GetQuoteEx {
        report: app_report([5; 32], [6; 64]),
        att_key_id: Some(aesm::keyid::ECDSA_P256_QE3_KEY_ID.to_vec()),
        qe_report_info: None,
        buf_size: quote_helper::service::MAX_QUOTE_BUF,
    };
    aesm::frame::encode_frame(&req.encode()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_nobody_reads_holds_no_worker_and_has_one_deadline() {
    // One worker only: while it waited for a reader, nobody else would be served.
    let io_timeout = Duration::from_secs(10);
    let srv = start_tuned(1, 1024, io_timeout).await;
    let socket = srv.socket.clone();
    let started = Instant::now();
    let stuck = tokio::task::spawn_blocking({
        let socket = socket.clone();
        move || {
            let mut stuck = UnixStream::connect(&socket).unwrap();
            stuck.write_all(&large_request()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            for _ in 0..5 {
                quote_ok(&socket);
            }
            stuck
        }
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < io_timeout,
        "others waited for the stuck reader"
    );
    srv.wait_for_metric("confcom_quote_helper_connections_waiting 1")
        .await;
    drop(stuck);
    srv.stop().await;

    // A reader that takes a little at a time, each read well within the timeout: the
    // timeout bounds the whole response, not each write.
    let io_timeout = Duration::from_millis(600);
    let srv = start_tuned(2, 1024, io_timeout).await;
    let socket = srv.socket.clone();
    let (got, whole) = tokio::task::spawn_blocking(move || {
        let mut s = UnixStream::connect(&socket).unwrap();
        let frame = large_request();
        s.write_all(&frame).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = 0usize;
        let mut chunk = vec![0u8; 32 * 1024];
        loop {
            std::thread::sleep(Duration::from_millis(200));
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let whole = 4 + usize::try_from(quote_helper::service::MAX_QUOTE_BUF).unwrap();
        (got, whole)
    })
    .await
    .unwrap();
    assert!(
        got < whole,
        "the trickling reader got the whole {whole} bytes"
    );
    srv.wait_for_metric(r#"{type="get_quote_ex",result="write_timeout"} 1"#)
        .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_the_requests_already_waiting_in_the_backlog() {
    // One worker: the first quote holds it, the next three wait in the backlog.
    let (srv, backend) = start_slow(Duration::from_millis(300), 1, Duration::from_secs(10)).await;
    let socket = srv.socket.clone();
    let clients: Vec<_> = (0..4u8)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(if i == 0 { 0 } else { 100 }));
                client(&socket).get_quote_ex(&app_report([i; 32], [i; 64]), 8192, None)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(backend.done.load(std::sync::atomic::Ordering::SeqCst), 0);
    srv.stop().await;
    for c in clients {
        let (quote, _) = c.join().unwrap().unwrap();
        assert_eq!(quote.len(), 8192);
    }
    assert_eq!(backend.done.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_the_socket_of_a_newer_instance_alone() {
    let srv = start_tuned(2, 16, Duration::from_secs(1)).await;
    let socket = srv.socket.clone();
    // A newer instance took the path over (as during a rolling update): the old file is
    // gone and a new socket is bound in its place.
    std::fs::remove_file(&socket).unwrap();
    let newer = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let _dir = srv.stop().await;
    assert!(
        socket.exists(),
        "the old instance removed the newer one's socket"
    );
    UnixStream::connect(&socket).unwrap();
    drop(newer);
}

/// A GetQuoteEx frame for an 8 KiB quote.
fn quote_frame() -> Vec<u8> {
    let req = Request::GetQuoteEx {
        report: app_report([7; 32], [8; 64]),
        att_key_id: Some(aesm::keyid::ECDSA_P256_QE3_KEY_ID.to_vec()),
        qe_report_info: None,
        buf_size: 8192,
    };
    aesm::frame::encode_frame(&req.encode()).unwrap()
}

/// Sends `frame` as the length prefix, a pause, then the payload (after an initial pause),
/// and returns the decoded response.
fn in_pieces(socket: &std::path::Path, before: Duration, between: Duration) -> aesm::Response {
    let frame = quote_frame();
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::thread::sleep(before);
    s.write_all(&frame[..4]).unwrap();
    std::thread::sleep(between);
    s.write_all(&frame[4..]).unwrap();
    let payload =
        aesm::frame::read_frame_blocking(&mut s, aesm::frame::MAX_RESPONSE_LEN, 8192).unwrap();
    aesm::Response::decode(&payload, aesm::RequestKind::GetQuoteEx).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_pieces_or_late_are_answered_even_with_one_worker() {
    // One worker: a request the waiter takes in must still find a worker, although the
    // only one is idle in accept.
    let srv = start_tuned(1, 16, Duration::from_secs(10)).await;
    let socket = srv.socket.clone();
    tokio::task::spawn_blocking(move || {
        for (before, between) in [
            // Intel's client: prefix and payload as two writes, back to back.
            (Duration::ZERO, Duration::from_micros(300)),
            // Payload long after the prefix: the waiter finishes reading it.
            (Duration::ZERO, Duration::from_millis(100)),
            // Nothing at first.
            (Duration::from_millis(100), Duration::ZERO),
        ] {
            let res = in_pieces(&socket, before, between);
            assert!(
                matches!(&res, aesm::Response::GetQuoteEx { quote, .. } if quote.len() == 8192),
                "{before:?} {between:?}: {res:?}"
            );
        }
        quote_ok(&socket);
    })
    .await
    .unwrap();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_responses_are_held_within_a_byte_budget() {
    let srv = start_tuned(4, 1024, Duration::from_secs(30)).await;
    let socket = srv.socket.clone();
    let per = usize::try_from(quote_helper::service::MAX_QUOTE_BUF).unwrap();
    let fit = quote_helper::server::MAX_HELD_RESPONSE_BYTES / per;
    let n = fit + 16;
    let unread: Vec<UnixStream> = tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| {
                let mut s = UnixStream::connect(&socket).unwrap();
                s.write_all(&large_request()).unwrap();
                s
            })
            .collect()
    })
    .await
    .unwrap();
    // Each held response is a little over MAX_QUOTE_BUF: at most `fit` stay, the oldest
    // others are closed.
    srv.wait_for_metric(r#"{type="get_quote_ex",result="evicted"}"#)
        .await;
    let text = srv.metrics_text();
    let waiting: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("confcom_quote_helper_connections_waiting "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(waiting <= fit, "{waiting} responses held, budget for {fit}");
    assert!(
        waiting >= fit / 2,
        "{waiting} responses held, budget for {fit}"
    );
    drop(unread);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_a_large_response_a_client_is_reading() {
    // The quote is still being made when shutdown begins; its response does not fit the
    // socket buffer, so it goes to the waiter after the backlog has been drained.
    let (srv, _) = start_slow(Duration::from_millis(300), 2, Duration::from_secs(10)).await;
    let socket = srv.socket.clone();
    let reader = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(&large_request()).unwrap();
        // Starts reading only after the quote is made and shutdown has begun.
        std::thread::sleep(Duration::from_millis(600));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        all
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(srv.stop());
    let got = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    stopping.await.unwrap();
    assert!(got.len() >= 4, "nothing came back");
    let declared = u32::from_le_bytes(got[..4].try_into().unwrap());
    assert_eq!(
        got.len(),
        4 + usize::try_from(declared).unwrap(),
        "the response was cut off at shutdown"
    );
    let res = aesm::Response::decode(&got[4..], aesm::RequestKind::GetQuoteEx).unwrap();
    assert!(matches!(&res, aesm::Response::GetQuoteEx { quote, .. }
            if quote.len() == usize::try_from(quote_helper::service::MAX_QUOTE_BUF).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_bounds_requests_answered_at_once_after_hand_offs() {
    let (srv, backend) = start_slow(Duration::from_millis(100), 1, Duration::from_secs(30)).await;
    let socket = srv.socket.clone();
    tokio::task::spawn_blocking(move || {
        // Late senders, one after another: each goes through the waiter and comes back on a
        // new worker, which must not stay on as one more acceptor...
        for _ in 0..6 {
            let res = in_pieces(&socket, Duration::from_millis(20), Duration::ZERO);
            assert!(matches!(res, aesm::Response::GetQuoteEx { .. }));
        }
        // ...that would serve these prompt ones beside the others.
        let prompt: Vec<_> = (0..6u8)
            .map(|i| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    client(&socket).get_quote_ex(&app_report([i; 32], [i; 64]), 8192, None)
                })
            })
            .collect();
        for t in prompt {
            t.join().unwrap().unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(backend.done.load(std::sync::atomic::Ordering::SeqCst), 12);
    assert_eq!(
        backend.peak.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "more quotes at once than max_connections"
    );
    srv.stop().await;
}

/// The sim backend, panicking on quotes for one MRENCLAVE.
struct PanickyBackend(quote_helper::backend::sim::SimBackend);

const PANIC_MRENCLAVE: [u8; 32] = [0xee; 32];

impl quote_helper::QuoteBackend for PanickyBackend {
    fn name(&self) -> &'static str {
        "panicky"
    }
    fn target_info(&self) -> Result<[u8; 512], aesm::AesmError> {
        self.0.target_info()
    }
    fn pub_key_id(&self) -> Result<[u8; 32], aesm::AesmError> {
        self.0.pub_key_id()
    }
    fn quote_size(&self) -> Result<u32, aesm::AesmError> {
        self.0.quote_size()
    }
    fn quote(&self, report: &[u8; 432]) -> Result<Vec<u8>, aesm::AesmError> {
        // MRENCLAVE is at offset 64 of the report body.
        assert!(
            report[64..96] != PANIC_MRENCLAVE,
            "deliberate panic of the test backend"
        );
        self.0.quote(report)
    }
    fn qe_report(
        &self,
        target_info: &[u8; 512],
        report_data: [u8; 64],
    ) -> Result<[u8; 432], aesm::AesmError> {
        self.0.qe_report(target_info, report_data)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_backend_costs_one_error_answer_and_no_worker() {
    let dir = tempfile::tempdir().unwrap();
    let sim_state = dir.path().join("sim");
    let sim = sgx_sim::state::load_or_create(&sim_state, time::OffsetDateTime::now_utc()).unwrap();
    let backend = Arc::new(PanickyBackend(quote_helper::backend::sim::SimBackend::new(
        sim,
    )));
    let srv = super::start_backend(dir, sim_state, backend, 2, Duration::from_secs(5)).await;
    let socket = srv.socket.clone();
    tokio::task::spawn_blocking(move || {
        // More panics than workers and permits.
        for _ in 0..4 {
            let err = client(&socket)
                .get_quote_ex(&app_report(PANIC_MRENCLAVE, [0; 64]), 8192, None)
                .unwrap_err();
            assert!(
                matches!(err, aesm::Error::Aesm(aesm::AesmError::Unexpected)),
                "{err:?}"
            );
        }
        quote_ok(&socket);
    })
    .await
    .unwrap();
    let started = Instant::now();
    srv.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown waited for workers that had died"
    );
}

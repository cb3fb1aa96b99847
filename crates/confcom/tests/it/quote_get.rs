//! Tests of the `confcom` subcommand implemented in `src/cmd/quote_get.rs`, against a real
//! `confcom quote-helper --backend sim` process (which also covers its SIGTERM handling).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::confcom;

// The child is returned to the caller, which waits for it.
#[allow(clippy::zombie_processes)]
fn spawn_helper(socket: &Path, state: &Path, metrics: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_confcom"))
        .args([
            "quote-helper",
            "--backend",
            "sim",
            "--socket",
            socket.to_str().unwrap(),
            "--sim-state",
            state.to_str().unwrap(),
            "--io-timeout-ms",
            "2000",
            "--metrics-listen",
            metrics,
        ])
        .env_remove("SGX_AESM_ADDR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = confcom(&[
            "quote-helper",
            "probe",
            "--socket",
            socket.to_str().unwrap(),
        ]);
        if probe.status.success() {
            return child;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("quote helper did not become ready: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn quote_from_sim_helper_verifies_and_helper_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aesmd/aesm.socket");
    let state = dir.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let helper = spawn_helper(&socket, &state, &metrics);

    let out = dir.path().join("quote.bin");
    let mrenclave = "aa".repeat(32);
    let res = confcom(&[
        "quote",
        "--socket",
        socket.to_str().unwrap(),
        "--report-data",
        "0xc0ffee",
        "--mrenclave",
        &mrenclave,
        "--mrsigner",
        &"bb".repeat(32),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(res.status.success(), "{res:?}");
    let quote = std::fs::read(&out).unwrap();
    let q = sgx_quote::Quote::parse(&quote).unwrap();
    let body = q.sgx_report_body().unwrap();
    assert_eq!(body.mr_enclave.0, [0xaa; 32]);
    assert_eq!(&body.report_data.0[..4], &[0xc0, 0xff, 0xee, 0]);
    assert!(!body.attributes.is_debug());

    // It verifies against what `confcom sim export` writes for the same state.
    let exp = dir.path().join("export");
    let e = confcom(&[
        "sim",
        "export",
        "--sim-state",
        state.to_str().unwrap(),
        "--out",
        exp.to_str().unwrap(),
    ]);
    assert!(e.status.success(), "{e:?}");
    let collateral =
        dcap_verify::Collateral::from_json(&std::fs::read(exp.join("collateral.json")).unwrap())
            .unwrap();
    let anchors =
        dcap_verify::TrustAnchors::from_pem(&std::fs::read(exp.join("root-ca.pem")).unwrap())
            .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let verdict = dcap_verify::Verifier::new(anchors)
        .verify(
            &quote,
            &collateral,
            dcap_verify::UnixTime(now),
            &dcap_verify::Policy::default(),
        )
        .unwrap();
    assert_eq!(verdict.status(), dcap_verify::TcbStatus::UpToDate);

    // --debug sets ATTRIBUTES.DEBUG.
    let dbg = dir.path().join("debug.bin");
    let res = confcom(&[
        "quote",
        "--socket",
        socket.to_str().unwrap(),
        "--report-data",
        "01",
        "--debug",
        "--out",
        dbg.to_str().unwrap(),
    ]);
    assert!(res.status.success(), "{res:?}");
    let dq = std::fs::read(&dbg).unwrap();
    let parsed = sgx_quote::Quote::parse(&dq).unwrap();
    assert!(parsed.sgx_report_body().unwrap().attributes.is_debug());

    // Readiness and Prometheus metrics over HTTP.
    assert!(http_get(&metrics, "/readyz").starts_with("HTTP/1.1 200"));
    // (The server counts a request just after answering it: allow it a moment.)
    let want = r#"confcom_quote_helper_requests_total{type="get_quote_ex",result="success"} 2"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = http_get(&metrics, "/metrics");
        if text.contains(want) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(text.contains(want), "{text}");
    assert!(
        text.contains("confcom_quote_helper_quote_latency_seconds_bucket"),
        "{text}"
    );

    // SIGTERM: graceful exit, socket removed, structured request lines were logged.
    let kill = Command::new("kill")
        .args(["-TERM", &helper.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = helper.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!socket.exists());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("get_quote_ex"), "{log}");
    assert!(log.contains("peer_pid"), "{log}");
}

#[test]
fn quote_without_required_flags_or_helper_fails_clearly() {
    let missing = confcom(&["quote", "--report-data", "00"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--out"));
    let dir = tempfile::tempdir().unwrap();
    let nobody = confcom(&[
        "quote",
        "--socket",
        dir.path().join("none.sock").to_str().unwrap(),
        "--report-data",
        "00",
        "--out",
        dir.path().join("q").to_str().unwrap(),
        "--timeout-ms",
        "500",
    ]);
    assert!(!nobody.status.success());
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("none.sock"));
    let too_long = confcom(&[
        "quote",
        "--report-data",
        &"00".repeat(65),
        "--out",
        dir.path().join("q").to_str().unwrap(),
    ]);
    assert!(!too_long.status.success());
}

#[test]
fn quote_helper_dcap_backend_without_sgx_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aesm.socket");
    let out = confcom(&[
        "quote-helper",
        "--backend",
        "dcap",
        "--socket",
        socket.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("libsgx_dcap_ql.so.1"), "{err}");
    assert!(!socket.exists());
    let bad = confcom(&[
        "quote-helper",
        "--backend",
        "sim",
        "--max-connections",
        "0",
        "--socket",
        socket.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

//! Load benchmark of `POST /attest/SgxEnclave` on loopback with the real set-A quote and a
//! warm collateral cache (our PCCS, offline import → attestation server with a PCCS URL),
//! against the verifier's own warm cost measured in the same run. Prints
//! `attest-bench: rps=… p99_ms=… verify_warm_us=… efficiency=…` (cores = 2), then
//! `server_cpu_us_per_req=… server_efficiency=…`: the CPU time the server's threads spent per
//! request (from `/proc/self/task/*/schedstat`) and `verify_warm_us / server_cpu_us_per_req`,
//! the share of the server's own CPU that goes to verification.
//!
//! The same line then gives the ceiling that `efficiency` is measured against: `sign_us` (one
//! ES256 token signature over the real claims) and a null server (the same HTTP stack
//! answering with a stored copy of a real answer and doing nothing else) under the same load:
//! `null_rps`, and its CPU per request on the server (`null_server_cpu_us`) and load
//! generator (`null_client_cpu_us`) sides. `ceiling` = verify / (null server + null client +
//! verify + sign): the efficiency of a server that adds only one warm verification and one
//! signature to doing nothing; `ceiling_free_client` drops the load generator's share.
//!
//! The load generator is a minimal HTTP/1.1 keep-alive client over raw TCP, run in a child
//! process (this binary with `ATTEST_BENCH_CLIENT` set) so that its CPU is not counted as the
//! server's; it still shares the 2 cores, which is what `efficiency` includes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestation::Clock;
use attestation::attest::{self, AttestState};
use attestation::client::{CollateralClient, CollateralSource, RetryPolicy};
use attestation::collateral::CollateralBundle;
use attestation::pccs::{self, Mode, PccsState};
use attestation::store::Store;
use attestation::token::KeyRing;
use attestation::verify::{DcapVerifier, QuoteVerifier};
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T_A: i64 = 1_751_624_924;
const CORES: f64 = 2.0;
const DURATION: Duration = Duration::from_secs(5);
const CONNECTIONS: usize = 4;

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dcap")
        .join(rel)
}

/// Mean warm cost of one verification (µs), measured for ~1 s after a warm-up.
fn verify_warm_us(quote: &[u8], bundle: &CollateralBundle) -> f64 {
    let v = DcapVerifier::new(dcap_verify::TrustAnchors::intel());
    let c = attestation::collateral::PreparedCollateral::new(bundle.clone()).bundle;
    let now = dcap_verify::UnixTime(u64::try_from(T_A).unwrap());
    for _ in 0..50 {
        v.inner().verify(quote, &c, now, v.policy()).unwrap();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..20 {
            v.inner().verify(quote, &c, now, v.policy()).unwrap();
        }
        n += 20;
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

async fn one_connection(
    addr: std::net::SocketAddr,
    request: Arc<Vec<u8>>,
    until: Instant,
) -> Vec<u32> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut lat_us = Vec::with_capacity(50_000);
    let mut buf = vec![0u8; 16 * 1024];
    while Instant::now() < until {
        let t0 = Instant::now();
        s.write_all(&request).await.unwrap();
        // Read headers, then Content-Length bytes of body.
        let mut have = 0usize;
        let (head_end, body_len) = loop {
            let n = s.read(&mut buf[have..]).await.unwrap();
            assert!(n > 0, "server closed the connection");
            have += n;
            if let Some(p) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..p]).unwrap();
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap();
                break (p + 4, len);
            }
        };
        while have < head_end + body_len {
            let n = s.read(&mut buf[have..]).await.unwrap();
            assert!(n > 0);
            have += n;
        }
        lat_us.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    lat_us
}

/// CPU time (ns) consumed so far by all live threads of this process (`/proc/self/task/*/schedstat`).
fn process_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Load generator side, in a child process: `ATTEST_BENCH_CLIENT=addr,connections,millis`,
/// request bytes on stdin; prints the latencies (µs), one per line.
fn client_main(spec: &str) {
    use std::io::{Read, Write};
    let mut parts = spec.split(',');
    let addr: std::net::SocketAddr = parts.next().unwrap().parse().unwrap();
    let connections: usize = parts.next().unwrap().parse().unwrap();
    let millis: u64 = parts.next().unwrap().parse().unwrap();
    let mut request = Vec::new();
    std::io::stdin().read_to_end(&mut request).unwrap();
    let request = Arc::new(request);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_millis(millis);
    let all = rt.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(one_connection(addr, request.clone(), until)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // First line: the load generator's own CPU time (one thread), for the ceiling below.
    writeln!(out, "{}", process_cpu_ns()).unwrap();
    for l in all {
        writeln!(out, "{l}").unwrap();
    }
}

/// Runs the load generator in a child process for `millis`; returns its latencies (µs)
/// and the CPU time it used (ns).
fn run_client(
    addr: std::net::SocketAddr,
    request: &[u8],
    connections: usize,
    millis: u64,
) -> (Vec<u32>, u64) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(
            "ATTEST_BENCH_CLIENT",
            format!("{addr},{connections},{millis}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "load generator failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let cpu_ns = lines.next().unwrap().parse().unwrap();
    (lines.map(|l| l.parse().unwrap()).collect(), cpu_ns)
}

/// One measured load run: requests/s, p99 (ms), and CPU per request (µs) of the server
/// process and of the load generator.
struct Run {
    rps: f64,
    p99_ms: f64,
    server_cpu_us: f64,
    client_cpu_us: f64,
}

async fn load(addr: std::net::SocketAddr, request: Vec<u8>) -> Run {
    let cpu0 = process_cpu_ns();
    let start = Instant::now();
    let (mut all, client_cpu_ns) = tokio::task::spawn_blocking(move || {
        run_client(
            addr,
            &request,
            CONNECTIONS,
            u64::try_from(DURATION.as_millis()).unwrap(),
        )
    })
    .await
    .unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    // The server's threads (and this process's idle main thread), not the load generator.
    let n = all.len() as f64;
    let server_cpu_us = (process_cpu_ns() - cpu0) as f64 / 1e3 / n;
    all.sort_unstable();
    let p99 = all[(all.len() * 99 / 100).min(all.len() - 1)];
    Run {
        rps: n / elapsed,
        p99_ms: f64::from(p99) / 1000.0,
        server_cpu_us,
        client_cpu_us: client_cpu_ns as f64 / 1e3 / n,
    }
}

/// The peer for the ceiling: the same HTTP stack ([`attestation::server::serve`], axum,
/// keep-alive, `TCP_NODELAY`) answering the same request with a stored copy of a real
/// answer, doing nothing else: no JSON, no base64, no verification, no signature.
async fn null_server(answer: axum::body::Bytes) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/attest/SgxEnclave",
        axum::routing::post(move |_body: axum::body::Bytes| {
            let answer = answer.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    answer,
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(attestation::server::serve(
        l,
        app,
        None,
        std::future::pending(),
    ));
    addr
}

fn time_us(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_millis(500) {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// Per-stage costs (µs), printed with `ATTEST_BENCH_BREAKDOWN=1`.
fn breakdown(quote: &[u8], bundle: &CollateralBundle, debug: bool) {
    use tower::ServiceExt;
    let v = DcapVerifier::new(dcap_verify::TrustAnchors::intel());
    let locate = time_us(|| {
        v.locate(quote).unwrap();
    });
    let prepared = attestation::collateral::PreparedCollateral::new(bundle.clone());
    let verify = time_us(|| {
        v.verify(quote, &prepared, T_A).unwrap();
    });
    let keys = KeyRing::ephemeral().unwrap();
    let claims = serde_json::json!({"iss": "x", "x-ms-sgx-mrenclave": "00".repeat(32), "n": 1});
    let sign = time_us(|| {
        keys.sign(&claims, Some("http://x/certs")).unwrap();
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = AttestState::new(
        Arc::new(DcapVerifier::new(dcap_verify::TrustAnchors::intel())),
        CollateralSource::from_bundles(vec![bundle.clone()]),
        KeyRing::ephemeral().unwrap(),
        &format!("allow_debug: {debug}"),
        attest::Config::default(),
        Clock::fixed(T_A),
    )
    .unwrap();
    let app = attest::router(state);
    let body = serde_json::json!({
        "quote": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(quote),
    })
    .to_string();
    let handler = time_us(|| {
        let req = axum::http::Request::post("/attest/SgxEnclave")
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        let r = rt.block_on(app.clone().oneshot(req)).unwrap();
        assert_eq!(r.status(), 200);
    });
    println!(
        "attest-bench-breakdown: locate_us={locate:.1} verify_adapter_us={verify:.1} sign_us={sign:.1} handler_in_process_us={handler:.1}"
    );
}

fn main() {
    if let Ok(spec) = std::env::var("ATTEST_BENCH_CLIENT") {
        client_main(&spec);
        return;
    }
    let quote = std::fs::read(testdata("dcap-qvl/sample/sgx_quote")).unwrap();
    let bundle = CollateralBundle::from_json(
        &std::fs::read(testdata("dcap-qvl/sample/sgx_quote_collateral.json")).unwrap(),
    )
    .unwrap();

    let verify_us = verify_warm_us(&quote, &bundle);
    let debug = DcapVerifier::new(dcap_verify::TrustAnchors::intel())
        .verify(
            &quote,
            &attestation::collateral::PreparedCollateral::new(bundle.clone()),
            T_A,
        )
        .unwrap()
        .debug;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (real, null, sign_us) = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        pccs::import_paths(
            &store,
            &[testdata("dcap-qvl/sample/sgx_quote_collateral.json")],
            T_A,
        )
        .unwrap();
        let pccs_state = PccsState::new(
            store,
            pccs::Config {
                mode: Mode::Offline,
                ..pccs::Config::default()
            },
            Clock::fixed(T_A),
        )
        .unwrap();
        let pl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pccs_url = format!("http://{}", pl.local_addr().unwrap());
        tokio::spawn(pccs::serve_on(pl, pccs_state, std::future::pending()));

        let source = CollateralSource::Http(
            CollateralClient::new(&pccs_url, RetryPolicy::default(), Clock::fixed(T_A)).unwrap(),
        );
        let state = AttestState::new(
            Arc::new(DcapVerifier::new(dcap_verify::TrustAnchors::intel())),
            source,
            KeyRing::ephemeral().unwrap(),
            &format!("allow_debug: {debug}"),
            attest::Config::default(),
            Clock::fixed(T_A),
        )
        .unwrap();
        let al = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = al.local_addr().unwrap();
        tokio::spawn(attest::serve_on(al, state.clone(), std::future::pending()));

        let body = serde_json::json!({
            "quote": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&quote),
        })
        .to_string();
        let request = format!(
            "POST /attest/SgxEnclave?api-version=2022-08-01 HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        // Warm the collateral cache and the verifier's cache.
        let warm = request.clone();
        tokio::task::spawn_blocking(move || run_client(addr, &warm, 1, 300))
            .await
            .unwrap();
        // A real answer, for the null server, and its claims, for the signing cost.
        let answer = {
            use tower::ServiceExt;
            let req = axum::http::Request::post("/attest/SgxEnclave?api-version=2022-08-01")
                .body(axum::body::Body::from(body.clone()))
                .unwrap();
            let r = attest::router(state.clone()).oneshot(req).await.unwrap();
            assert_eq!(r.status(), 200);
            http_body_util::BodyExt::collect(r.into_body())
                .await
                .unwrap()
                .to_bytes()
        };
        let claims: serde_json::Value = {
            let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
            let payload = v["token"].as_str().unwrap().split('.').nth(1).unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .unwrap(),
            )
            .unwrap()
        };
        let keys = KeyRing::ephemeral().unwrap();
        let sign_us = time_us(|| {
            keys.sign(&claims, Some("http://127.0.0.1/certs")).unwrap();
        });

        let real = load(addr, request.clone()).await;
        let null_addr = null_server(answer).await;
        let null_request = String::from_utf8(request)
            .unwrap()
            .replacen(&addr.to_string(), &null_addr.to_string(), 1)
            .into_bytes();
        let warm = null_request.clone();
        tokio::task::spawn_blocking(move || run_client(null_addr, &warm, 1, 300))
            .await
            .unwrap();
        let null = load(null_addr, null_request).await;
        (real, null, sign_us)
    });
    let efficiency = real.rps * verify_us / 1e6 / CORES;
    if std::env::var_os("ATTEST_BENCH_BREAKDOWN").is_some() {
        breakdown(&quote, &bundle, debug);
    }
    // The most `efficiency` could be for a server that adds exactly one warm verification and
    // one token signature to the null server's work, with the same load generator sharing
    // the cores (`ceiling`), or with a load generator that costs nothing (`ceiling_free_client`).
    let null_cpu = null.server_cpu_us + null.client_cpu_us;
    let ceiling = verify_us / (null_cpu + verify_us + sign_us);
    let ceiling_free_client = verify_us / (null.server_cpu_us + verify_us + sign_us);
    println!(
        "attest-bench: rps={:.0} p99_ms={:.2} verify_warm_us={verify_us:.1} efficiency={efficiency:.2} \
         server_cpu_us_per_req={:.1} server_efficiency={:.2} client_cpu_us_per_req={:.1} \
         sign_us={sign_us:.1} null_rps={:.0} null_server_cpu_us={:.1} null_client_cpu_us={:.1} \
         ceiling={ceiling:.2} ceiling_free_client={ceiling_free_client:.2}",
        real.rps,
        real.p99_ms,
        real.server_cpu_us,
        verify_us / real.server_cpu_us,
        real.client_cpu_us,
        null.rps,
        null.server_cpu_us,
        null.client_cpu_us,
    );
}

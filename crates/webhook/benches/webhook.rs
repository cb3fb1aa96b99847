//! Admission throughput and latency over TLS keep-alive on loopback.
//!
//! The server (the real `router` behind rustls) runs on a current-thread tokio runtime, so it
//! uses exactly one worker thread; the client runs in another thread with its own runtime and
//! one HTTP/2 connection (ALPN, as kube-apiserver's webhook client negotiates). The pod is a
//! realistic Deployment pod with three containers, an EPC init container and the aesmd
//! annotation (the answer carries a 12-operation JSON Patch).
//!
//! Phases: warm-up; a fixed open-loop rate of 500 requests/s (latency measured from the
//! moment each request is handed to the client, every request in its own task so that a slow
//! answer never holds back the next send); then the maximum rate with 16 requests in
//! flight. Prints
//! `webhook-bench: rps=<max rate> p99_ms=<p99 at 500/s> p50_ms=<p50 at 500/s> ...`.
//! Run: `cargo bench -p webhook --bench webhook` (`WEBHOOK_BENCH_SECS` sets the phase length).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use webhook::tls::{CertReloader, provider, server_config};
use webhook::{AppState, router};

const FIXED_RATE: u32 = 500;
const MAX_IN_FLIGHT: usize = 16;

fn main() {
    let secs: u64 = std::env::var("WEBHOOK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let phase = Duration::from_secs(secs);
    let dir = tempfile::tempdir().unwrap();
    let ca_der = write_pki(dir.path());
    let body = std::fs::read_to_string(format!(
        "{}/../sgx-k8s/testdata/admission/aesmd-multi-container.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();

    // Server: one thread, current-thread runtime.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cert_dir = dir.path().to_owned();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let state = AppState::new();
            let reloader = CertReloader::new(
                cert_dir.join("tls.crt"),
                cert_dir.join("tls.key"),
                Duration::from_secs(5),
                Some(state.metrics().clone()),
            )
            .unwrap();
            let tls = server_config(Arc::new(reloader)).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            state.probes().set_ready(true);
            confcom_runtime::tls::serve_tls(
                listener,
                tls,
                router(state),
                async {
                    let _ = stop_rx.await;
                },
                Duration::from_secs(1),
            )
            .await;
        });
    });
    let addr = addr_rx.recv().unwrap();

    // Client: its own thread and runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (fixed, max_rps, max_lat, proto) = rt.block_on(async move {
        let client = client(&ca_der, addr);
        let url = format!("https://localhost:{}/mutate", addr.port());
        let proto = check(&client, &url, &body).await;
        // Warm-up.
        closed_loop(&client, &url, &body, Duration::from_millis(500)).await;
        let fixed = open_loop(&client, &url, &body, FIXED_RATE, phase).await;
        let (max_rps, max_lat) = closed_loop(&client, &url, &body, phase).await;
        (fixed, max_rps, max_lat, proto)
    });
    stop_tx.send(()).unwrap();
    server.join().unwrap();

    let (achieved, mut lat, mut lag) = fixed;
    lat.sort_unstable();
    lag.sort_unstable();
    let mut max_lat = max_lat;
    max_lat.sort_unstable();
    println!(
        "webhook-bench: rps={max_rps:.0} p99_ms={:.3} p50_ms={:.3} p999_ms={:.3} max_ms={:.3} fixed_rate={FIXED_RATE} achieved_rps={achieved:.0} at_max_p50_ms={:.3} at_max_p99_ms={:.3} in_flight={MAX_IN_FLIGHT} sched_lag_p99_ms={:.3} proto={proto} server_threads=1 phase_s={secs}",
        ms(pct(&lat, 99.0)),
        ms(pct(&lat, 50.0)),
        ms(pct(&lat, 99.9)),
        ms(*lat.last().unwrap()),
        ms(pct(&max_lat, 50.0)),
        ms(pct(&max_lat, 99.0)),
        ms(pct(&lag, 99.0)),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

fn write_pki(dir: &std::path::Path) -> CertificateDer<'static> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("tls.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    ca.der().clone()
}

fn client(ca: &CertificateDer<'static>, addr: SocketAddr) -> reqwest::Client {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .resolve("localhost", addr)
        .build()
        .unwrap()
}

async fn send(client: &reqwest::Client, url: &str, body: &str) -> reqwest::Version {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let version = resp.version();
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.len() > 100);
    version
}

async fn check(client: &reqwest::Client, url: &str, body: &str) -> String {
    let resp = client.post(url).body(body.to_owned()).send().await.unwrap();
    let version = resp.version();
    let review: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(review["response"]["allowed"], true);
    assert!(
        review["response"]["patch"].is_array(),
        "the bench pod must be patched"
    );
    format!("{version:?}")
}

/// Sends at a fixed rate regardless of responses (each request in its own task, so a slow
/// answer never delays the next send). Latency counts from the moment the request is handed
/// to the client; the client's own timer lag (tokio timers have 1 ms granularity) is reported
/// separately as `sched_lag`.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    rate: u32,
    phase: Duration,
) -> (f64, Vec<Duration>, Vec<Duration>) {
    let period = Duration::from_secs(1) / rate;
    let total = (phase.as_secs_f64() * f64::from(rate)) as u32;
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let scheduled = start + period * i;
        tokio::time::sleep_until(scheduled).await;
        let (client, url, body) = (client.clone(), url.to_owned(), body.to_owned());
        tasks.spawn(async move {
            let sent = tokio::time::Instant::now();
            send(&client, &url, &body).await;
            (sent.elapsed(), sent - scheduled)
        });
    }
    let mut lat = Vec::with_capacity(total as usize);
    let mut lag = Vec::with_capacity(total as usize);
    while let Some(l) = tasks.join_next().await {
        let (l, g) = l.unwrap();
        lat.push(l);
        lag.push(g);
    }
    let achieved = f64::from(total) / start.elapsed().as_secs_f64();
    (achieved, lat, lag)
}

/// `MAX_IN_FLIGHT` workers send back to back for `phase`.
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    phase: Duration,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..MAX_IN_FLIGHT {
        let (client, url, body) = (client.clone(), url.to_owned(), body.to_owned());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < phase {
                let t = Instant::now();
                send(&client, &url, &body).await;
                lat.push(t.elapsed());
            }
            lat
        });
    }
    let mut lat = Vec::new();
    while let Some(l) = tasks.join_next().await {
        lat.extend(l.unwrap());
    }
    (lat.len() as f64 / start.elapsed().as_secs_f64(), lat)
}

//! Benchmark: the simulation backend over the real socket, N concurrent clients, one
//! connection per request (as AESM clients do), against the cost of one ECDSA P-256
//! signing measured in the same run. Prints one line per client count:
//!
//! `quote-helper-bench: clients=… qps=… p50_ms=… p99_ms=… sign_us=… overhead_ratio=… …`
//!
//! * `overhead_ratio` = (CPU time the quote helper spends per quote) / (CPU time of one
//!   signing, measured on one thread before the load): the server's CPU time
//!   (`CLOCK_PROCESS_CPUTIME_ID`, exited worker threads included) over the run, divided by
//!   the quotes served. The clients run in a child process, so their CPU is not counted.
//!   Both sides are CPU time, so other load on the machine moves neither much.
//! * `null_cpu_us_per_quote` (16 clients only): the same server's CPU per quote with a backend
//!   that answers every request with one stored quote, so nothing is built or signed: the
//!   cost of the socket, framing and protobuf work alone. `floor_ratio` = (that + one
//!   signing) / one signing: the `overhead_ratio` of a server whose only work beyond that is
//!   the signature.
//! * `e2e_ratio` = (wall time per quote at that concurrency) / (one signing): end to end,
//!   with client and server sharing the machine's cores.
//!
//! Run with `cargo bench -p quote-helper`; `QH_BENCH_QUOTES` sets quotes per client count
//! (default 16 000 at 16 clients, a quarter of that with one: long enough that starting
//! worker threads and warming caches do not show in the per-quote cost).

// A benchmark binary: panicking on setup failure is the right behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aesm::AesmError;
use prometheus_client::registry::Registry;
use quote_helper::QuoteBackend;
use quote_helper::backend::sim::SimBackend;
use quote_helper::metrics::Metrics;
use quote_helper::server::{Server, ServerConfig};

fn report(i: u8) -> Vec<u8> {
    sgx_quote::Report {
        body: sgx_quote::ReportBody {
            mr_enclave: sgx_quote::MrEnclave([i; 32]),
            report_data: sgx_quote::ReportData([i; 64]),
            ..sgx_quote::ReportBody::default()
        },
        key_id: [0; 32],
        mac: [0; 16],
    }
    .to_bytes()
    .to_vec()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1e3
}

fn sign_cost_us(backend: &SimBackend) -> f64 {
    let msg = [0x5au8; 432];
    for _ in 0..200 {
        backend.simulation().qe.sign_with_pck(&msg).unwrap();
    }
    // CPU time of this thread, like the server's cost it is compared with: wall time would
    // count other processes' time slices on a busy machine and flatter the ratio.
    let n = 3000;
    let t = thread_cpu_ns();
    for _ in 0..n {
        backend.simulation().qe.sign_with_pck(&msg).unwrap();
    }
    (thread_cpu_ns() - t) as f64 / 1e3 / f64::from(n)
}

/// CPU time (ns) the calling thread has consumed (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec).unwrap() * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap()
}

fn run(
    socket: &std::path::Path,
    clients: usize,
    total: usize,
    quote_size: u32,
) -> (f64, Vec<Duration>) {
    let per_client = total / clients;
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let socket = socket.to_owned();
            std::thread::spawn(move || {
                let client = aesm::client::Client::new(&socket);
                let r = report(u8::try_from(c % 256).unwrap());
                let mut lat = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = Instant::now();
                    let (q, _) = client.get_quote_ex(&r, quote_size, None).unwrap();
                    lat.push(t.elapsed());
                    assert_eq!(q.len(), quote_size as usize);
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let wall = start.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / wall, all)
}

/// CPU time (ns) this process has consumed so far, threads that have exited included
/// (`CLOCK_PROCESS_CPUTIME_ID`): the server's workers come and go.
fn process_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    u64::try_from(t.tv_sec).unwrap() * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap()
}

/// Client side, in a child process: `QH_BENCH_CLIENT=socket,clients,total,quote_size`.
fn client_main(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let socket = std::path::PathBuf::from(parts[0]);
    let (clients, total, quote_size) = (
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
        parts[3].parse().unwrap(),
    );
    let (qps, lat) = run(&socket, clients, total, quote_size);
    println!(
        "{qps} {} {} {}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.len()
    );
}

/// Runs the clients in a child process; returns (qps, p50_ms, p99_ms, quotes, server CPU ns).
fn run_child(
    socket: &std::path::Path,
    clients: usize,
    total: usize,
    quote_size: u32,
) -> (f64, f64, f64, f64, u64) {
    let cpu0 = process_cpu_ns();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(
            "QH_BENCH_CLIENT",
            format!("{},{clients},{total},{quote_size}", socket.display()),
        )
        .output()
        .unwrap();
    let cpu = process_cpu_ns() - cpu0;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[1], v[2], v[3], cpu)
}

fn main() {
    if let Ok(spec) = std::env::var("QH_BENCH_CLIENT") {
        client_main(&spec);
        return;
    }
    let total: usize = std::env::var("QH_BENCH_QUOTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sim = sgx_sim::Simulation::generate(time::OffsetDateTime::now_utc()).unwrap();
    let backend = Arc::new(SimBackend::new(sim));
    let quote_size = u32::try_from(backend.simulation().qe.quote_size()).unwrap();
    let socket = dir.path().join("aesm.socket");
    let server = start(&rt, &socket, backend.clone());
    // Warm up connections, caches and the allocator.
    run_child(&socket, 4, 200, quote_size);
    let sign_us = sign_cost_us(&backend);
    // The peer for the floor: the same server with a backend that answers every request with
    // one stored quote (no quote to build, nothing to sign), under the same 16 clients.
    let null_cpu_us = {
        let stored = backend.quote(&report(0).try_into().unwrap()).unwrap();
        let null_socket = dir.path().join("null.socket");
        let null = start(
            &rt,
            &null_socket,
            Arc::new(StoredQuote {
                inner: backend.clone(),
                quote: stored,
            }),
        );
        run_child(&null_socket, 4, 200, quote_size);
        let (_, _, _, quotes, cpu_ns) = run_child(&null_socket, 16, total, quote_size);
        null.stop(&rt);
        cpu_ns as f64 / 1e3 / quotes
    };
    for clients in [16, 1] {
        let n = if clients == 1 { total / 4 } else { total };
        let (qps, p50, p99, quotes, server_cpu_ns) = run_child(&socket, clients, n, quote_size);
        let server_us_per_quote = server_cpu_ns as f64 / 1e3 / quotes;
        let wall_us_per_quote = 1e6 / qps;
        let floor = if clients == 16 {
            format!(
                " null_cpu_us_per_quote={null_cpu_us:.1} floor_ratio={:.2}",
                (null_cpu_us + sign_us) / sign_us
            )
        } else {
            String::new()
        };
        println!(
            "quote-helper-bench: clients={clients} qps={qps:.0} p50_ms={p50:.3} p99_ms={p99:.3} sign_us={sign_us:.1} overhead_ratio={:.2} server_cpu_us_per_quote={server_us_per_quote:.1} e2e_ratio={:.2}{floor}",
            server_us_per_quote / sign_us,
            wall_us_per_quote / sign_us,
        );
    }
    server.stop(&rt);
}

/// A running server and the means to stop it.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn stop(self, rt: &tokio::runtime::Runtime) {
        let _ = self.stop.send(());
        rt.block_on(self.task).unwrap();
    }
}

fn start(
    rt: &tokio::runtime::Runtime,
    socket: &std::path::Path,
    backend: Arc<dyn QuoteBackend>,
) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let _guard = rt.enter();
    let mut registry = Registry::default();
    let server = Server::bind(
        ServerConfig {
            socket: socket.to_owned(),
            socket_mode: 0o600,
            max_connections: 64,
            io_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(2),
        },
        backend,
        Metrics::register(&mut registry),
    )
    .unwrap();
    let task = rt.spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

/// The simulation backend, except that every quote is one stored quote: the server's cost
/// without building and signing a quote.
struct StoredQuote {
    inner: Arc<SimBackend>,
    quote: Vec<u8>,
}

impl QuoteBackend for StoredQuote {
    fn name(&self) -> &'static str {
        "stored"
    }
    fn may_block(&self) -> bool {
        self.inner.may_block()
    }
    fn target_info(&self) -> Result<[u8; 512], AesmError> {
        self.inner.target_info()
    }
    fn pub_key_id(&self) -> Result<[u8; 32], AesmError> {
        self.inner.pub_key_id()
    }
    fn quote_size(&self) -> Result<u32, AesmError> {
        self.inner.quote_size()
    }
    fn quote(&self, _report: &[u8; 432]) -> Result<Vec<u8>, AesmError> {
        Ok(self.quote.clone())
    }
    fn qe_report(
        &self,
        target_info: &[u8; 512],
        report_data: [u8; 64],
    ) -> Result<[u8; 432], AesmError> {
        self.inner.qe_report(target_info, report_data)
    }
}

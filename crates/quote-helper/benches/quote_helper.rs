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
//! * Two peers, both this server under the same 16 clients with a backend that answers every
//!   request with one stored quote:
//!   * `null_cpu_us_per_quote`: nothing else, so nothing is built or signed: the cost of the
//!     socket, framing and protobuf work alone. `floor_ratio` = (that + one signing) / one
//!     signing.
//!   * `busy_floor_cpu_us_per_quote`: after spinning in user mode for one signing's CPU time
//!     (plain arithmetic, no memory, no system calls), so the scheduler sees a server that
//!     computes as long as ours. `busy_floor_ratio` = that / one signing: the
//!     `overhead_ratio` of a server whose only work beyond the socket path is one signing's
//!     worth of computation. `over_busy_floor_us` = ours minus that: what building and
//!     signing a real quote costs beyond it.
//!
//!   `benches/floor/run.sh` measures the same floor with an independent server in C.
//! * The three 16-client runs are interleaved over [`ROUNDS`] rounds, because this VM's speed
//!   drifts between runs, and each figure is the median over the rounds.
//! * `e2e_ratio` = (wall time per quote at that concurrency) / (one signing): end to end,
//!   with client and server sharing the machine's cores.
//!
//! Run with `cargo bench -p quote-helper`; `QH_BENCH_QUOTES` sets quotes per run (default
//! 16 000 at 16 clients, a quarter of that with one: long enough that starting worker threads
//! and warming caches do not show in the per-quote cost).

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

/// Interleaved rounds of the three 16-client runs (null, busy floor, ours): the VM's speed
/// drifts between runs, and each line reports the median round.
const ROUNDS: usize = 3;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One 16-client run's figures.
#[derive(Clone, Copy)]
struct Run {
    qps: f64,
    p50: f64,
    p99: f64,
    cpu_us_per_quote: f64,
}

fn measure(socket: &std::path::Path, clients: usize, total: usize, quote_size: u32) -> Run {
    let (qps, p50, p99, quotes, cpu_ns) = run_child(socket, clients, total, quote_size);
    Run {
        qps,
        p50,
        p99,
        cpu_us_per_quote: cpu_ns as f64 / 1e3 / quotes,
    }
}

/// The median of each field over the rounds (fields taken separately).
fn median_run(runs: &[Run]) -> Run {
    let field = |f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Run {
        qps: field(|r| r.qps),
        p50: field(|r| r.p50),
        p99: field(|r| r.p99),
        cpu_us_per_quote: field(|r| r.cpu_us_per_quote),
    }
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
    if let Ok(path) = std::env::var("QH_BENCH_WRITE_FRAME") {
        write_frame(&backend, &path, quote_size);
        return;
    }
    let socket = dir.path().join("aesm.socket");
    let server = start(&rt, &socket, backend.clone());
    // Warm up connections, caches and the allocator.
    run_child(&socket, 4, 200, quote_size);
    let sign_us = sign_cost_us(&backend);
    // The peers, both the same server under the same 16 clients: the null backend answers
    // every request with one stored quote (no quote to build, nothing to sign); the busy floor
    // does the same after spinning for one signing's CPU time.
    let stored = backend.quote(&report(0).try_into().unwrap()).unwrap();
    let peer = |name: &str, spin_iters: u64| {
        let path = dir.path().join(name);
        let running = start(
            &rt,
            &path,
            Arc::new(StoredQuote {
                inner: backend.clone(),
                quote: stored.clone(),
                spin_iters,
            }),
        );
        run_child(&path, 4, 200, quote_size);
        (path, running)
    };
    let (null_socket, null) = peer("null.socket", 0);
    let (busy_socket, busy) = peer("busy.socket", spin_iters_for(sign_us));
    let (mut nulls, mut busies, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        nulls.push(measure(&null_socket, 16, total, quote_size));
        busies.push(measure(&busy_socket, 16, total, quote_size));
        ours.push(measure(&socket, 16, total, quote_size));
    }
    null.stop(&rt);
    busy.stop(&rt);
    let null_us = median_run(&nulls).cpu_us_per_quote;
    let busy_us = median_run(&busies).cpu_us_per_quote;
    let single = measure(&socket, 1, total / 4, quote_size);
    for (clients, r) in [(16, median_run(&ours)), (1, single)] {
        let wall_us_per_quote = 1e6 / r.qps;
        let floor = if clients == 16 {
            format!(
                " null_cpu_us_per_quote={null_us:.1} floor_ratio={:.2} busy_floor_cpu_us_per_quote={busy_us:.1} busy_floor_ratio={:.2} over_busy_floor_us={:.1}",
                (null_us + sign_us) / sign_us,
                busy_us / sign_us,
                r.cpu_us_per_quote - busy_us,
            )
        } else {
            String::new()
        };
        println!(
            "quote-helper-bench: clients={clients} qps={:.0} p50_ms={:.3} p99_ms={:.3} sign_us={sign_us:.1} overhead_ratio={:.2} server_cpu_us_per_quote={:.1} e2e_ratio={:.2}{floor}",
            r.qps,
            r.p50,
            r.p99,
            r.cpu_us_per_quote / sign_us,
            r.cpu_us_per_quote,
            wall_us_per_quote / sign_us,
        );
    }
    server.stop(&rt);
}

/// For `benches/floor/run.sh`: writes one real GetQuoteEx response frame (as the server sends
/// it) to `path` and prints the quote size and one signing's CPU time in µs.
fn write_frame(backend: &Arc<SimBackend>, path: &str, quote_size: u32) {
    let request = aesm::Request::GetQuoteEx {
        report: report(0),
        att_key_id: Some(aesm::keyid::ECDSA_P256_QE3_KEY_ID.to_vec()),
        qe_report_info: None,
        buf_size: quote_size,
    };
    let frame = quote_helper::service::handle(backend.as_ref(), request)
        .into_frame()
        .unwrap();
    std::fs::write(path, frame).unwrap();
    println!("{quote_size} {:.2}", sign_cost_us(backend));
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
            max_pending: 1024,
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

/// The simulation backend, except that every quote is one stored quote, answered after
/// spinning for `spin` of this thread's CPU time: the server's cost without building and
/// signing a quote (`spin` zero), or with exactly one signing's worth of plain computation in
/// their place.
struct StoredQuote {
    inner: Arc<SimBackend>,
    quote: Vec<u8>,
    spin_iters: u64,
}

/// Plain computation in user mode, `iters` rounds of xorshift: no memory, no system calls (a
/// loop on the CPU clock would enter the kernel, where a pending preemption takes effect at
/// once instead of at the next tick, which signing in user mode does not).
fn spin(iters: u64) {
    let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15_u64);
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x);
}

/// Rounds of [`spin`] that take `us` of CPU time on one thread, measured like [`sign_cost_us`].
fn spin_iters_for(us: f64) -> u64 {
    let probe = 10_000_000;
    let t = thread_cpu_ns();
    spin(probe);
    let ns_per_iter = (thread_cpu_ns() - t) as f64 / probe as f64;
    (us * 1e3 / ns_per_iter) as u64
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
        spin(self.spin_iters);
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

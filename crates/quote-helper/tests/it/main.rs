//! Integration tests of the quote helper over a real Unix socket (one test binary).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

mod aesm_client;
mod robustness;
mod slow_clients;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use quote_helper::backend::sim::SimBackend;
use quote_helper::metrics::Metrics;
use quote_helper::server::{Server, ServerConfig};
use sgx_sim::Simulation;

/// A sim-backend server on a temp socket, stopped when dropped.
pub struct Running {
    _dir: tempfile::TempDir,
    pub(crate) socket: PathBuf,
    pub(crate) sim_state: PathBuf,
    registry: Arc<std::sync::Mutex<Registry>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the server, waits for it, and hands back the temp dir (still alive).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        self._dir
    }

    /// Waits (up to 5 s) until the metrics text contains `needle`: the server counts a
    /// request after writing its response, so the client may finish first.
    pub async fn wait_for_metric(&self, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.metrics_text();
            if text.contains(needle) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{needle} not in {text}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The OpenMetrics text of the server's registry.
    pub fn metrics_text(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry.lock().unwrap()).unwrap();
        s
    }
}

/// Starts a server with the sim backend (state persisted in the temp dir).
pub async fn start(max_connections: usize, io_timeout: Duration) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let sim_state = dir.path().join("sim");
    let sim = sgx_sim::state::load_or_create(&sim_state, time::OffsetDateTime::now_utc()).unwrap();
    start_with(dir, sim_state, sim, max_connections, io_timeout).await
}

async fn start_with(
    dir: tempfile::TempDir,
    sim_state: PathBuf,
    sim: Simulation,
    max_connections: usize,
    io_timeout: Duration,
) -> Running {
    let backend = Arc::new(SimBackend::new(sim));
    start_backend(dir, sim_state, backend, max_connections, io_timeout).await
}

/// Starts a server with the sim backend and a bound on the connections held for slow
/// clients.
pub async fn start_tuned(
    max_connections: usize,
    max_pending: usize,
    io_timeout: Duration,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let sim_state = dir.path().join("sim");
    let sim = sgx_sim::state::load_or_create(&sim_state, time::OffsetDateTime::now_utc()).unwrap();
    let backend = Arc::new(SimBackend::new(sim));
    start_cfg(
        dir,
        sim_state,
        backend,
        max_connections,
        max_pending,
        io_timeout,
    )
    .await
}

/// Starts a server with any backend.
pub async fn start_backend(
    dir: tempfile::TempDir,
    sim_state: PathBuf,
    backend: Arc<dyn quote_helper::QuoteBackend>,
    max_connections: usize,
    io_timeout: Duration,
) -> Running {
    start_cfg(dir, sim_state, backend, max_connections, 1024, io_timeout).await
}

async fn start_cfg(
    dir: tempfile::TempDir,
    sim_state: PathBuf,
    backend: Arc<dyn quote_helper::QuoteBackend>,
    max_connections: usize,
    max_pending: usize,
    io_timeout: Duration,
) -> Running {
    // A nested, not-yet-existing directory: the server creates it.
    let socket = dir.path().join("run/aesmd/aesm.socket");
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let server = Server::bind(
        ServerConfig {
            socket: socket.clone(),
            socket_mode: 0o666,
            max_connections,
            max_pending,
            io_timeout,
            drain_timeout: Duration::from_secs(2),
        },
        backend,
        metrics,
    )
    .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    Running {
        _dir: dir,
        socket,
        sim_state,
        registry: Arc::new(std::sync::Mutex::new(registry)),
        stop: Some(tx),
        task: Some(task),
    }
}

/// A 432-byte app REPORT with the given identity.
pub fn app_report(mr_enclave: [u8; 32], report_data: [u8; 64]) -> Vec<u8> {
    sgx_quote::Report {
        body: sgx_quote::ReportBody {
            mr_enclave: sgx_quote::MrEnclave(mr_enclave),
            mr_signer: sgx_quote::MrSigner([0x5a; 32]),
            isv_prod_id: 1,
            isv_svn: 2,
            report_data: sgx_quote::ReportData(report_data),
            ..sgx_quote::ReportBody::default()
        },
        key_id: [0; 32],
        mac: [0; 16],
    }
    .to_bytes()
    .to_vec()
}

/// An `aesm::client::Client` for `socket` with a short timeout.
pub fn client(socket: &Path) -> aesm::client::Client {
    aesm::client::Client::new(socket).with_timeout(Duration::from_secs(5))
}

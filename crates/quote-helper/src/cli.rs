//! `confcom quote-helper`: the AESM-compatible quote helper (DaemonSet), and
//! `confcom quote-helper probe`, an exec readiness probe.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;

use crate::QuoteBackend;
use crate::backend::dcap::{DCAP_QL_LIBRARY, DcapBackend};
use crate::backend::sim::SimBackend;
use crate::metrics::Metrics;
use crate::server::{Server, ServerConfig};

/// Exit code for invalid configuration (BSD `EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// Arguments of `confcom quote-helper`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Exit 0 if a quote helper answers on the socket (for Kubernetes exec probes).
    Probe(ProbeArgs),
}

/// Which quoting backend serves quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Intel's `libsgx_dcap_ql.so.1` on real SGX hardware.
    Dcap,
    /// The software QE3 and simulated PKI (`--sim-state`); not secure.
    Sim,
}

/// Flags of the server.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// AESM socket path (the directory is created if missing).
    #[arg(long, env = "CONFCOM_AESM_SOCKET", default_value = aesm::client::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Quoting backend.
    #[arg(long, env = "CONFCOM_QUOTE_BACKEND", value_enum, default_value_t = BackendKind::Dcap)]
    pub backend: BackendKind,
    /// State directory of the simulation backend (keys and certificates as PEM).
    #[arg(
        long,
        env = "CONFCOM_SIM_STATE",
        default_value = "/var/lib/confcom/sim"
    )]
    pub sim_state: PathBuf,
    /// Permission bits of the socket, octal.
    #[arg(long, env = "CONFCOM_SOCKET_MODE", default_value = "0666", value_parser = parse_mode)]
    pub socket_mode: u32,
    /// Requests served at once, one worker thread each (1..=4096); further clients wait in
    /// the listen backlog.
    #[arg(long, env = "CONFCOM_MAX_CONNECTIONS", default_value_t = 64)]
    pub max_connections: usize,
    /// Connections held at once while their client is slow to send the request or to take
    /// the response (1..=65536), outside the worker threads; beyond it the one that has
    /// waited longest is closed.
    #[arg(long, env = "CONFCOM_MAX_PENDING_CONNECTIONS", default_value_t = 1024)]
    pub max_pending_connections: usize,
    /// Per-connection timeout for reading the request and writing the response, in ms.
    #[arg(long, env = "CONFCOM_IO_TIMEOUT_MS", default_value_t = 5000)]
    pub io_timeout_ms: u64,
    /// Address of the HTTP endpoint for /healthz, /readyz and /metrics (off if unset).
    #[arg(long, env = "CONFCOM_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The DCAP quote library to load (dcap backend).
    #[arg(long, env = "CONFCOM_DCAP_LIBRARY", default_value = DCAP_QL_LIBRARY)]
    pub dcap_library: String,
}

/// Flags of `probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// AESM socket path.
    #[arg(long, env = "CONFCOM_AESM_SOCKET", default_value = aesm::client::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Timeout in ms.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal file mode (e.g. 0666)"))
}

/// Validated configuration.
#[derive(Debug)]
struct Config {
    server: ServerConfig,
    backend: BackendKind,
    sim_state: PathBuf,
    metrics_listen: Option<SocketAddr>,
    dcap_library: String,
}

impl ServeArgs {
    fn validate(self) -> Result<Config, String> {
        if !(1..=4096).contains(&self.max_connections) {
            return Err(format!(
                "--max-connections must be 1..=4096, got {}",
                self.max_connections
            ));
        }
        if !(1..=65536).contains(&self.max_pending_connections) {
            return Err(format!(
                "--max-pending-connections must be 1..=65536, got {}",
                self.max_pending_connections
            ));
        }
        if self.io_timeout_ms == 0 {
            return Err("--io-timeout-ms must be positive".into());
        }
        if self.socket.as_os_str().is_empty() {
            return Err("--socket must not be empty".into());
        }
        Ok(Config {
            server: ServerConfig {
                socket: self.socket,
                socket_mode: self.socket_mode,
                max_connections: self.max_connections,
                max_pending: self.max_pending_connections,
                io_timeout: Duration::from_millis(self.io_timeout_ms),
                drain_timeout: Duration::from_secs(10),
            },
            backend: self.backend,
            sim_state: self.sim_state,
            metrics_listen: self.metrics_listen,
            dcap_library: self.dcap_library,
        })
    }
}

/// Runs the quote helper (or the probe) until SIGTERM/SIGINT.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Command::Probe(p)) => tokio::task::spawn_blocking(move || probe(&p)).await?,
        None => serve(args.serve).await,
    }
}

fn probe(p: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let client =
        aesm::client::Client::new(&p.socket).with_timeout(Duration::from_millis(p.timeout_ms));
    match client.transact(&aesm::Request::GetSupportedAttKeyIdNum) {
        Ok(aesm::Response::GetSupportedAttKeyIdNum { num }) if num > 0 => Ok(ExitCode::SUCCESS),
        Ok(other) => anyhow::bail!(
            "quote helper at {} answered {:?}",
            p.socket.display(),
            other.code()
        ),
        Err(e) => Err(anyhow::Error::new(e))
            .with_context(|| format!("probing quote helper at {}", p.socket.display())),
    }
}

/// Loads the configured backend (blocking work runs off the async workers).
async fn load_backend(cfg: &Config) -> anyhow::Result<Arc<dyn QuoteBackend>> {
    match cfg.backend {
        BackendKind::Dcap => {
            let lib = cfg.dcap_library.clone();
            let b = tokio::task::spawn_blocking(move || {
                DcapBackend::load(&lib, std::path::Path::new("/"))
            })
            .await?
            .context("starting the dcap backend (use --backend sim on machines without SGX)")?;
            tracing::info!("dcap backend loaded and pre-warmed");
            Ok(Arc::new(b))
        }
        BackendKind::Sim => {
            let dir = cfg.sim_state.clone();
            let sim = tokio::task::spawn_blocking(move || {
                sgx_sim::state::load_or_create(&dir, time::OffsetDateTime::now_utc())
            })
            .await?
            .with_context(|| format!("loading simulation state {}", cfg.sim_state.display()))?;
            tracing::warn!(
                state = %cfg.sim_state.display(),
                pub_key_id = %hex::encode(sim.qe.pub_key_id()),
                "SIMULATION backend: quotes are signed by a simulated PKI (confcom SIMULATED, \
                 not Intel); each app REPORT's MAC is checked against the Intel SDK's simulation-mode \
                 report key and logged as report_mac (never enforced)"
            );
            Ok(Arc::new(SimBackend::new(sim)))
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = match args.validate() {
        Ok(c) => c,
        Err(msg) => {
            tracing::error!("invalid configuration: {msg}");
            eprintln!("confcom quote-helper: invalid configuration: {msg}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let backend = load_backend(&cfg).await?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let probes = confcom_runtime::Probes::new(registry);
    let server = Server::bind(cfg.server.clone(), backend, metrics)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let probe_task = cfg.metrics_listen.map(|addr| {
        let mut rx = stop_rx.clone();
        let p = probes.clone();
        tokio::spawn(async move {
            p.serve(addr, async move {
                let _ = rx.changed().await;
            })
            .await
        })
    });
    probes.set_ready(true);
    let draining = probes.clone();
    server
        .serve(async move {
            confcom_runtime::shutdown_signal().await;
            // Not ready from the moment the drain starts, not after it.
            draining.set_ready(false);
        })
        .await;
    let _ = stop_tx.send(true);
    if let Some(t) = probe_task {
        t.await??;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn flags_parse_and_validate() {
        let cli = Cli::try_parse_from([
            "x",
            "--socket",
            "/tmp/a.sock",
            "--backend",
            "sim",
            "--socket-mode",
            "0660",
            "--max-connections",
            "8",
        ])
        .unwrap();
        let cfg = cli.args.serve.validate().unwrap();
        assert_eq!(cfg.backend, BackendKind::Sim);
        assert_eq!(cfg.server.socket_mode, 0o660);
        assert_eq!(cfg.server.max_connections, 8);
        assert!(Cli::try_parse_from(["x", "--socket-mode", "999"]).is_err());
        let zero = Cli::try_parse_from(["x", "--max-connections", "0"]).unwrap();
        assert!(zero.args.serve.validate().is_err());
        let probe = Cli::try_parse_from(["x", "probe", "--socket", "/tmp/b"]).unwrap();
        assert!(matches!(probe.args.command, Some(Command::Probe(_))));
    }
}

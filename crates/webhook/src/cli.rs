//! Command-line interface: `confcom webhook`.
//!
//! ```text
//! confcom webhook --listen 0.0.0.0:8443 \
//!     --tls-cert /etc/confcom/webhook/tls/tls.crt --tls-key /etc/confcom/webhook/tls/tls.key \
//!     [--metrics-listen 0.0.0.0:9090] [--cert-check-interval-secs 5] [--drain-timeout-secs 10]
//! ```
//!
//! Every flag can also be given as an environment variable (`CONFCOM_WEBHOOK_*`). The TLS
//! port serves `POST /mutate` and the probes (`/healthz`, `/readyz`, `/metrics`); the optional
//! `--metrics-listen` port serves the probes and metrics again over plain HTTP, for kubelet
//! probes and Prometheus. An unreadable certificate or key exits with code 64 before any
//! socket is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::tls::{CertReloader, server_config};
use crate::{AppState, router};

/// Exit code for invalid configuration (BSD `EX_USAGE`).
const EXIT_CONFIG: u8 = 64;

/// Arguments of `confcom webhook`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address of the HTTPS listener (`POST /mutate`, probes, metrics).
    #[arg(long, env = "CONFCOM_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// PEM certificate chain served to the API server (e.g. cert-manager's `tls.crt`);
    /// reloaded when the file changes.
    #[arg(long, env = "CONFCOM_WEBHOOK_TLS_CERT")]
    pub tls_cert: PathBuf,

    /// PEM private key of the certificate (e.g. cert-manager's `tls.key`).
    #[arg(long, env = "CONFCOM_WEBHOOK_TLS_KEY")]
    pub tls_key: PathBuf,

    /// Optional plain-HTTP listener for `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "CONFCOM_WEBHOOK_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// How often, at most, a TLS handshake checks whether the certificate files changed.
    #[arg(
        long,
        env = "CONFCOM_WEBHOOK_CERT_CHECK_INTERVAL_SECS",
        default_value_t = 5
    )]
    pub cert_check_interval_secs: u64,

    /// On SIGTERM, how long open connections may take to finish before they are closed.
    #[arg(long, env = "CONFCOM_WEBHOOK_DRAIN_TIMEOUT_SECS", default_value_t = 10)]
    pub drain_timeout_secs: u64,
}

/// Runs the webhook until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    run_until(args, confcom_runtime::shutdown_signal()).await
}

/// Runs the webhook until `shutdown` resolves: `/readyz` turns 503, the listeners stop
/// accepting, open connections get `--drain-timeout-secs` to finish.
pub async fn run_until(
    args: Args,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let state = AppState::new();
    let reloader = match CertReloader::new(
        &args.tls_cert,
        &args.tls_key,
        Duration::from_secs(args.cert_check_interval_secs),
        Some(state.metrics().clone()),
    ) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::error!(error = %e, "cannot load the serving certificate");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let tls = server_config(reloader).context("building the TLS configuration")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the webhook listener on {}", args.listen))?;
    tracing::info!(addr = %args.listen, "admission webhook listening (HTTPS)");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let probes = state.probes().clone();
    let metrics_server = {
        let probes = probes.clone();
        let stopped = stopped.clone();
        async move {
            match args.metrics_listen {
                Some(addr) => probes.serve(addr, stopped()).await,
                None => Ok(()),
            }
        }
    };
    let signal = {
        let probes = probes.clone();
        async move {
            shutdown.await;
            probes.set_ready(false);
            let _ = stop_tx.send(true);
        }
    };
    probes.set_ready(true);
    let drain = Duration::from_secs(args.drain_timeout_secs);
    let webhook = confcom_runtime::tls::serve_tls(listener, tls, router(state), stopped(), drain);
    let (metrics_result, (), ()) = tokio::join!(metrics_server, webhook, signal);
    metrics_result?;
    tracing::info!("admission webhook stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn flags_parse_with_defaults() {
        let cli = Cli::try_parse_from([
            "webhook",
            "--tls-cert",
            "/tls/tls.crt",
            "--tls-key",
            "/tls/tls.key",
            "--metrics-listen",
            "127.0.0.1:9090",
        ])
        .unwrap();
        assert_eq!(cli.args.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(cli.args.tls_cert, PathBuf::from("/tls/tls.crt"));
        assert_eq!(
            cli.args.metrics_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(cli.args.cert_check_interval_secs, 5);
        assert_eq!(cli.args.drain_timeout_secs, 10);
        assert!(Cli::try_parse_from(["webhook", "--tls-key", "k"]).is_err());
        assert!(
            Cli::try_parse_from([
                "webhook",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--listen",
                "nope"
            ])
            .is_err()
        );
    }
}

//! Command-line interface of `confcom pccs` (wired into the `confcom` binary):
//! `confcom pccs serve --store DIR --listen ADDR [--tls-cert PEM --tls-key PEM] [--upstream URL]
//! [--mode lazy|offline]` and
//! `confcom pccs import --store DIR FILE...`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::clock::Clock;
use crate::pccs::{self, Mode};
use crate::store::Store;

/// Arguments of `confcom pccs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve the Intel PCS/PCCS v3 and v4 API from the store.
    Serve(ServeArgs),
    /// Import collateral (dcap-qvl JSON files, or directories of PCS responses) and PCK
    /// certificates (quotes with certification data type 5, raw or hex) into the store.
    Import(ImportArgs),
}

/// Arguments of `confcom pccs serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Store directory (created if missing).
    #[arg(long, env = "CONFCOM_PCCS_STORE")]
    pub store: PathBuf,
    /// Listen address.
    #[arg(long, env = "CONFCOM_PCCS_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM, leaf first); serve HTTPS with --tls-key, as QCNL's
    /// `pccs_url = "https://…"` expects.
    #[arg(long, env = "CONFCOM_PCCS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CONFCOM_PCCS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Upstream PCS/PCCS base URL, e.g. `https://api.trustedservices.intel.com/sgx/certification/v4`
    #[arg(long, env = "CONFCOM_PCCS_UPSTREAM")]
    pub upstream: Option<String>,
    /// Fill mode.
    #[arg(long, env = "CONFCOM_PCCS_MODE", value_enum, default_value = "lazy")]
    pub mode: Mode,
    /// Refresh entries this many seconds before their nextUpdate.
    #[arg(long, env = "CONFCOM_PCCS_REFRESH_MARGIN", default_value_t = 86_400)]
    pub refresh_margin_secs: u64,
    /// Fix the clock (UNIX seconds), for serving old collateral in tests and audits.
    #[arg(long, env = "CONFCOM_PCCS_TIME")]
    pub time: Option<i64>,
}

/// Arguments of `confcom pccs import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Store directory (created if missing; the server must not be running on it).
    #[arg(long, env = "CONFCOM_PCCS_STORE")]
    pub store: PathBuf,
    /// dcap-qvl collateral JSON files, directories of PCS responses, or quotes (raw or hex)
    /// with certification data type 5, whose PCK certificate is then served by `pckcert`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `confcom pccs`.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Serve(a) => serve(a).await,
        Command::Import(a) => {
            let store = Store::open(&a.store)
                .with_context(|| format!("opening store {}", a.store.display()))?;
            let keys = pccs::import_paths(&store, &a.files, Clock::system().now())?;
            for k in keys {
                println!("imported {k}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    if a.mode == Mode::Lazy && a.upstream.is_none() {
        tracing::warn!("LAZY mode without --upstream: serving the store only");
    }
    // Read the TLS files before opening the store or binding: bad config fails early.
    let tls = crate::server::load_tls(a.tls_cert.as_deref(), a.tls_key.as_deref())
        .context("TLS configuration")?;
    let store =
        Store::open(&a.store).with_context(|| format!("opening store {}", a.store.display()))?;
    let config = pccs::Config {
        mode: a.mode,
        upstream: a.upstream,
        refresh_margin: Duration::from_secs(a.refresh_margin_secs),
        ..pccs::Config::default()
    };
    let state = pccs::PccsState::new(store, config, Clock::from_option(a.time))
        .context("building the upstream HTTP client")?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    tracing::info!(addr = %a.listen, tls = tls.is_some(), "PCCS listening");
    pccs::serve_with(listener, state, tls, confcom_runtime::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn tls_cert_and_key_go_together() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["pccs", "serve", "--store", "/tmp/s"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv)
        };
        let Command::Serve(a) = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .unwrap()
            .args
            .command
        else {
            panic!("not serve");
        };
        assert_eq!(a.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(a.tls_key, Some(PathBuf::from("k.pem")));
        assert!(parse(&["--tls-cert", "c.pem"]).is_err());
        assert!(parse(&["--tls-key", "k.pem"]).is_err());
        let Command::Serve(a) = parse(&[]).unwrap().args.command else {
            panic!("not serve");
        };
        assert!(a.tls_cert.is_none() && a.tls_key.is_none());
    }
}

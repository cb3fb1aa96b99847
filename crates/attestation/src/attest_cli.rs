//! `confcom attest serve`: the attestation server's command line.
//!
//! ```text
//! confcom attest serve --listen ADDR [--tls-cert PEM --tls-key PEM]
//!     (--pccs-url URL | --collateral FILE...) [--root PEM] [--policy FILE]
//!     [--signing-key FILE] [--verification-time UNIX_SECONDS] [--admin-token TOKEN]
//!     [--policy-signer-cert PEM]...
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::attest::{self, AttestState};
use crate::client::{CollateralClient, CollateralSource, RetryPolicy};
use crate::clock::Clock;
use crate::policy_jws::PolicySigners;
use crate::token::KeyRing;
use crate::verify::DcapVerifier;

/// Arguments of `confcom attest serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("collateral_source").required(true).args(["pccs_url", "collateral"])))]
pub struct ServeArgs {
    /// Listen address.
    #[arg(long, env = "CONFCOM_ATTEST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); serve HTTPS with --tls-key.
    #[arg(long, env = "CONFCOM_ATTEST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CONFCOM_ATTEST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PCCS / Intel PCS base URL (e.g. http://pccs:8081/sgx/certification/v4).
    #[arg(long, env = "CONFCOM_ATTEST_PCCS_URL")]
    pub pccs_url: Option<String>,
    /// Collateral files (dcap-qvl JSON) or directories of PCS responses, instead of a PCCS.
    #[arg(long, num_args = 1.., env = "CONFCOM_ATTEST_COLLATERAL", value_delimiter = ',')]
    pub collateral: Vec<PathBuf>,
    /// Trust anchor (PEM root CA certificate); default: the pinned Intel SGX Root CA key.
    #[arg(long, env = "CONFCOM_ATTEST_ROOT")]
    pub root: Option<PathBuf>,
    /// Policy file: YAML/JSON, or MAA claim-rule text (`version=1.0; authorizationrules {…};`);
    /// default: reject debug enclaves and Revoked TCBs.
    #[arg(long, env = "CONFCOM_ATTEST_POLICY")]
    pub policy: Option<PathBuf>,
    /// Policy signer certificate (PEM; repeatable): `PUT /policies/SgxEnclave` then accepts
    /// only MAA's JWS form signed (RS256/ES256) by one of these, certificate in `x5c`.
    #[arg(
        long = "policy-signer-cert",
        env = "CONFCOM_ATTEST_POLICY_SIGNER_CERT",
        value_delimiter = ','
    )]
    pub policy_signer_certs: Vec<PathBuf>,
    /// Token signing key (PKCS#8 P-256 PEM); generated and saved there if missing.
    #[arg(
        long,
        env = "CONFCOM_ATTEST_SIGNING_KEY",
        default_value = "attest-signing-key.pem"
    )]
    pub signing_key: PathBuf,
    /// Fix the verification clock (UNIX seconds): audits of old quotes, tests.
    #[arg(long, env = "CONFCOM_ATTEST_VERIFICATION_TIME")]
    pub verification_time: Option<i64>,
    /// Bearer token for `GET/PUT /policies/SgxEnclave`, `GET /certificates`,
    /// `POST /certificates:add|remove` and `POST /keys:rotate` (disabled if unset).
    #[arg(long, env = "CONFCOM_ATTEST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Token issuer (`iss`, base of `jku`); default derived from --listen.
    #[arg(long, env = "CONFCOM_ATTEST_ISSUER")]
    pub issuer: Option<String>,
    /// Token lifetime in seconds.
    #[arg(long, env = "CONFCOM_ATTEST_TOKEN_TTL", default_value_t = 8 * 3600)]
    pub token_ttl_secs: u64,
    /// Timeout of one collateral request, in seconds.
    #[arg(long, env = "CONFCOM_ATTEST_COLLATERAL_TIMEOUT", default_value_t = 10)]
    pub collateral_timeout_secs: u64,
    /// Attempts per collateral request.
    #[arg(long, env = "CONFCOM_ATTEST_COLLATERAL_ATTEMPTS", default_value_t = 3)]
    pub collateral_attempts: u32,
}

impl Default for ServeArgs {
    /// The command-line defaults, without a collateral source: for callers that build the
    /// arguments in code (`ServeArgs { pccs_url: Some(url), ..ServeArgs::default() }`).
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            pccs_url: None,
            collateral: Vec::new(),
            root: None,
            policy: None,
            policy_signer_certs: Vec::new(),
            signing_key: PathBuf::from("attest-signing-key.pem"),
            verification_time: None,
            admin_token: None,
            issuer: None,
            token_ttl_secs: 8 * 3600,
            collateral_timeout_secs: 10,
            collateral_attempts: 3,
        }
    }
}

/// Builds the server state from the arguments (reads files; generates the key if needed).
pub fn build_state(a: &ServeArgs) -> anyhow::Result<AttestState> {
    let clock = Clock::from_option(a.verification_time);
    let anchors = match &a.root {
        Some(p) => {
            let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            dcap_verify::TrustAnchors::from_pem(&pem)
                .with_context(|| format!("trust anchor {}", p.display()))?
        }
        None => dcap_verify::TrustAnchors::intel(),
    };
    let collateral = match &a.pccs_url {
        Some(url) => CollateralSource::Http(
            CollateralClient::new(
                url,
                RetryPolicy {
                    timeout: Duration::from_secs(a.collateral_timeout_secs),
                    attempts: a.collateral_attempts,
                    ..RetryPolicy::default()
                },
                clock.clone(),
            )
            .context("building the collateral HTTP client")?,
        ),
        None => CollateralSource::from_files(&a.collateral).context("reading --collateral")?,
    };
    let policy = match &a.policy {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => String::new(),
    };
    let mut policy_signers = PolicySigners::none();
    for p in &a.policy_signer_certs {
        let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        policy_signers
            .add_pem(&pem)
            .with_context(|| format!("policy signer certificate {}", p.display()))?;
    }
    if !policy_signers.is_empty() && a.admin_token.is_none() {
        tracing::warn!("--policy-signer-cert without --admin-token: policy updates are disabled");
    }
    let keys = KeyRing::load_or_create(&a.signing_key)
        .with_context(|| format!("signing key {}", a.signing_key.display()))?;
    let scheme = if a.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let config = attest::Config {
        issuer: a
            .issuer
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", a.listen)),
        token_ttl: Duration::from_secs(a.token_ttl_secs),
        admin_token: a.admin_token.clone(),
        policy_signers,
    };
    AttestState::new(
        Arc::new(DcapVerifier::new(anchors)),
        collateral,
        keys,
        &policy,
        config,
        clock,
    )
    .context("policy")
}

/// Runs `confcom attest serve` until SIGTERM/SIGINT.
pub async fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let state = build_state(&a)?;
    let tls = crate::server::load_tls(a.tls_cert.as_deref(), a.tls_key.as_deref())
        .context("TLS configuration")?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    tracing::info!(addr = %a.listen, tls = tls.is_some(), kid = %state.keys().kid(), "attestation server listening");
    crate::server::serve(
        listener,
        attest::router(state),
        tls,
        confcom_runtime::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn default_matches_the_command_line_defaults() {
        let parsed = Cli::try_parse_from(["serve", "--pccs-url", "http://p"])
            .unwrap()
            .args;
        let expected = ServeArgs {
            pccs_url: Some("http://p".into()),
            ..ServeArgs::default()
        };
        assert_eq!(format!("{parsed:?}"), format!("{expected:?}"));
    }

    #[test]
    fn policy_signer_certs_repeat_and_must_load() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["signer".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let good = dir.path().join("signer.pem");
        std::fs::write(&good, cert.pem()).unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let collateral = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/dcap/dcap-qvl/sample/sgx_quote_collateral.json");
        let args = |signers: &[&Path]| {
            let mut argv = vec![
                "serve".to_owned(),
                "--collateral".to_owned(),
                collateral.display().to_string(),
                "--signing-key".to_owned(),
                dir.path().join("k.pem").display().to_string(),
            ];
            for s in signers {
                argv.push("--policy-signer-cert".to_owned());
                argv.push(s.display().to_string());
            }
            Cli::try_parse_from(argv).unwrap().args
        };
        let a = args(&[&good, &good]);
        assert_eq!(a.policy_signer_certs.len(), 2);
        build_state(&a).unwrap();
        let err = build_state(&args(&[&good, &bad])).err().unwrap();
        assert!(format!("{err:#}").contains("bad.pem"), "{err:#}");
    }
}

//! `confcom attest serve`: the attestation server's command line.
//!
//! ```text
//! confcom attest serve --listen ADDR [--tls-cert PEM --tls-key PEM]
//!     (--pccs-url URL | --collateral FILE...) [--root PEM] [--policy FILE]
//!     [--signing-key FILE [--signing-key-read-only] [--signing-key-poll-secs N]
//!      [--signing-key-retention-margin-secs N]]
//!     [--verification-time UNIX_SECONDS] [--admin-token TOKEN]
//!     [--policy-signer-cert PEM]...
//!     [--state-dir DIR | --state-configmap NAME [--state-namespace NS]] [--state-poll-secs N]
//!     [--state-max-staleness-secs N]
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
use crate::runtime_state::RuntimeStore;
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
    /// Token signing key (PKCS#8 P-256 PEM); generated and saved there if missing (unless
    /// --signing-key-read-only). Retired keys, still published in /certs:
    /// `FILE.retired/*.pem`, and with --signing-key-read-only also `retired-*.pem` beside
    /// FILE (a Secret's entries).
    #[arg(
        long,
        env = "CONFCOM_ATTEST_SIGNING_KEY",
        default_value = "attest-signing-key.pem"
    )]
    pub signing_key: PathBuf,
    /// The signing key is managed outside the server (e.g. a Kubernetes Secret): never
    /// generated or written (a missing file is an error), `POST /keys:rotate` answers 409;
    /// rotate by updating the files in two steps (first the new key as `retired-next.pem`;
    /// once every replica publishes it, the new key in FILE and the old one as
    /// `retired-<any>.pem`).
    #[arg(long, env = "CONFCOM_ATTEST_SIGNING_KEY_READ_ONLY")]
    pub signing_key_read_only: bool,
    /// Seconds between checks of the signing key files: a changed key signs from then on,
    /// the previous one stays published (0: never reread).
    #[arg(long, env = "CONFCOM_ATTEST_SIGNING_KEY_POLL", default_value_t = 10)]
    pub signing_key_poll_secs: u64,
    /// Seconds a replaced signing key stays published (from memory, even if no file holds
    /// it) beyond the token lifetime (--token-ttl-secs): clock skew, caches of /certs.
    #[arg(
        long,
        env = "CONFCOM_ATTEST_SIGNING_KEY_RETENTION_MARGIN",
        default_value_t = 900
    )]
    pub signing_key_retention_margin_secs: u64,
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
    /// Keep run-time policy and signer changes in `runtime-state.json` in this directory
    /// (one replica, or replicas on one host); default: in memory only.
    #[arg(
        long,
        env = "CONFCOM_ATTEST_STATE_DIR",
        conflicts_with = "state_configmap"
    )]
    pub state_dir: Option<PathBuf>,
    /// Keep run-time policy and signer changes in this ConfigMap (it must exist; needs `get`
    /// and `update` on it), shared by all replicas.
    #[arg(long, env = "CONFCOM_ATTEST_STATE_CONFIGMAP")]
    pub state_configmap: Option<String>,
    /// Namespace of --state-configmap; default: the Kubernetes client's (the pod's).
    #[arg(
        long,
        env = "CONFCOM_ATTEST_STATE_NAMESPACE",
        requires = "state_configmap"
    )]
    pub state_namespace: Option<String>,
    /// Seconds between reads of the runtime state store: changes made through another
    /// replica are in force here within this time.
    #[arg(long, env = "CONFCOM_ATTEST_STATE_POLL_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub state_poll_secs: u64,
    /// Seconds without a successful read of the runtime state store after which the server
    /// is not ready and refuses attestation (503) until the next one; 0: no limit.
    #[arg(
        long,
        env = "CONFCOM_ATTEST_STATE_MAX_STALENESS",
        default_value_t = 300
    )]
    pub state_max_staleness_secs: u64,
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
            signing_key_read_only: false,
            signing_key_poll_secs: 10,
            signing_key_retention_margin_secs: 900,
            verification_time: None,
            admin_token: None,
            issuer: None,
            token_ttl_secs: 8 * 3600,
            collateral_timeout_secs: 10,
            collateral_attempts: 3,
            state_dir: None,
            state_configmap: None,
            state_namespace: None,
            state_poll_secs: 5,
            state_max_staleness_secs: 300,
        }
    }
}

/// The runtime state store of the arguments (`--state-dir` or `--state-configmap`), if any.
pub async fn runtime_store(a: &ServeArgs) -> anyhow::Result<Option<RuntimeStore>> {
    if let Some(dir) = &a.state_dir {
        let store = crate::runtime_state::DirStore::new(dir);
        store.check().context("--state-dir")?;
        return Ok(Some(RuntimeStore::new(store)));
    }
    let Some(name) = &a.state_configmap else {
        return Ok(None);
    };
    crate::install_crypto_provider();
    let client = kube::Client::try_default()
        .await
        .context("Kubernetes client for --state-configmap")?;
    let api = match &a.state_namespace {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::default_namespaced(client),
    };
    Ok(Some(RuntimeStore::config_map(api, name)))
}

/// Builds the server state from the arguments (reads files; generates the key if needed).
/// `--state-dir` is honoured; `--state-configmap` needs [`build_state_with_store`] (with
/// [`runtime_store`]), as [`run`] does.
pub fn build_state(a: &ServeArgs) -> anyhow::Result<AttestState> {
    if a.state_configmap.is_some() {
        anyhow::bail!("--state-configmap: build the store with runtime_store() first");
    }
    build_state_with_store(a, a.state_dir.as_ref().map(RuntimeStore::dir))
}

/// [`build_state`] with a runtime state store.
pub fn build_state_with_store(
    a: &ServeArgs,
    runtime_store: Option<RuntimeStore>,
) -> anyhow::Result<AttestState> {
    if runtime_store.is_some()
        && a.state_max_staleness_secs != 0
        && a.state_max_staleness_secs < a.state_poll_secs.saturating_mul(2)
    {
        anyhow::bail!(
            "--state-max-staleness-secs ({}) must be 0 or at least twice --state-poll-secs ({})",
            a.state_max_staleness_secs,
            a.state_poll_secs
        );
    }
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
    let keys = if a.signing_key_read_only {
        KeyRing::load_read_only(&a.signing_key)
    } else {
        KeyRing::load_or_create(&a.signing_key)
    }
    .with_context(|| format!("--signing-key {}", a.signing_key.display()))?
    // Tokens signed by a key replaced at run time verify until they expire, plus a margin.
    .with_retention(Duration::from_secs(
        a.token_ttl_secs
            .saturating_add(a.signing_key_retention_margin_secs),
    ));
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
        runtime_store,
        max_staleness: (a.state_max_staleness_secs > 0)
            .then(|| Duration::from_secs(a.state_max_staleness_secs)),
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
    let store = runtime_store(&a).await?;
    let state = build_state_with_store(&a, store.clone())?;
    if let Some(store) = &store {
        match state.sync_runtime_state().await {
            Ok(attest::SyncOutcome::Invalid(reason)) => {
                tracing::error!(store = %store.describe(), %reason, "stored runtime state is invalid: not ready (attestation refused) until it is repaired");
            }
            Ok(outcome) => {
                tracing::info!(store = %store.describe(), ?outcome, "runtime state store read");
            }
            Err(e) => {
                tracing::error!(store = %store.describe(), error = %e, "runtime state store unreadable: not ready (attestation refused) until it can be read");
            }
        }
        tokio::spawn(
            state
                .clone()
                .run_runtime_sync(Duration::from_secs(a.state_poll_secs)),
        );
    }
    if a.signing_key_poll_secs > 0 {
        tokio::spawn(
            state
                .clone()
                .run_signing_key_reload(Duration::from_secs(a.signing_key_poll_secs)),
        );
    }
    let tls = crate::server::load_tls(a.tls_cert.as_deref(), a.tls_key.as_deref())
        .context("TLS configuration")?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    tracing::info!(addr = %a.listen, tls = tls.is_some(), kid = %state.keys().kid(), signing_key_read_only = a.signing_key_read_only, "attestation server listening");
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
    fn state_flags_are_exclusive_and_checked() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["serve", "--pccs-url", "http://p"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|c| c.args)
        };
        let a = parse(&["--state-dir", "/var/lib/x"]).unwrap();
        assert_eq!(a.state_dir, Some(PathBuf::from("/var/lib/x")));
        assert_eq!(a.state_poll_secs, 5);
        let a = parse(&[
            "--state-configmap",
            "cm",
            "--state-namespace",
            "ns",
            "--state-poll-secs",
            "2",
        ])
        .unwrap();
        assert_eq!(
            (a.state_configmap.as_deref(), a.state_namespace.as_deref()),
            (Some("cm"), Some("ns"))
        );
        assert_eq!(a.state_poll_secs, 2);
        assert_eq!(a.state_max_staleness_secs, 300);
        let a = parse(&["--state-dir", "d", "--state-max-staleness-secs", "0"]).unwrap();
        assert_eq!(a.state_max_staleness_secs, 0);
        for bad in [
            &["--state-dir", "d", "--state-configmap", "cm"][..],
            &["--state-namespace", "ns"],
            &["--state-poll-secs", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_state_dir_writable_by_others_is_refused_at_start_up() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let args = ServeArgs {
            state_dir: Some(state.clone()),
            ..ServeArgs::default()
        };
        // Not there yet: created 0700 on the first write.
        assert!(runtime_store(&args).await.unwrap().is_some());
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = format!("{:#}", runtime_store(&args).await.unwrap_err());
        assert!(
            err.contains("--state-dir")
                && err.contains(&state.display().to_string())
                && err.contains("0777"),
            "{err}"
        );
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(runtime_store(&args).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn build_state_with_a_state_dir_waits_for_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let collateral = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/dcap/dcap-qvl/sample/sgx_quote_collateral.json");
        let args = ServeArgs {
            collateral: vec![collateral],
            signing_key: dir.path().join("k.pem"),
            state_dir: Some(dir.path().join("state")),
            ..ServeArgs::default()
        };
        // A staleness limit shorter than two polls would flap.
        let err = build_state(&ServeArgs {
            state_max_staleness_secs: 9,
            ..args.clone()
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("twice --state-poll-secs"), "{err}");
        let state = build_state(&args).unwrap();
        assert!(!state.probes().is_ready());
        state.sync_runtime_state().await.unwrap();
        assert!(state.probes().is_ready());
        // Without a state flag: in memory, ready at once.
        let state = build_state(&ServeArgs {
            state_dir: None,
            ..args.clone()
        })
        .unwrap();
        assert!(state.probes().is_ready());
        let err = build_state(&ServeArgs {
            state_dir: None,
            state_configmap: Some("cm".into()),
            ..args
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("runtime_store"), "{err}");
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

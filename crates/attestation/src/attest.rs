//! The attestation server: MAA's `POST /attest/SgxEnclave` returning an ES256 JWT with MAA's
//! SGX claims plus the TCB status, advisory IDs and EAR status; `GET /certs` (JWKS),
//! `GET /.well-known/openid-configuration`, `GET|PUT /policies/SgxEnclave` and
//! `POST /policies/SgxEnclave:reset` (admin token; answers carry MAA's `PolicyResult` token),
//! MAA's policy management certificates `GET /certificates`, `POST /certificates:add` and
//! `POST /certificates:remove` (admin token, then a JWS from a current policy signer),
//! `POST /keys:rotate` (admin token; 409 for a key managed outside the server or shared by
//! replicas through a ConfigMap store, which rotate through the key files:
//! [`AttestState::reload_signing_keys`]), and probes/metrics.
//!
//! Policy and signer changes go through a runtime state store when one is configured
//! ([`Config::runtime_store`], [`crate::runtime_state`]): written there first, then in force
//! here, and picked up by the other replicas at their next [`AttestState::sync_runtime_state`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{CollateralSource, FetchError};
use crate::clock::Clock;
use crate::policy::AnyPolicy;
use crate::policy_jws::{self, DecodedPolicy, Form, PolicySigners};
use crate::runtime_state::{
    BasedOn, MAX_DOCUMENT_LEN, MAX_SIGNER_OPS, RuntimeState, RuntimeStore, SignerOp, SignerOpKind,
    StoreError, StoredPolicy,
};
use crate::token::{KeyRing, Reload};
use crate::verify::{QuoteVerifier, VerifiedQuote, VerifyFailure};

/// Claim: Intel TCB status of the platform and QE ("UpToDate", ...).
pub const CLAIM_TCB_STATUS: &str = "x-confcom-tcb-status";
/// Claim: Intel security advisory IDs of the matched TCB levels.
pub const CLAIM_ADVISORY_IDS: &str = "x-confcom-advisory-ids";
/// Claim: EAR appraisal status (`affirming`, `warning`, `contraindicated`).
pub const CLAIM_EAR_STATUS: &str = "ear.status";

/// Lifetime of tokens (MAA: 8 h).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

/// Upper bound of a decoded quote (real quotes are ~5 KB).
const MAX_QUOTE_LEN: usize = 64 * 1024;
/// Upper bound of an attest request body: a quote at the 64 KiB limit in base64 plus
/// runtime data, init-time data and a draft policy.
pub const MAX_BODY_LEN: usize = 1024 * 1024;

/// Upper bound of a `PUT /policies/SgxEnclave`, `:reset` and `/certificates:add|remove`
/// body: what the runtime state store can hold at most (a larger change could be written but
/// never read back).
pub const MAX_MANAGEMENT_BODY_LEN: usize = crate::runtime_state::MAX_DOCUMENT_LEN;

/// Errors of the attest endpoint, each a distinct JSON error (`{"error":{code,message}}`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The body is not the MAA request JSON.
    #[error("invalid request body: {0}")]
    InvalidRequest(String),
    /// The body is larger than [`MAX_BODY_LEN`].
    #[error("request body exceeds the {MAX_BODY_LEN}-byte limit")]
    PayloadTooLarge,
    /// A policy or signer change too large for the runtime state store (a request body over
    /// [`MAX_MANAGEMENT_BODY_LEN`], or a stored document that would exceed
    /// [`crate::runtime_state::MAX_DOCUMENT_LEN`]): nothing is changed.
    #[error("{0}")]
    ChangeTooLarge(String),
    /// A base64url field does not decode.
    #[error("field {0} is not valid base64url")]
    InvalidBase64(&'static str),
    /// The quote ends early.
    #[error("{0}")]
    QuoteTruncated(String),
    /// The quote is structurally invalid.
    #[error("{0}")]
    MalformedQuote(String),
    /// A quote of another TEE.
    #[error("{0}; this endpoint attests SGX enclaves")]
    UnsupportedTee(String),
    /// SHA-256(runtimeData) differs from REPORTDATA[0..32].
    #[error(
        "runtimeData does not match the quote's REPORTDATA: SHA-256(runtimeData) must equal REPORTDATA[0..32]"
    )]
    RuntimeDataMismatch,
    /// SHA-256(initTimeData) differs from CONFIGID[0..32].
    #[error("initTimeData does not match the quote's CONFIGID")]
    InitTimeDataMismatch,
    /// The quote did not verify.
    #[error("quote verification failed: {0}")]
    VerificationFailed(String),
    /// No collateral for the platform.
    #[error("no collateral available for this platform (FMSPC {0})")]
    CollateralNotFound(String),
    /// The collateral service failed.
    #[error("collateral service unavailable")]
    CollateralUnavailable,
    /// The policy denied the quote.
    #[error(transparent)]
    PolicyDenied(#[from] crate::policy::Deny),
    /// Missing or wrong admin token.
    #[error("admin token required")]
    Unauthorized,
    /// A `PUT /policies/SgxEnclave` body that does not unwrap or is not signed as required.
    #[error(transparent)]
    PolicyBody(#[from] policy_jws::Error),
    /// `POST /certificates:add|remove` without signer certificates configured at start-up.
    #[error(
        "policy signer certificates can be added or removed only in isolated mode (start with --policy-signer-cert)"
    )]
    NotIsolated,
    /// `POST /certificates:remove` of the only remaining signer certificate.
    #[error("the last policy signer certificate cannot be removed (SHA-1 {0})")]
    LastPolicySigner(String),
    /// [`MAX_SIGNER_OPS`] signer changes are stored already.
    #[error(
        "{MAX_SIGNER_OPS} policy signer certificate changes are stored already: restate the signer set in the start-up configuration (--policy-signer-cert, the chart's attestation.policySignerCerts), which starts a new history"
    )]
    SignerHistoryFull,
    /// The runtime state store cannot be read or written (a change is then not made), or it
    /// has not been read successfully since start-up or for too long (attestation waits for
    /// it).
    #[error("{0}")]
    RuntimeStateUnavailable(String),
    /// Endpoint not configured.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// `POST /keys:rotate` of a key managed outside the server (read-only, a Secret).
    #[error(
        "the token signing key is managed outside this server (read-only, e.g. a Kubernetes Secret): rotate it by updating the Secret in two steps: first add the new key as retired-next.pem and wait until every replica publishes it (the kubelet's Secret sync plus one poll), then put the new key in key.pem and keep the old one as retired-<anything>.pem for the token lifetime plus a margin after the last replica reloaded (docs/operators.md, \"Rotating the token signing key\")"
    )]
    KeyRotationManagedExternally,
    /// `POST /keys:rotate` with a runtime state store shared by replicas (a ConfigMap): a
    /// rotation would change only this replica's key.
    #[error(
        "replicas share state (a ConfigMap runtime state store): a rotation here would change only this replica's key, whose tokens the others would not publish; rotate the key through a Secret mounted in every replica with --signing-key-read-only, in two steps: first add the new key as retired-next.pem, once every replica publishes it put it in key.pem and keep the old one as retired-<anything>.pem"
    )]
    KeyRotationNotShared,
    /// `POST /keys:rotate` refused: the key file no longer holds the key in force.
    #[error(
        "the signing key file no longer holds the key in force (it was changed outside this server; the next reread of the file puts it in force): nothing was changed"
    )]
    KeyFileChanged,
    /// `POST /keys:rotate` failed on the file system (the cause class; details are logged).
    #[error("key rotation failed: {0}; nothing was changed")]
    KeyRotationFailed(&'static str),
    /// Something failed inside the server (details are logged).
    #[error("internal error")]
    Internal,
}

impl AttestError {
    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "InvalidRequest"),
            Self::PayloadTooLarge | Self::ChangeTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge")
            }
            Self::InvalidBase64(_) => (StatusCode::BAD_REQUEST, "InvalidBase64"),
            Self::QuoteTruncated(_) => (StatusCode::BAD_REQUEST, "QuoteTruncated"),
            Self::MalformedQuote(_) => (StatusCode::BAD_REQUEST, "MalformedQuote"),
            Self::UnsupportedTee(_) => (StatusCode::BAD_REQUEST, "UnsupportedTee"),
            Self::RuntimeDataMismatch => (StatusCode::BAD_REQUEST, "RuntimeDataMismatch"),
            Self::InitTimeDataMismatch => (StatusCode::BAD_REQUEST, "InitTimeDataMismatch"),
            Self::VerificationFailed(_) => (StatusCode::BAD_REQUEST, "QuoteVerificationFailed"),
            Self::CollateralNotFound(_) => (StatusCode::SERVICE_UNAVAILABLE, "CollateralNotFound"),
            Self::CollateralUnavailable => (StatusCode::BAD_GATEWAY, "CollateralUnavailable"),
            Self::PolicyDenied(_) => (StatusCode::UNAUTHORIZED, "PolicyDenied"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Self::PolicyBody(e) => match e {
                policy_jws::Error::SignatureRequired => {
                    (StatusCode::UNAUTHORIZED, "PolicySignatureRequired")
                }
                policy_jws::Error::UntrustedSigner { .. } => {
                    (StatusCode::UNAUTHORIZED, "PolicySignerNotTrusted")
                }
                policy_jws::Error::BadSignature => {
                    (StatusCode::UNAUTHORIZED, "InvalidPolicySignature")
                }
                policy_jws::Error::UnsupportedAlgorithm(_) => {
                    (StatusCode::BAD_REQUEST, "UnsupportedPolicyAlgorithm")
                }
                _ => (StatusCode::BAD_REQUEST, "MalformedPolicyJws"),
            },
            Self::NotIsolated => (StatusCode::BAD_REQUEST, "NotIsolatedMode"),
            Self::LastPolicySigner(_) => (StatusCode::BAD_REQUEST, "LastPolicySignerCertificate"),
            Self::SignerHistoryFull => (StatusCode::CONFLICT, "SignerChangeLimitReached"),
            Self::RuntimeStateUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "RuntimeStateUnavailable")
            }
            Self::NotConfigured(_) => (StatusCode::NOT_FOUND, "NotConfigured"),
            Self::KeyRotationManagedExternally => {
                (StatusCode::CONFLICT, "KeyRotationManagedExternally")
            }
            Self::KeyRotationNotShared => (StatusCode::CONFLICT, "KeyRotationNotShared"),
            Self::KeyFileChanged => (StatusCode::CONFLICT, "KeyFileChanged"),
            Self::KeyRotationFailed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "KeyRotationFailed"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    fn result_label(&self) -> &'static str {
        self.code().1
    }
}

impl IntoResponse for AttestError {
    fn into_response(self) -> Response {
        let (status, code) = self.code();
        crate::json_error(status, code, &self.to_string())
    }
}

impl From<VerifyFailure> for AttestError {
    fn from(f: VerifyFailure) -> Self {
        match f {
            VerifyFailure::Truncated(m) => Self::QuoteTruncated(format!("quote truncated: {m}")),
            VerifyFailure::UnsupportedTee(m) => {
                Self::UnsupportedTee(format!("unsupported TEE: {m}"))
            }
            VerifyFailure::Malformed(m) => Self::MalformedQuote(format!("malformed quote: {m}")),
            VerifyFailure::Rejected(m) => Self::VerificationFailed(m),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabel {
    outcome: &'static str,
}

#[derive(Clone)]
struct Metrics {
    requests: Family<ResultLabel, Counter>,
    verify_seconds: Histogram,
    collateral: Family<CacheLabel, Counter>,
    /// Runtime state store reads of the poll step, by outcome.
    state_syncs: Family<ResultLabel, Counter>,
    /// Runtime state writes of changes, by result.
    state_writes: Family<ResultLabel, Counter>,
    /// UNIX time of the last successful read of the runtime state store.
    state_last_sync: Gauge,
    /// Reloads of changed signing key files, by result.
    key_reloads: Family<ResultLabel, Counter>,
    /// The counters every successful request touches, looked up once.
    requests_ok: Counter,
    collateral_hit: Counter,
}

impl Metrics {
    fn new(registry: &mut Registry) -> Self {
        let requests = Family::<ResultLabel, Counter>::default();
        let collateral = Family::<CacheLabel, Counter>::default();
        let requests_ok = requests
            .get_or_create(&ResultLabel { result: "ok" })
            .clone();
        let collateral_hit = collateral
            .get_or_create(&CacheLabel { outcome: "hit" })
            .clone();
        let m = Self {
            requests_ok,
            collateral_hit,
            requests,
            verify_seconds: Histogram::new([
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5,
            ]),
            collateral,
            state_syncs: Family::default(),
            state_writes: Family::default(),
            state_last_sync: Gauge::default(),
            key_reloads: Family::default(),
        };
        registry.register(
            "signing_key_reloads",
            "reloads of changed token signing key files by result (ok; error: the keys in force stay)",
            m.key_reloads.clone(),
        );
        registry.register(
            "runtime_state_last_sync_timestamp_seconds",
            "UNIX time of the last successful read of the runtime state store (0: none yet)",
            m.state_last_sync.clone(),
        );
        registry.register(
            "runtime_state_syncs",
            "runtime state store reads by outcome (applied, unchanged, stale, invalid, error)",
            m.state_syncs.clone(),
        );
        registry.register(
            "runtime_state_writes",
            "runtime state store writes of changes by result (ok, conflict, error)",
            m.state_writes.clone(),
        );
        registry.register(
            "attest_requests",
            "attest requests by result",
            m.requests.clone(),
        );
        registry.register(
            "verify_seconds",
            "quote verification latency (seconds)",
            m.verify_seconds.clone(),
        );
        registry.register(
            "collateral_cache",
            "collateral lookups by outcome (hit, miss)",
            m.collateral.clone(),
        );
        m
    }
}

/// Configuration of the attestation server.
#[derive(Debug, Clone)]
pub struct Config {
    /// `iss` of tokens, and the base of `jku`/`jwks_uri` (e.g. `https://attest.example`).
    pub issuer: String,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// Admin token for policy management and key rotation (disabled when `None`).
    pub admin_token: Option<String>,
    /// Policy signer certificates at start-up: when any is set (isolated mode),
    /// `PUT /policies/SgxEnclave` accepts only a JWS signed by a current signer (see
    /// [`crate::policy_jws`]), and `POST /certificates:add|remove` change the current set.
    pub policy_signers: PolicySigners,
    /// Where run-time changes (policy `PUT`/reset, signer add/remove) are kept for every
    /// replica and across restarts (see [`crate::runtime_state`]); `None`: in memory only.
    /// With a store, attestation waits for the first [`AttestState::sync_runtime_state`].
    pub runtime_store: Option<RuntimeStore>,
    /// With a store: after this long without a successful read of it, the server is not
    /// ready and refuses attestation until the next one (`None` or zero: no limit).
    pub max_staleness: Option<Duration>,
}

/// Default of [`Config::max_staleness`].
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(300);

impl Default for Config {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            token_ttl: DEFAULT_TOKEN_TTL,
            admin_token: None,
            policy_signers: PolicySigners::none(),
            runtime_store: None,
            max_staleness: Some(DEFAULT_MAX_STALENESS),
        }
    }
}

#[derive(Clone)]
struct PolicyDoc {
    policy: Arc<AnyPolicy>,
    text: String,
    hash: String,
    form: Form,
    /// Hex SHA-256 of the signer's certificate, for a signed policy.
    signer: Option<String>,
    /// DER of the signer's certificate, for a signed policy.
    signer_certificate: Option<Vec<u8>>,
    /// The compact JWS the policy arrived in (JWS forms).
    jws: Option<String>,
}

/// MAA's policy hash: BASE64URL(SHA256(UTF8(BASE64URL(UTF8(policy))))).
fn policy_hash(text: &str) -> String {
    let inner = URL_SAFE_NO_PAD.encode(text.as_bytes());
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        inner.as_bytes(),
    ))
}

/// An unsecured JWT (`alg: none`, empty signature) of `claims`: what MAA returns for a draft
/// policy, whose token "cannot be validated". Anyone may send a draft policy, so its result
/// must never carry the service's signature.
fn unsecured_jwt(claims: &Value) -> Result<String, AttestError> {
    let payload = serde_json::to_vec(claims).map_err(|_| AttestError::Internal)?;
    let mut out = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    out.push('.');
    Ok(out)
}

impl PolicyDoc {
    fn new(d: DecodedPolicy) -> Result<Self, crate::policy::Error> {
        let policy = Arc::new(AnyPolicy::parse(&d.text)?);
        let hash = policy_hash(&d.text);
        Ok(Self {
            policy,
            text: d.text,
            hash,
            form: d.form,
            signer: d.signer,
            signer_certificate: d.signer_certificate,
            jws: d.jws,
        })
    }

    /// MAA's `x-ms-policy` claim: a JWS whose payload is a `StoredAttestationPolicy`
    /// (`{"AttestationPolicy": "<base64url of the text>"}`), what Azure's SDKs decode in
    /// `GetPolicy`. The JWS as received for the JWS forms (so a signed policy still shows its
    /// signer), else an unsecured one.
    fn stored_policy_jws(&self) -> Result<String, AttestError> {
        match &self.jws {
            Some(jws) => Ok(jws.clone()),
            None => unsecured_jwt(&json!({
                "AttestationPolicy": URL_SAFE_NO_PAD.encode(self.text.as_bytes()),
            })),
        }
    }

    /// The `--policy` file: plain text is local configuration and always accepted; a JWS is
    /// checked like a `PUT` body.
    fn from_startup(text: &str, signers: &PolicySigners) -> Result<Self, crate::policy::Error> {
        let decoded = if policy_jws::looks_like_jws(text) {
            policy_jws::decode(text.as_bytes(), signers)?
        } else {
            DecodedPolicy {
                text: text.to_owned(),
                form: Form::Plain,
                signer: None,
                signer_certificate: None,
                jws: None,
            }
        };
        Self::new(decoded)
    }

    fn form_name(&self) -> &'static str {
        match self.form {
            Form::Plain => "plain",
            Form::Unsigned => "unsigned-jws",
            Form::Signed => "signed-jws",
        }
    }
}

/// Shared state of the attestation server.
#[derive(Clone)]
pub struct AttestState {
    verifier: Arc<dyn QuoteVerifier>,
    collateral: Arc<CollateralSource>,
    keys: Arc<KeyRing>,
    policy: Arc<RwLock<PolicyDoc>>,
    /// The start-up policy, which `POST /policies/SgxEnclave:reset` puts back.
    default_policy: Arc<PolicyDoc>,
    /// The current policy signers (starts as `config.policy_signers`).
    signers: Arc<RwLock<PolicySigners>>,
    config: Arc<Config>,
    clock: Clock,
    metrics: Metrics,
    probes: confcom_runtime::Probes,
    /// The run-time changes in force here; its lock serializes changes and syncs.
    runtime: Arc<tokio::sync::Mutex<Runtime>>,
    /// The hashes of the start-up configuration.
    based_on: Arc<BasedOn>,
    /// Whether the runtime state store was read since start-up (always, without a store).
    loaded: Arc<AtomicBool>,
    /// The origin of [`Self::last_sync_ms`].
    epoch: Instant,
    /// Milliseconds from `epoch` to the last successful read of the store.
    last_sync_ms: Arc<AtomicU64>,
    /// Held while readiness is decided ([`Self::synced`], [`Self::check_staleness`]): a
    /// staleness check made on the timestamp before a successful read cannot mark the server
    /// not ready after that read marked it ready.
    readiness: Arc<std::sync::Mutex<()>>,
    /// The last signing key reload error logged (logged again only when it changes).
    key_reload_error: Arc<std::sync::Mutex<Option<String>>>,
}

/// The run-time changes in force on this replica.
struct Runtime {
    /// Normalized: the parts in force here, on this replica's start-up configuration.
    state: RuntimeState,
    /// The store version last applied (or found equal to the state in force).
    seen: Option<String>,
    /// Whether a read of the store succeeded since start-up (the first one may rewrite a
    /// document made on another start-up configuration).
    started: bool,
    /// The invalid store version last logged as an error.
    invalid_logged: Option<String>,
    /// The store version made on another start-up configuration last logged (once
    /// started, such a document is not applied).
    foreign_logged: Option<String>,
}

/// The policy and signers of a runtime state, checked.
struct Resolved {
    doc: PolicyDoc,
    signers: PolicySigners,
    /// The parts in force here (the others dropped), on this replica's start-up
    /// configuration, same generation.
    effective: RuntimeState,
    /// A stored part was dropped: made on another start-up configuration, or a policy whose
    /// signer history was dropped and that the start-up signers do not verify.
    dropped: bool,
    /// The stored state was made on another start-up configuration.
    foreign: bool,
}

/// What [`AttestState::sync_runtime_state`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncOutcome {
    /// No store configured.
    NoStore,
    /// The stored state is the one in force.
    Unchanged,
    /// A newer stored state is now in force.
    Applied,
    /// The stored state was made on another start-up configuration. At start-up (the first
    /// successful read), the parts made on another one (policy, signer changes) are ignored,
    /// the rest applied, and the store is rewritten without them. Once started, the whole
    /// document is ignored and the state in force stays (a rolling upgrade or rollback in
    /// progress: a replica on the other configuration wrote it); the read still counts as a
    /// successful one.
    Stale,
    /// The stored state is invalid (the reason): ignored, logged as an error.
    Invalid(String),
}

/// Attempts of a change whose compare-and-swap write meets a concurrent one.
const CAS_ATTEMPTS: usize = 5;

impl AttestState {
    /// Builds the state. `policy_text` is YAML/JSON (empty = default policy) or MAA's JWS
    /// form, checked against `config.policy_signers`.
    pub fn new(
        verifier: Arc<dyn QuoteVerifier>,
        collateral: CollateralSource,
        keys: KeyRing,
        policy_text: &str,
        config: Config,
        clock: Clock,
    ) -> Result<Self, crate::policy::Error> {
        let mut registry = Registry::with_prefix("confcom_attest");
        let metrics = Metrics::new(&mut registry);
        let probes = confcom_runtime::Probes::new(registry);
        // With a store, not ready (and no attestation) until its first successful read.
        let loaded = config.runtime_store.is_none();
        probes.set_ready(loaded);
        let startup = PolicyDoc::from_startup(policy_text, &config.policy_signers)?;
        let based_on = BasedOn::new(policy_text, &config.policy_signers);
        // Retired key files skipped at load: logged and counted as reload errors.
        for e in keys.take_load_errors() {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "retired token signing key file skipped: it cannot be read or is not a PKCS#8 P-256 key");
            metrics
                .key_reloads
                .get_or_create(&ResultLabel { result: "error" })
                .inc();
        }
        Ok(Self {
            verifier,
            collateral: Arc::new(collateral),
            keys: Arc::new(keys),
            default_policy: Arc::new(startup.clone()),
            policy: Arc::new(RwLock::new(startup)),
            signers: Arc::new(RwLock::new(config.policy_signers.clone())),
            config: Arc::new(config),
            clock,
            metrics,
            probes,
            runtime: Arc::new(tokio::sync::Mutex::new(Runtime {
                state: RuntimeState::empty(based_on.clone()),
                seen: None,
                started: false,
                invalid_logged: None,
                foreign_logged: None,
            })),
            based_on: Arc::new(based_on),
            loaded: Arc::new(AtomicBool::new(loaded)),
            epoch: Instant::now(),
            last_sync_ms: Arc::new(AtomicU64::new(0)),
            readiness: Arc::new(std::sync::Mutex::new(())),
            key_reload_error: Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// The probes (readiness, metrics).
    #[must_use]
    pub fn probes(&self) -> &confcom_runtime::Probes {
        &self.probes
    }

    /// The signing keys.
    #[must_use]
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Reloads the signing key files if they changed ([`KeyRing::reload`]): logs a new
    /// current key at info with both `kid`s, and a failure as an error (the keys in force
    /// stay), counted in `signing_key_reloads` (changes only: `ok`, or `error` at every poll
    /// while the files are unreadable or invalid). The poll step of
    /// [`Self::run_signing_key_reload`], callable directly.
    pub fn reload_signing_keys(&self) -> Result<Reload, crate::token::Error> {
        let outcome = self.keys.reload();
        let mut logged = self
            .key_reload_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if outcome.is_ok() {
            *logged = None;
        }
        let result = match &outcome {
            Ok(Reload::Unchanged) => return outcome,
            Ok(Reload::KeyChanged { previous, kid }) => {
                tracing::info!(%previous, %kid, "token signing key changed: the new key signs, the previous one stays published");
                "ok"
            }
            Ok(_) => {
                tracing::info!(kid = %self.keys.kid(), "retired token signing keys reloaded");
                "ok"
            }
            Err(e) if logged.as_deref() == Some(&e.to_string()) => {
                tracing::debug!(error = %e, "token signing key files still unreadable or invalid");
                "error"
            }
            Err(e) => {
                *logged = Some(e.to_string());
                let path = self.keys.path().map(|p| p.display().to_string());
                tracing::error!(error = %e, source = ?std::error::Error::source(e), ?path, kid = %self.keys.kid(), "token signing key files unreadable or invalid: keeping the keys in force");
                "error"
            }
        };
        self.metrics
            .key_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
        outcome
    }

    /// Calls [`Self::reload_signing_keys`] every `every` until dropped (a no-op for keys not
    /// from files).
    pub async fn run_signing_key_reload(self, every: Duration) {
        if self.keys.path().is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: the files were just read.
        tick.tick().await;
        loop {
            tick.tick().await;
            // The file reads off the async workers.
            let s = self.clone();
            let _ = tokio::task::spawn_blocking(move || s.reload_signing_keys()).await;
        }
    }

    /// Reads the runtime state store and puts a newer stored state in force, after checking it
    /// (see [`crate::runtime_state`]: the signer changes replay from the start-up signers,
    /// the policy unwraps, parses, and in isolated mode verifies against the signers in force
    /// when it was accepted). At the first successful read, a part made on another start-up
    /// configuration is ignored with a warning, and the store is rewritten without it (so that
    /// a later return to that configuration does not revive it); after it, a document made on
    /// another start-up configuration is not applied at all and the state in force stays
    /// ([`SyncOutcome::Stale`]). An invalid document is not applied
    /// and logged as an error: the state in force stays, and a replica that has not read the
    /// store successfully yet stays not ready. A successful read makes the server ready. The
    /// poll step of [`Self::run_runtime_sync`], callable directly.
    pub async fn sync_runtime_state(&self) -> Result<SyncOutcome, StoreError> {
        let Some(store) = &self.config.runtime_store else {
            return Ok(SyncOutcome::NoStore);
        };
        let outcome = self.sync_from(store).await;
        let result = match &outcome {
            Ok(SyncOutcome::Applied) => "applied",
            Ok(SyncOutcome::Stale) => "stale",
            Ok(SyncOutcome::Invalid(_)) => "invalid",
            Ok(_) => "unchanged",
            Err(_) => "error",
        };
        self.metrics
            .state_syncs
            .get_or_create(&ResultLabel { result })
            .inc();
        if !matches!(
            outcome,
            Ok(SyncOutcome::Applied | SyncOutcome::Unchanged | SyncOutcome::Stale)
        ) {
            self.check_staleness();
        }
        outcome
    }

    async fn sync_from(&self, store: &RuntimeStore) -> Result<SyncOutcome, StoreError> {
        let mut rt = self.runtime.lock().await;
        let snapshot = store.load().await?;
        if rt.started && rt.seen.as_deref() == Some(snapshot.version.as_str()) {
            self.synced();
            return Ok(SyncOutcome::Unchanged);
        }
        let state = match self.stored_state(snapshot.data.as_deref()) {
            Ok(state) => state,
            Err(e) => {
                return Ok(self.invalid(
                    &mut rt,
                    store,
                    &snapshot.version,
                    format!("unreadable document: {e}"),
                ));
            }
        };
        if rt.started && state.based_on != *self.based_on {
            // Made by a replica on another start-up configuration (a rolling upgrade or a
            // rollback in progress): neither applied nor a reason to fall back to the
            // start-up state; this replica keeps what it has in force until it is replaced.
            if rt.foreign_logged.as_deref() != Some(snapshot.version.as_str()) {
                tracing::info!(store = %store.describe(), generation = state.generation, "stored runtime state was made on another start-up configuration (--policy or --policy-signer-cert differ; a rolling upgrade or rollback in progress?): not applied, the state in force here stays");
                rt.foreign_logged = Some(snapshot.version.clone());
            }
            rt.invalid_logged = None;
            self.synced();
            return Ok(SyncOutcome::Stale);
        }
        let mut resolved = match self.resolve(&state) {
            Ok(r) => r,
            Err(reason) => return Ok(self.invalid(&mut rt, store, &snapshot.version, reason)),
        };
        let mut version = snapshot.version.clone();
        if resolved.dropped {
            tracing::warn!(store = %store.describe(), generation = state.generation, "stored runtime state was partly made on another start-up configuration (--policy or --policy-signer-cert changed): that part is ignored, the start-up configuration is in force for it");
            if !rt.started {
                // A tombstone of the dropped part: a later return to the old start-up
                // configuration (helm rollback) must not revive it.
                let mut tombstone = resolved.effective.clone();
                tombstone.generation = state.generation.saturating_add(1);
                let data = tombstone.to_json()?;
                version = self.save_checked(store, &data, &snapshot.version).await?;
                tracing::info!(store = %store.describe(), generation = tombstone.generation, "runtime state rewritten on this start-up configuration");
                resolved.effective = tombstone;
            }
        }
        let applied = !resolved.effective.same_changes(&rt.state);
        if applied || !rt.started {
            tracing::info!(store = %store.describe(), generation = resolved.effective.generation, policy = %resolved.doc.hash, signers = resolved.signers.len(), "runtime state applied");
            self.apply(resolved.doc, resolved.signers)
                .map_err(|_| StoreError::Unavailable("poisoned lock".into()))?;
        }
        rt.state = resolved.effective;
        rt.seen = Some(version);
        rt.started = true;
        rt.invalid_logged = None;
        rt.foreign_logged = None;
        self.synced();
        Ok(if resolved.dropped {
            SyncOutcome::Stale
        } else if applied {
            SyncOutcome::Applied
        } else {
            SyncOutcome::Unchanged
        })
    }

    /// The stored document, parsed (none stored: no changes on this start-up configuration).
    fn stored_state(&self, data: Option<&str>) -> Result<RuntimeState, String> {
        data.map_or_else(
            || Ok(RuntimeState::empty((*self.based_on).clone())),
            RuntimeState::from_json,
        )
    }

    /// An invalid stored document: logged (as an error once per version), not applied, and
    /// looked at again at the next poll.
    fn invalid(
        &self,
        rt: &mut Runtime,
        store: &RuntimeStore,
        version: &str,
        reason: String,
    ) -> SyncOutcome {
        if rt.invalid_logged.as_deref() == Some(version) {
            tracing::debug!(store = %store.describe(), %version, %reason, "stored runtime state is still invalid");
        } else {
            tracing::error!(store = %store.describe(), %version, %reason, ready = self.probes.is_ready(), "stored runtime state is invalid: not applied (a replica that has not read a valid one since start-up stays not ready)");
            rt.invalid_logged = Some(version.to_owned());
        }
        SyncOutcome::Invalid(reason)
    }

    /// Calls [`Self::sync_runtime_state`] every `every` until dropped (a no-op without a
    /// store). Failures are logged: the state in force stays (until the staleness limit).
    pub async fn run_runtime_sync(self, every: Duration) {
        let Some(store) = self.config.runtime_store.clone() else {
            return;
        };
        let mut failing = false;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.sync_runtime_state().await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!(store = %store.describe(), "runtime state store reachable again");
                }
                Ok(_) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(store = %store.describe(), error = %e, ready = self.probes.is_ready(), "runtime state store unreadable: keeping the state in force");
                    }
                    failing = true;
                }
            }
        }
    }

    /// The store was read successfully and its state is in force here: ready, and attestation
    /// may go on.
    fn synced(&self) {
        let _readiness = self
            .readiness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_sync_ms.store(ms, Ordering::Release);
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.metrics.state_last_sync.set(unix);
        if !self.loaded.swap(true, Ordering::SeqCst) {
            tracing::info!("runtime state store read: ready");
        }
        if !self.probes.is_ready() {
            self.probes.set_ready(true);
        }
    }

    /// Whether attestation may go on: without a store always; with one, once it was read
    /// successfully, and not longer ago than [`Config::max_staleness`].
    fn fresh(&self) -> bool {
        if !self.loaded.load(Ordering::Acquire) {
            return false;
        }
        match (&self.config.runtime_store, self.config.max_staleness) {
            (Some(_), Some(max)) if !max.is_zero() => {
                let last = Duration::from_millis(self.last_sync_ms.load(Ordering::Acquire));
                self.epoch.elapsed().saturating_sub(last) <= max
            }
            _ => true,
        }
    }

    /// Not ready while the store has not been read for longer than allowed.
    fn check_staleness(&self) {
        let _readiness = self
            .readiness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.loaded.load(Ordering::Acquire) && !self.fresh() && self.probes.is_ready() {
            tracing::error!(max_staleness = ?self.config.max_staleness, "runtime state store not read successfully for too long: not ready, attestation refused until the next successful read");
            self.probes.set_ready(false);
        }
    }

    /// The policy and signers of a runtime state, checked (see [`Self::sync_runtime_state`]).
    /// Its signer changes apply only on the same start-up signers, its policy only on the same
    /// start-up policy; otherwise they are dropped. A policy whose signer history was dropped
    /// must verify against the start-up signers, or it is dropped too. Any other failure makes
    /// the whole document invalid.
    fn resolve(&self, state: &RuntimeState) -> Result<Resolved, String> {
        let startup = &self.config.policy_signers;
        let isolated = !startup.is_empty();
        let signers_apply =
            state.based_on.startup_signers_sha256 == self.based_on.startup_signers_sha256;
        let policy_applies =
            state.based_on.startup_policy_sha256 == self.based_on.startup_policy_sha256;
        let mut effective = RuntimeState::empty((*self.based_on).clone());
        effective.generation = state.generation;
        let mut dropped = false;
        let history = if signers_apply {
            if !isolated && !state.signer_ops.is_empty() {
                return Err(
                    "signer changes are stored but this server is not in isolated mode".into(),
                );
            }
            effective.signer_ops.clone_from(&state.signer_ops);
            crate::runtime_state::replay_signer_ops(startup, &state.signer_ops)?
        } else {
            dropped |= !state.signer_ops.is_empty();
            vec![startup.clone()]
        };
        let signers = history.last().cloned().unwrap_or_else(|| startup.clone());
        let doc = match &state.policy {
            None => (*self.default_policy).clone(),
            Some(_) if !policy_applies => {
                dropped = true;
                (*self.default_policy).clone()
            }
            Some(p) => {
                let (at, index) = if signers_apply {
                    let at = history.get(p.signer_ops).ok_or_else(|| {
                        format!(
                            "stored policy names signer change {}, past the {} stored",
                            p.signer_ops,
                            state.signer_ops.len()
                        )
                    })?;
                    (at, p.signer_ops)
                } else {
                    (startup, 0)
                };
                let decoded = policy_jws::decode(p.body.as_bytes(), at)
                    .map_err(|e| format!("stored policy: {e}"))
                    .and_then(|d| PolicyDoc::new(d).map_err(|e| format!("stored policy: {e}")));
                match decoded {
                    Ok(doc) => {
                        effective.policy = Some(StoredPolicy {
                            body: p.body.clone(),
                            hash: doc.hash.clone(),
                            signer_ops: index,
                        });
                        doc
                    }
                    Err(reason) if !signers_apply => {
                        tracing::warn!(%reason, "the stored policy was accepted under signer changes that no longer apply (the start-up signers changed) and the start-up signers do not verify it: dropped, the start-up policy is in force");
                        dropped = true;
                        (*self.default_policy).clone()
                    }
                    Err(reason) => return Err(reason),
                }
            }
        };
        Ok(Resolved {
            doc,
            signers,
            effective,
            dropped,
            foreign: state.based_on != *self.based_on,
        })
    }

    /// Puts a policy and signer set in force (lock order: signers, then policy).
    fn apply(&self, doc: PolicyDoc, signers: PolicySigners) -> Result<(), AttestError> {
        let mut sg = self.signers.write().map_err(|_| AttestError::Internal)?;
        let mut pg = self.policy.write().map_err(|_| AttestError::Internal)?;
        tracing::info!(hash = %doc.hash, form = doc.form_name(), signer = ?doc.signer, signers = signers.len(), "attestation policy and signers in force");
        *pg = doc;
        *sg = signers;
        Ok(())
    }

    /// The state a change starts from: the parts of the stored one that apply here (see
    /// [`Self::resolve`]; none stored: no changes), its signers, and its store version.
    async fn latest(&self, store: &RuntimeStore) -> Result<(Resolved, String), AttestError> {
        let snapshot = store.load().await.map_err(read_failed)?;
        let invalid = |e: String| {
            tracing::error!(store = %store.describe(), error = %e, "stored runtime state is invalid");
            AttestError::RuntimeStateUnavailable(format!(
                "the stored runtime state is invalid ({e}); nothing was changed"
            ))
        };
        let state = self
            .stored_state(snapshot.data.as_deref())
            .map_err(invalid)?;
        let resolved = self.resolve(&state).map_err(invalid)?;
        Ok((resolved, snapshot.version))
    }

    /// Writes `data` over version `expected`. A write whose outcome is unknown (an error or a
    /// timeout after the store may have committed it, or a conflict answered to a retry of a
    /// committed write) is checked by reading the store again: if it holds `data`, the write
    /// succeeded.
    async fn save_checked(
        &self,
        store: &RuntimeStore,
        data: &str,
        expected: &str,
    ) -> Result<String, StoreError> {
        let saved = match store.save(data, expected).await {
            Ok(v) => Ok(v),
            Err(e) => match store.load().await {
                Ok(s) if s.data.as_deref() == Some(data) => {
                    tracing::info!(store = %store.describe(), error = %e, "runtime state write reported a failure, but the store holds it: written");
                    Ok(s.version)
                }
                _ => Err(e),
            },
        };
        let result = match &saved {
            Ok(_) => "ok",
            Err(StoreError::Conflict) => "conflict",
            Err(_) => "error",
        };
        self.metrics
            .state_writes
            .get_or_create(&ResultLabel { result })
            .inc();
        saved
    }

    /// Makes a change: `f` checks it against the latest state and its signers and returns
    /// the new state and the answer. With a store, the new state is written (compare-and-swap
    /// on the version read, retried on conflict) before it is put in force here; a failed
    /// read, a document too large, or conflicts without end change nothing, and a failed
    /// write may or may not have been stored. The whole change (with its wait for an earlier
    /// one) gives up after [`change_deadline`]. Changes are serialized within the replica.
    async fn change<T>(
        &self,
        mut f: impl FnMut(&RuntimeState, &PolicySigners) -> Result<(RuntimeState, T), AttestError>,
    ) -> Result<T, AttestError> {
        let Some(store) = &self.config.runtime_store else {
            let mut rt = self.runtime.lock().await;
            let signers = self
                .signers
                .read()
                .map_err(|_| AttestError::Internal)?
                .clone();
            let (new, answer) = f(&rt.state, &signers)?;
            self.put_in_force(&new)?;
            rt.state = new;
            return Ok(answer);
        };
        let deadline = change_deadline(store);
        // The deadline covers the wait for an earlier change or poll of this replica too.
        let timed = async {
            let mut rt = self.runtime.lock().await;
            self.change_in_store(&mut rt, store, f).await
        };
        tokio::time::timeout(deadline, timed)
            .await
            .unwrap_or_else(|_| {
                tracing::warn!(store = %store.describe(), ?deadline, "runtime state change timed out");
                Err(AttestError::RuntimeStateUnavailable(format!(
                    "the change did not complete within {} s: it is not in force here, and may or may not have been stored; check with GET and retry",
                    deadline.as_secs_f64()
                )))
            })
    }

    async fn change_in_store<T>(
        &self,
        rt: &mut Runtime,
        store: &RuntimeStore,
        mut f: impl FnMut(&RuntimeState, &PolicySigners) -> Result<(RuntimeState, T), AttestError>,
    ) -> Result<T, AttestError> {
        for attempt in 1..=CAS_ATTEMPTS {
            let (base, version) = self.latest(store).await?;
            if base.foreign && rt.started && !base.effective.same_changes(&rt.state) {
                // A replica on another start-up configuration wrote it (a rolling upgrade or
                // rollback in progress), and this replica keeps its own state in force (see
                // `sync_from`): a change on top of either would drop the other's.
                tracing::info!(store = %store.describe(), "change refused: the stored runtime state was made on another start-up configuration");
                return Err(AttestError::RuntimeStateUnavailable(
                    "the stored runtime state was made by a replica on another start-up configuration (a rolling upgrade or rollback in progress) and differs from the state in force here; nothing was changed: retry once the rollout is complete".into(),
                ));
            }
            let (mut new, answer) = f(&base.effective, &base.signers)?;
            if new.same_changes(&base.effective) && !base.dropped {
                // Nothing to write (adding a present signer, ...): the latest state is read,
                // put it in force here.
                self.apply(base.doc, base.signers)?;
                rt.state = base.effective;
                rt.seen = Some(version);
                self.synced();
                return Ok(answer);
            }
            new.version = crate::runtime_state::FORMAT_VERSION;
            new.generation = base.effective.generation.saturating_add(1);
            new.based_on = (*self.based_on).clone();
            let data = new.to_json().map_err(read_failed)?;
            if data.len() > MAX_DOCUMENT_LEN {
                return Err(AttestError::ChangeTooLarge(format!(
                    "with this change the runtime state document would be {} bytes, more than the {MAX_DOCUMENT_LEN}-byte limit of the store; nothing was changed",
                    data.len()
                )));
            }
            match self.save_checked(store, &data, &version).await {
                Ok(saved) => {
                    self.put_in_force(&new)?;
                    rt.state = new;
                    rt.seen = Some(saved);
                    // The store was read and its latest state is now in force here.
                    self.synced();
                    return Ok(answer);
                }
                Err(StoreError::Conflict) => {
                    tracing::info!(store = %store.describe(), attempt, "runtime state changed meanwhile: retrying on the latest");
                }
                Err(e) => return Err(write_failed(e)),
            }
        }
        Err(AttestError::RuntimeStateUnavailable(format!(
            "concurrent changes: {CAS_ATTEMPTS} conflicting writes; nothing was changed"
        )))
    }

    fn put_in_force(&self, state: &RuntimeState) -> Result<(), AttestError> {
        let resolved = self.resolve(state).map_err(|e| {
            tracing::error!(error = %e, "a checked change does not resolve");
            AttestError::Internal
        })?;
        self.apply(resolved.doc, resolved.signers)
    }
}

/// The upper bound of a whole change (every read, write and retry): twice the store's
/// timeout of one read or write (20 s by default).
fn change_deadline(store: &RuntimeStore) -> Duration {
    store.timeout().saturating_mul(2)
}

/// The store could not be read before anything was written: nothing was changed.
fn read_failed(e: StoreError) -> AttestError {
    tracing::warn!(error = %e, "runtime state store failed: the change is not made");
    AttestError::RuntimeStateUnavailable(format!("{e}; nothing was changed"))
}

/// A write failed (other than a compare-and-swap conflict), and reading the store again did
/// not find it: it may still have been stored (and another writer may have written on top
/// since), so the answer cannot say "nothing was changed".
fn write_failed(e: StoreError) -> AttestError {
    tracing::warn!(error = %e, "runtime state write failed: the change is not in force here");
    AttestError::RuntimeStateUnavailable(format!(
        "{e}: the change is not in force here, and may or may not have been stored; check with GET and retry"
    ))
}

/// The body limit of policy and signer changes ([`MAX_MANAGEMENT_BODY_LEN`]).
fn management_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(MAX_MANAGEMENT_BODY_LEN)
}

/// The router (for `oneshot` tests and in-process serving).
pub fn router(state: AttestState) -> Router {
    let probes = state.probes.router();
    Router::new()
        .route(
            "/attest/SgxEnclave",
            post(attest_sgx).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_LEN)),
        )
        .route("/attest/OpenEnclave", post(attest_other))
        .route("/attest/TdxVm", post(attest_other))
        .route("/attest/SevSnpVm", post(attest_other))
        .route("/certs", get(certs))
        .route("/.well-known/openid-configuration", get(openid))
        .route(
            "/policies/SgxEnclave",
            get(get_policy).put(put_policy).layer(management_limit()),
        )
        .route(
            "/policies/SgxEnclave:reset",
            post(reset_policy).layer(management_limit()),
        )
        .route("/certificates", get(get_certificates))
        .route(
            "/certificates:add",
            post(add_certificate).layer(management_limit()),
        )
        .route(
            "/certificates:remove",
            post(remove_certificate).layer(management_limit()),
        )
        .route("/keys:rotate", post(rotate_key))
        .fallback(|| async {
            crate::json_error(StatusCode::NOT_FOUND, "NotFound", "no such endpoint")
        })
        .with_state(state)
        .merge(probes)
}

/// Serves plain HTTP on an already-bound listener until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AttestState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::server::serve(listener, router(state), None, shutdown).await
}

/// Serves HTTPS (rustls, aws-lc-rs; see [`crate::server`]) on an already-bound listener
/// until `shutdown` resolves.
pub async fn serve_tls_on(
    listener: tokio::net::TcpListener,
    state: AttestState,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::server::serve(listener, router(state), Some(tls), shutdown).await
}

/// MAA's request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttestRequest<'a> {
    /// Borrowed from the body where it has no JSON escapes (base64url never has).
    #[serde(borrow)]
    quote: std::borrow::Cow<'a, str>,
    #[serde(default)]
    runtime_data: Option<DataItem>,
    #[serde(default)]
    init_time_data: Option<DataItem>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    draft_policy_for_attestation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataItem {
    data: String,
    #[serde(default)]
    data_type: Option<String>,
}

impl DataItem {
    fn is_json(&self) -> bool {
        self.data_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("json"))
    }
}

/// Decodes base64url (padded or not); standard base64 is accepted too.
fn b64(field: &'static str, s: &str) -> Result<Vec<u8>, AttestError> {
    let t = s.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(t)
        .or_else(|_| STANDARD.decode(s.trim()))
        .map_err(|_| AttestError::InvalidBase64(field))
}

async fn attest_other() -> AttestError {
    AttestError::UnsupportedTee(
        "this service attests only SGX enclaves (POST /attest/SgxEnclave)".into(),
    )
}

/// `POST /attest/SgxEnclave` (any `api-version`: the request and response bodies are the
/// same in 2020-10-01, 2022-08-01 and 2025-06-01).
async fn attest_sgx(
    State(s): State<AttestState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let result = match body {
        Ok(body) => attest_inner(&s, &body).await,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(AttestError::PayloadTooLarge),
        Err(e) => Err(AttestError::InvalidRequest(e.body_text())),
    };
    match result {
        Ok(token) => {
            s.metrics.requests_ok.inc();
            token_response(&token)
        }
        Err(e) => {
            s.metrics
                .requests
                .get_or_create(&ResultLabel {
                    result: e.result_label(),
                })
                .inc();
            e.into_response()
        }
    }
}

/// `{"token": "<JWS>"}`. A compact JWS is base64url and dots only: nothing to escape.
fn token_response(token: &str) -> Response {
    let mut body = String::with_capacity(token.len().saturating_add(12));
    body.push_str(r#"{"token":""#);
    body.push_str(token);
    body.push_str(r#""}"#);
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// With a store: the policy and signers in force here are known and recent (see
/// [`AttestState::fresh`]), else 503 `RuntimeStateUnavailable`.
fn require_fresh(s: &AttestState) -> Result<(), AttestError> {
    if s.fresh() {
        return Ok(());
    }
    s.check_staleness();
    Err(AttestError::RuntimeStateUnavailable(
        if s.loaded.load(Ordering::Relaxed) {
            "runtime state store not read successfully for too long: the policy and signers in force may be outdated"
        } else {
            "runtime state store not read successfully since start-up: the policy and signers in force are not known yet"
        }
        .into(),
    ))
}

async fn attest_inner(s: &AttestState, body: &[u8]) -> Result<String, AttestError> {
    require_fresh(s)?;
    let req: AttestRequest<'_> =
        serde_json::from_slice(body).map_err(|e| AttestError::InvalidRequest(e.to_string()))?;
    let quote = b64("quote", &req.quote)?;
    if quote.len() > MAX_QUOTE_LEN {
        return Err(AttestError::MalformedQuote(format!(
            "malformed quote: {} bytes exceeds the {MAX_QUOTE_LEN}-byte limit",
            quote.len()
        )));
    }
    let runtime = req
        .runtime_data
        .as_ref()
        .map(|d| b64("runtimeData.data", &d.data))
        .transpose()?;
    let init = req
        .init_time_data
        .as_ref()
        .map(|d| b64("initTimeData.data", &d.data))
        .transpose()?;

    let loc = s.verifier.locate(&quote)?;
    let (bundle, hit) = s
        .collateral
        .get(&loc.fmspc, loc.ca)
        .await
        .map_err(|e| match e {
            FetchError::NotFound { .. } => {
                AttestError::CollateralNotFound(hex::encode_upper(loc.fmspc))
            }
            e => {
                tracing::warn!(error = %e, "collateral fetch failed");
                AttestError::CollateralUnavailable
            }
        })?;
    if hit {
        s.metrics.collateral_hit.inc();
    } else {
        s.metrics
            .collateral
            .get_or_create(&CacheLabel { outcome: "miss" })
            .inc();
    }
    let now = s.clock.now();
    let started = Instant::now();
    let verified = s.verifier.verify(&quote, &bundle, now);
    s.metrics
        .verify_seconds
        .observe(started.elapsed().as_secs_f64());
    let v = verified.inspect_err(|e| tracing::info!(error = %e, "quote rejected"))?;

    let sha = |d: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, d);
    if let Some(rt) = &runtime
        && sha(rt).as_ref() != v.report_data.get(..32).unwrap_or_default()
    {
        return Err(AttestError::RuntimeDataMismatch);
    }
    if let Some(it) = &init
        && sha(it).as_ref() != v.config_id.get(..32).unwrap_or_default()
    {
        return Err(AttestError::InitTimeDataMismatch);
    }

    // One snapshot of the policy and its hash: the token names the policy that judged it.
    let (policy, hash) = match &req.draft_policy_for_attestation {
        Some(text) => (
            Arc::new(
                AnyPolicy::parse(text).map_err(|e| AttestError::InvalidRequest(e.to_string()))?,
            ),
            policy_hash(text),
        ),
        None => {
            let doc = s.policy.read().map_err(|_| AttestError::Internal)?;
            (doc.policy.clone(), doc.hash.clone())
        }
    };
    let mut claims = build_claims(
        s,
        &quote,
        &bundle,
        &v,
        &req,
        runtime.as_deref(),
        init.as_deref(),
        now,
        &hash,
    );
    policy.apply(&mut claims)?;
    if req.draft_policy_for_attestation.is_some() {
        // MAA: the token of a draft policy "cannot be validated": it is not signed, and it
        // names the draft it was evaluated against.
        claims["x-ms-policy-draft"] = json!(true);
        return unsecured_jwt(&claims);
    }
    let jku = format!("{}/certs", s.config.issuer.trim_end_matches('/'));
    s.keys.sign(&claims, Some(&jku)).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        AttestError::Internal
    })
}

/// EAR status of a verification result.
#[must_use]
pub fn ear_status(v: &VerifiedQuote) -> &'static str {
    if v.debug || v.tcb_status == "Revoked" {
        "contraindicated"
    } else if v.tcb_status == "UpToDate" {
        "affirming"
    } else {
        "warning"
    }
}

#[allow(clippy::too_many_arguments)]
fn build_claims(
    s: &AttestState,
    quote: &[u8],
    prepared: &crate::collateral::PreparedCollateral,
    v: &VerifiedQuote,
    req: &AttestRequest<'_>,
    runtime: Option<&[u8]>,
    init: Option<&[u8]>,
    now: i64,
    policy_hash: &str,
) -> Value {
    let h = |d: &[u8]| hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, d));
    let ttl = i64::try_from(s.config.token_ttl.as_secs()).unwrap_or(i64::MAX);
    let mut jti = [0u8; 32];
    let _ = aws_lc_rs::rand::fill(&mut jti);
    let mut c = json!({
        "iss": s.config.issuer,
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(ttl),
        "jti": hex::encode(jti),
        "x-ms-ver": "1.0",
        "x-ms-attestation-type": "sgx",
        "x-ms-policy-hash": policy_hash,
        "x-ms-sgx-is-debuggable": v.debug,
        "x-ms-sgx-mrenclave": hex::encode(v.mr_enclave),
        "x-ms-sgx-mrsigner": hex::encode(v.mr_signer),
        "x-ms-sgx-product-id": v.isv_prod_id,
        "x-ms-sgx-svn": v.isv_svn,
        "x-ms-sgx-report-data": hex::encode(v.report_data),
        "x-ms-sgx-config-id": hex::encode(v.config_id),
        "x-confcom-fmspc": hex::encode_upper(v.fmspc),
        "x-confcom-collateral-valid-until": v.valid_until,
        CLAIM_TCB_STATUS: v.tcb_status,
        CLAIM_ADVISORY_IDS: v.advisory_ids,
        CLAIM_EAR_STATUS: ear_status(v),
        // Deprecated MAA aliases, still emitted by MAA.
        "is-debuggable": v.debug,
        "sgx-mrenclave": hex::encode(v.mr_enclave),
        "sgx-mrsigner": hex::encode(v.mr_signer),
        "product-id": v.isv_prod_id,
        "svn": v.isv_svn,
        "tee": "sgx",
    });
    let mut coll = prepared.hashes.clone();
    coll.insert("quotehash".into(), json!(h(quote)));
    c["x-ms-sgx-collateral"] = Value::Object(coll);
    if let Some(n) = &req.nonce {
        c["nonce"] = json!(n);
    }
    if let (Some(rt), Some(item)) = (runtime, &req.runtime_data) {
        if item.is_json() {
            if let Ok(j) = serde_json::from_slice::<Value>(rt) {
                c["x-ms-runtime"] = j;
            }
        } else {
            c["x-ms-sgx-ehd"] = json!(URL_SAFE_NO_PAD.encode(rt));
            c["maa-ehd"] = c["x-ms-sgx-ehd"].clone();
        }
    }
    if let (Some(it), Some(item)) = (init, &req.init_time_data)
        && item.is_json()
        && let Ok(j) = serde_json::from_slice::<Value>(it)
    {
        c["x-ms-inittime"] = j;
    }
    c
}

async fn certs(State(s): State<AttestState>) -> Response {
    axum::Json(s.keys.jwks()).into_response()
}

async fn openid(State(s): State<AttestState>) -> Response {
    let base = s.config.issuer.trim_end_matches('/');
    axum::Json(json!({
        "issuer": s.config.issuer,
        "jwks_uri": format!("{base}/certs"),
        "id_token_signing_alg_values_supported": ["ES256"],
        "response_types_supported": ["token", "none"],
        "revocation_endpoint": format!("{base}/revocations"),
        "claims_supported": [
            "iss", "iat", "nbf", "exp", "jti", "nonce", "x-ms-ver", "x-ms-attestation-type",
            "x-ms-policy-hash", "x-ms-sgx-is-debuggable", "x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner",
            "x-ms-sgx-product-id", "x-ms-sgx-svn", "x-ms-sgx-report-data", "x-ms-sgx-config-id",
            "x-ms-sgx-ehd", "x-ms-sgx-collateral", "x-ms-runtime", "x-ms-inittime",
            CLAIM_TCB_STATUS, CLAIM_ADVISORY_IDS, CLAIM_EAR_STATUS,
        ],
    }))
    .into_response()
}

fn check_admin(s: &AttestState, headers: &HeaderMap) -> Result<(), AttestError> {
    let Some(expected) = &s.config.admin_token else {
        return Err(AttestError::NotConfigured(
            "policy management is disabled (no admin token configured)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Constant-time comparison of digests.
    let d = |x: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, x.as_bytes());
    if aws_lc_rs::constant_time::verify_slices_are_equal(d(given).as_ref(), d(expected).as_ref())
        .is_ok()
    {
        Ok(())
    } else {
        Err(AttestError::Unauthorized)
    }
}

/// `GET /policies/SgxEnclave`: the policy in force (admin token; with a store, 503
/// `RuntimeStateUnavailable` until it was read and while it is stale).
async fn get_policy(State(s): State<AttestState>, headers: HeaderMap) -> Response {
    if let Err(e) = check_admin(&s, &headers).and_then(|()| require_fresh(&s)) {
        return e.into_response();
    }
    let doc = match s.policy.read() {
        Ok(d) => d.clone(),
        Err(_) => return AttestError::Internal.into_response(),
    };
    let token = doc.stored_policy_jws().and_then(|stored| {
        let mut claims = json!({ "x-ms-policy": stored });
        if let Some(cert) = &doc.signer_certificate {
            claims["x-ms-policy-signer"] = policy_jws::certificate_jwk(cert);
        }
        sign_claims(&s, claims)
    });
    let token = match token {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let d = &doc;
    axum::Json(json!({
        // MAA's PolicyResponse: a token whose `x-ms-policy` claim is the stored policy.
        "token": token,
        "policy": d.text,
        "x-ms-policy-hash": d.hash,
        "x-confcom-policy-form": d.form_name(),
        "x-confcom-policy-signer": d.signer,
        "x-confcom-policy-language": d.policy.language(),
        // The declarative form as understood; MAA claim rules have no other form than
        // their text.
        "parsed": match &*d.policy {
            AnyPolicy::Declarative(p) => serde_json::to_value(p).unwrap_or(Value::Null),
            AnyPolicy::Maa(_) => Value::Null,
        },
    }))
    .into_response()
}

/// A request body, or why axum refused it (over the route's limit: 413).
type BodyResult = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// The body of a policy or signer change: at most [`MAX_MANAGEMENT_BODY_LEN`] bytes (the
/// route's limit), else 413 with a JSON error.
fn management_body(body: BodyResult) -> Result<Bytes, AttestError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AttestError::ChangeTooLarge(format!(
                "request body exceeds the {MAX_MANAGEMENT_BODY_LEN}-byte limit of policy and signer changes (what the runtime state store can hold); nothing was changed"
            ))
        } else {
            AttestError::InvalidRequest(e.body_text())
        }
    })
}

/// `PUT /policies/SgxEnclave`: plain YAML/JSON, or MAA's JWS form (unsigned or signed; see
/// [`crate::policy_jws`]). The admin token is checked first.
async fn put_policy(
    State(s): State<AttestState>,
    headers: HeaderMap,
    body: BodyResult,
) -> Response {
    match put_policy_inner(&s, &headers, body).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => refused(e, "policy update"),
    }
}

async fn put_policy_inner(
    s: &AttestState,
    headers: &HeaderMap,
    body: BodyResult,
) -> Result<Value, AttestError> {
    check_admin(s, headers)?;
    let body = management_body(body)?;
    let body = &body[..];
    // Checked against the latest signer set, inside the change: a signer removed meanwhile
    // (by any replica) cannot still install a policy. Logged once in force.
    let answer = s
        .change(|base, signers| {
            let decoded = policy_jws::decode(body, signers)?;
            let token_hash = decoded.token_hash();
            let doc =
                PolicyDoc::new(decoded).map_err(|e| AttestError::InvalidRequest(e.to_string()))?;
            let answer = policy_answer(
                s,
                &doc,
                "Updated",
                Some(token_hash),
                doc.signer_certificate.as_deref(),
            )?;
            let mut new = base.clone();
            new.policy = Some(StoredPolicy {
                body: doc.jws.clone().unwrap_or_else(|| doc.text.clone()),
                hash: doc.hash.clone(),
                // Verified against the signers after the stored changes.
                signer_ops: base.signer_ops.len(),
            });
            Ok((new, answer))
        })
        .await?;
    tracing::info!(hash = %answer["x-ms-policy-hash"], "attestation policy replaced");
    Ok(answer)
}

/// MAA's `PolicyResult` (`result`, the token hash if any, the signer of the request if
/// signed) in a signed token, next to confcom's fields about `doc`, the policy put in force.
fn policy_answer(
    s: &AttestState,
    doc: &PolicyDoc,
    result: &'static str,
    token_hash: Option<String>,
    request_signer: Option<&[u8]>,
) -> Result<Value, AttestError> {
    let mut claims = json!({ "x-ms-policy-result": result });
    if let Some(h) = &token_hash {
        claims["x-ms-policy-token-hash"] = json!(h);
    }
    if let Some(cert) = request_signer {
        claims["x-ms-policy-signer"] = policy_jws::certificate_jwk(cert);
    }
    let mut answer = json!({
        "token": sign_claims(s, claims)?,
        "x-ms-policy-hash": doc.hash,
        "x-ms-policy-result": result,
        "x-confcom-policy-form": doc.form_name(),
        "x-confcom-policy-signer": doc.signer,
        "x-confcom-policy-language": doc.policy.language(),
    });
    if let Some(h) = token_hash {
        answer["x-ms-policy-token-hash"] = json!(h);
    }
    Ok(answer)
}

/// `POST /policies/SgxEnclave:reset`: MAA's JWS with an empty policy document, unsigned or
/// signed under the same rules as a `PUT` body, puts the start-up policy back. The admin token
/// is checked first.
async fn reset_policy(
    State(s): State<AttestState>,
    headers: HeaderMap,
    body: BodyResult,
) -> Response {
    match reset_policy_inner(&s, &headers, body).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => refused(e, "policy reset"),
    }
}

async fn reset_policy_inner(
    s: &AttestState,
    headers: &HeaderMap,
    body: BodyResult,
) -> Result<Value, AttestError> {
    check_admin(s, headers)?;
    let body = management_body(body)?;
    let body = &body[..];
    let (answer, signer) = s
        .change(|base, signers| {
            let req = policy_jws::decode_reset(body, signers)?;
            // MAA's PolicyResult for a reset carries no `x-ms-policy-token-hash` (Azure's SDK
            // tests expect none).
            let answer = policy_answer(
                s,
                &s.default_policy,
                "Removed",
                None,
                req.signer_certificate.as_deref(),
            )?;
            let mut new = base.clone();
            new.policy = None;
            Ok((new, (answer, req.signer)))
        })
        .await?;
    tracing::info!(signer = ?signer, "attestation policy reset to the start-up policy");
    Ok(answer)
}

/// `POST /keys:rotate`: a new signing key, the old one kept in the JWKS. Only for a key this
/// server owns alone: refused (409) for a key managed outside it (read-only) and when
/// replicas share state (a ConfigMap runtime state store), where the key files are rotated
/// instead; also (409) when the key file no longer holds the key in force.
async fn rotate_key(State(s): State<AttestState>, headers: HeaderMap) -> Response {
    match rotate_key_inner(&s, &headers).await {
        Ok(kid) => axum::Json(json!({ "kid": kid })).into_response(),
        Err(e) => {
            if !matches!(e, AttestError::KeyRotationFailed(_)) {
                tracing::info!(error = %e, "key rotation refused");
            }
            e.into_response()
        }
    }
}

async fn rotate_key_inner(s: &AttestState, headers: &HeaderMap) -> Result<String, AttestError> {
    check_admin(s, headers)?;
    if s.keys.is_read_only() {
        return Err(AttestError::KeyRotationManagedExternally);
    }
    if s.config
        .runtime_store
        .as_ref()
        .is_some_and(RuntimeStore::is_shared_by_replicas)
    {
        return Err(AttestError::KeyRotationNotShared);
    }
    let previous = s.keys.kid();
    let keys = s.keys.clone();
    // The file I/O off the async workers.
    let rotated = tokio::task::spawn_blocking(move || keys.rotate())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "key rotation task failed");
            AttestError::Internal
        })?;
    let kid = rotated.map_err(|e| {
        if matches!(e, crate::token::Error::KeyFileChanged { .. }) {
            tracing::warn!(error = %e, "key rotation refused");
            return AttestError::KeyFileChanged;
        }
        let path = s.keys.path().map(|p| p.display().to_string());
        tracing::error!(error = %e, source = ?std::error::Error::source(&e), ?path, "key rotation failed");
        AttestError::KeyRotationFailed(rotation_failure_class(&e))
    })?;
    tracing::info!(%previous, %kid, "token signing key rotated");
    Ok(kid)
}

/// The cause class of a failed rotation, for the client (the details are logged).
fn rotation_failure_class(e: &crate::token::Error) -> &'static str {
    use std::io::ErrorKind;
    match e.io_kind() {
        None => "the new key could not be made",
        Some(ErrorKind::ReadOnlyFilesystem) => {
            "the key file is on a read-only file system (a mounted Secret? start with --signing-key-read-only and rotate by updating the key file)"
        }
        Some(ErrorKind::PermissionDenied) => "permission denied on the key file or its directory",
        Some(ErrorKind::StorageFull | ErrorKind::QuotaExceeded) => "no space left for the key file",
        Some(ErrorKind::NotFound) => "the key file or its directory is missing",
        Some(_) => "a file system error on the key file",
    }
}

/// Signs the body of a policy management certificates response as MAA does: the claims plus
/// `iss`, `iat`, `nbf`, `exp`, with the token key, returned as `{"token": "<JWT>"}`.
fn certificates_token(s: &AttestState, claims: Value) -> Result<Response, AttestError> {
    Ok(token_response(&sign_claims(s, claims)?))
}

/// `claims` plus `iss`, `iat`, `nbf`, `exp`, signed with the token key (`jku`: `/certs`).
fn sign_claims(s: &AttestState, mut claims: Value) -> Result<String, AttestError> {
    let now = s.clock.now();
    let ttl = i64::try_from(s.config.token_ttl.as_secs()).unwrap_or(i64::MAX);
    claims["iss"] = json!(s.config.issuer);
    claims["iat"] = json!(now);
    claims["nbf"] = json!(now);
    claims["exp"] = json!(now.saturating_add(ttl));
    let jku = format!("{}/certs", s.config.issuer.trim_end_matches('/'));
    s.keys.sign(&claims, Some(&jku)).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        AttestError::Internal
    })
}

/// `GET /certificates`: the current policy signer certificates, as MAA's
/// `x-ms-policy-certificates` JWKS in a token (empty when not in isolated mode, as MAA answers
/// for AAD-mode instances). Admin token, like `GET /policies/SgxEnclave`; with a store, 503
/// `RuntimeStateUnavailable` until it was read and while it is stale.
async fn get_certificates(State(s): State<AttestState>, headers: HeaderMap) -> Response {
    let result = check_admin(&s, &headers).and_then(|()| {
        require_fresh(&s)?;
        let jwks = s.signers.read().map_err(|_| AttestError::Internal)?.jwks();
        certificates_token(&s, json!({ "x-ms-policy-certificates": jwks }))
    });
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /certificates:add`: a JWS signed by a current policy signer whose payload names the
/// certificate to add. Admin token first, like `PUT /policies/SgxEnclave`.
async fn add_certificate(
    State(s): State<AttestState>,
    headers: HeaderMap,
    body: BodyResult,
) -> Response {
    change_certificate(&s, &headers, body, SignerOpKind::Add).await
}

/// `POST /certificates:remove`: as `:add`, for the certificate to remove; the last one stays.
async fn remove_certificate(
    State(s): State<AttestState>,
    headers: HeaderMap,
    body: BodyResult,
) -> Response {
    change_certificate(&s, &headers, body, SignerOpKind::Remove).await
}

async fn change_certificate(
    s: &AttestState,
    headers: &HeaderMap,
    body: BodyResult,
    change: SignerOpKind,
) -> Response {
    change_certificate_inner(s, headers, body, change)
        .await
        .unwrap_or_else(|e| refused(e, "policy signer certificate change"))
}

/// The answer to a refused management request (`what`), logged at info.
fn refused(e: AttestError, what: &str) -> Response {
    tracing::info!(error = %e, "{what} refused");
    e.into_response()
}

async fn change_certificate_inner(
    s: &AttestState,
    headers: &HeaderMap,
    body: BodyResult,
    change: SignerOpKind,
) -> Result<Response, AttestError> {
    check_admin(s, headers)?;
    let body = management_body(body)?;
    let body = &body[..];
    if s.config.policy_signers.is_empty() {
        return Err(AttestError::NotIsolated);
    }
    // Checked against the latest signer set, inside the change: a signer removed meanwhile
    // (by any replica) cannot still sign.
    let (response, changed) = s
        .change(|base, current| {
            let req = policy_jws::decode_certificate_request(body, current)?;
            let thumbprint = policy_jws::sha1_thumbprint(&req.certificate);
            let present = current.contains(&req.certificate);
            let (result, changed) = match change {
                SignerOpKind::Add => ("IsPresent", !present),
                SignerOpKind::Remove => {
                    if present && current.len() <= 1 {
                        return Err(AttestError::LastPolicySigner(thumbprint));
                    }
                    ("IsAbsent", present)
                }
            };
            let answer = certificates_token(
                s,
                json!({
                    "x-ms-certificate-thumbprint": &thumbprint,
                    "x-ms-policycertificates-result": result,
                }),
            )?;
            let mut new = base.clone();
            if changed {
                if base.signer_ops.len() >= MAX_SIGNER_OPS {
                    return Err(AttestError::SignerHistoryFull);
                }
                // The request as received: replayed from the start-up signers at every load.
                new.signer_ops.push(SignerOp {
                    op: change,
                    jws: req.jws,
                });
            }
            Ok((new, (answer, changed.then_some((thumbprint, req.signer)))))
        })
        .await?;
    if let Some((certificate, signer)) = changed {
        let action = match change {
            SignerOpKind::Add => "added",
            SignerOpKind::Remove => "removed",
        };
        tracing::info!(%certificate, %signer, action, "policy signer certificate changed");
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_rotation_names_its_cause_class() {
        use std::io::{Error as IoError, ErrorKind};
        let io = |kind| crate::token::Error::Io {
            path: "/etc/confcom/signing/key.pem".into(),
            source: IoError::from(kind),
        };
        let class = rotation_failure_class(&io(ErrorKind::ReadOnlyFilesystem));
        assert!(
            class.contains("read-only file system") && class.contains("--signing-key-read-only"),
            "{class}"
        );
        assert!(
            rotation_failure_class(&io(ErrorKind::PermissionDenied)).contains("permission denied")
        );
        assert!(rotation_failure_class(&io(ErrorKind::StorageFull)).contains("no space"));
        assert!(rotation_failure_class(&io(ErrorKind::Other)).contains("file system error"));
        assert!(
            rotation_failure_class(&crate::token::Error::Generate).contains("could not be made")
        );
        let e = AttestError::KeyRotationFailed(rotation_failure_class(&io(
            ErrorKind::ReadOnlyFilesystem,
        )));
        assert_eq!(
            e.code(),
            (StatusCode::INTERNAL_SERVER_ERROR, "KeyRotationFailed")
        );
        assert!(
            !e.to_string().contains("/etc/confcom"),
            "no paths to clients: {e}"
        );
    }
}

//! The attestation server: MAA's `POST /attest/SgxEnclave` returning an ES256 JWT with MAA's
//! SGX claims plus the TCB status, advisory IDs and EAR status; `GET /certs` (JWKS),
//! `GET /.well-known/openid-configuration`, `GET|PUT /policies/SgxEnclave` and
//! `POST /policies/SgxEnclave:reset` (admin token; answers carry MAA's `PolicyResult` token),
//! MAA's policy management certificates `GET /certificates`, `POST /certificates:add` and
//! `POST /certificates:remove` (admin token, then a JWS from a current policy signer),
//! `POST /keys:rotate` (admin token), and probes/metrics.

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
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{CollateralSource, FetchError};
use crate::clock::Clock;
use crate::policy::AnyPolicy;
use crate::policy_jws::{self, DecodedPolicy, Form, PolicySigners};
use crate::token::KeyRing;
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
    /// Endpoint not configured.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// Something failed inside the server (details are logged).
    #[error("internal error")]
    Internal,
}

impl AttestError {
    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "InvalidRequest"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
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
            Self::NotConfigured(_) => (StatusCode::NOT_FOUND, "NotConfigured"),
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
        };
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
    /// [`crate::policy_jws`]), and `POST /certificates:add|remove` change the current set (in
    /// memory: a restart returns to this set).
    pub policy_signers: PolicySigners,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            token_ttl: DEFAULT_TOKEN_TTL,
            admin_token: None,
            policy_signers: PolicySigners::none(),
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
}

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
        probes.set_ready(true);
        let startup = PolicyDoc::from_startup(policy_text, &config.policy_signers)?;
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
        .route("/policies/SgxEnclave", get(get_policy).put(put_policy))
        .route("/policies/SgxEnclave:reset", post(reset_policy))
        .route("/certificates", get(get_certificates))
        .route("/certificates:add", post(add_certificate))
        .route("/certificates:remove", post(remove_certificate))
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

async fn attest_inner(s: &AttestState, body: &[u8]) -> Result<String, AttestError> {
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

    let claims = build_claims(
        s,
        &quote,
        &bundle,
        &v,
        &req,
        runtime.as_deref(),
        init.as_deref(),
        now,
    );
    let policy = match &req.draft_policy_for_attestation {
        Some(text) => Arc::new(
            AnyPolicy::parse(text).map_err(|e| AttestError::InvalidRequest(e.to_string()))?,
        ),
        None => s
            .policy
            .read()
            .map_err(|_| AttestError::Internal)?
            .policy
            .clone(),
    };
    let mut claims = claims;
    policy.apply(&mut claims)?;
    if let Some(text) = &req.draft_policy_for_attestation {
        // MAA: the token of a draft policy "cannot be validated": it is not signed, and it
        // names the draft it was evaluated against.
        claims["x-ms-policy-hash"] = json!(policy_hash(text));
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
) -> Value {
    let h = |d: &[u8]| hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, d));
    let ttl = i64::try_from(s.config.token_ttl.as_secs()).unwrap_or(i64::MAX);
    let mut jti = [0u8; 32];
    let _ = aws_lc_rs::rand::fill(&mut jti);
    let policy_hash = s.policy.read().map(|d| d.hash.clone()).unwrap_or_default();
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

async fn get_policy(State(s): State<AttestState>, headers: HeaderMap) -> Response {
    if let Err(e) = check_admin(&s, &headers) {
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

/// `PUT /policies/SgxEnclave`: plain YAML/JSON, or MAA's JWS form (unsigned or signed; see
/// [`crate::policy_jws`]). The admin token is checked first.
async fn put_policy(State(s): State<AttestState>, headers: HeaderMap, body: Bytes) -> Response {
    match put_policy_inner(&s, &headers, &body) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => {
            tracing::info!(error = %e, "policy update refused");
            e.into_response()
        }
    }
}

fn put_policy_inner(
    s: &AttestState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, AttestError> {
    check_admin(s, headers)?;
    // The signer set stays read-locked until the policy is in place: a signer removed
    // meanwhile (`:remove` takes the write lock) cannot still install a policy. Lock order:
    // signers, then policy.
    let signers = s.signers.read().map_err(|_| AttestError::Internal)?;
    let decoded = policy_jws::decode(body, &signers)?;
    let token_hash = decoded.token_hash();
    let doc = PolicyDoc::new(decoded).map_err(|e| AttestError::InvalidRequest(e.to_string()))?;
    let request_signer = doc.signer_certificate.clone();
    let result = install_policy(
        s,
        doc,
        "Updated",
        Some(token_hash),
        request_signer.as_deref(),
    )?;
    drop(signers);
    Ok(result)
}

/// Puts `doc` in force and answers with MAA's `PolicyResult` (`result`, the token hash if
/// any, the signer of the request if signed) in a signed token, next to confcom's fields about
/// the policy now in force. The caller holds the signer set read-locked (lock order: signers,
/// then policy).
fn install_policy(
    s: &AttestState,
    doc: PolicyDoc,
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
    let mut g = s.policy.write().map_err(|_| AttestError::Internal)?;
    tracing::info!(hash = %doc.hash, form = doc.form_name(), signer = ?doc.signer, result, "attestation policy replaced");
    *g = doc;
    Ok(answer)
}

/// `POST /policies/SgxEnclave:reset`: MAA's JWS with an empty policy document, unsigned or
/// signed under the same rules as a `PUT` body, puts the start-up policy back. The admin token
/// is checked first.
async fn reset_policy(State(s): State<AttestState>, headers: HeaderMap, body: Bytes) -> Response {
    match reset_policy_inner(&s, &headers, &body) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => {
            tracing::info!(error = %e, "policy reset refused");
            e.into_response()
        }
    }
}

fn reset_policy_inner(
    s: &AttestState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, AttestError> {
    check_admin(s, headers)?;
    // As in `put_policy_inner`: signers read-locked until the policy is in place.
    let signers = s.signers.read().map_err(|_| AttestError::Internal)?;
    let req = policy_jws::decode_reset(body, &signers)?;
    tracing::info!(signer = ?req.signer, "attestation policy reset to the start-up policy");
    // MAA's PolicyResult for a reset carries no `x-ms-policy-token-hash` (Azure's SDK tests
    // expect none).
    let result = install_policy(
        s,
        (*s.default_policy).clone(),
        "Removed",
        None,
        req.signer_certificate.as_deref(),
    )?;
    drop(signers);
    Ok(result)
}

async fn rotate_key(State(s): State<AttestState>, headers: HeaderMap) -> Response {
    if let Err(e) = check_admin(&s, &headers) {
        return e.into_response();
    }
    match s.keys.rotate() {
        Ok(kid) => axum::Json(json!({ "kid": kid })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "key rotation failed");
            AttestError::Internal.into_response()
        }
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
/// for AAD-mode instances). Admin token, like `GET /policies/SgxEnclave`.
async fn get_certificates(State(s): State<AttestState>, headers: HeaderMap) -> Response {
    let result = check_admin(&s, &headers).and_then(|()| {
        let jwks = s.signers.read().map_err(|_| AttestError::Internal)?.jwks();
        certificates_token(&s, json!({ "x-ms-policy-certificates": jwks }))
    });
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CertificateChange {
    Add,
    Remove,
}

/// `POST /certificates:add`: a JWS signed by a current policy signer whose payload names the
/// certificate to add. Admin token first, like `PUT /policies/SgxEnclave`.
async fn add_certificate(
    State(s): State<AttestState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change_certificate(&s, &headers, &body, CertificateChange::Add)
}

/// `POST /certificates:remove`: as `:add`, for the certificate to remove; the last one stays.
async fn remove_certificate(
    State(s): State<AttestState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change_certificate(&s, &headers, &body, CertificateChange::Remove)
}

fn change_certificate(
    s: &AttestState,
    headers: &HeaderMap,
    body: &[u8],
    change: CertificateChange,
) -> Response {
    match change_certificate_inner(s, headers, body, change) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, "policy signer certificate change refused");
            e.into_response()
        }
    }
}

fn change_certificate_inner(
    s: &AttestState,
    headers: &HeaderMap,
    body: &[u8],
    change: CertificateChange,
) -> Result<Response, AttestError> {
    check_admin(s, headers)?;
    if s.config.policy_signers.is_empty() {
        return Err(AttestError::NotIsolated);
    }
    let (thumbprint, result) = {
        // One write lock for the check and the change: a signer removed meanwhile cannot
        // still sign.
        let mut signers = s.signers.write().map_err(|_| AttestError::Internal)?;
        let req = policy_jws::decode_certificate_request(body, &signers)?;
        let thumbprint = policy_jws::sha1_thumbprint(&req.certificate);
        let result = match change {
            CertificateChange::Add => {
                if signers.insert(req.certificate) {
                    tracing::info!(certificate = %thumbprint, signer = %req.signer, "policy signer certificate added");
                }
                "IsPresent"
            }
            CertificateChange::Remove => {
                if signers.contains(&req.certificate) {
                    if signers.len() <= 1 {
                        return Err(AttestError::LastPolicySigner(thumbprint));
                    }
                    signers.remove(&req.certificate);
                    tracing::info!(certificate = %thumbprint, signer = %req.signer, "policy signer certificate removed");
                }
                "IsAbsent"
            }
        };
        (thumbprint, result)
    };
    certificates_token(
        s,
        json!({
            "x-ms-certificate-thumbprint": thumbprint,
            "x-ms-policycertificates-result": result,
        }),
    )
}

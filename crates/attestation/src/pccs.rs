//! PCCS-compatible collateral service: Intel PCS/PCCS v3 and v4 routes
//! (`/sgx/certification/v4/{tcb,qe/identity,qve/identity,pckcrl,rootcacrl,crl,pckcert}`) served
//! from the embedded [`Store`], filled lazily from an upstream PCS/PCCS or by offline import.
//! The offline import takes collateral (dcap-qvl JSON, PCS response directories) and PCK
//! certificates from quotes with certification data type 5 ([`pck_cert_from_quote`]), which
//! `pckcert` then serves for the quote's platform whatever the `encrypted_ppid`.
//!
//! Freshness: an entry is *fresh* until `nextUpdate - refresh_margin`, *stale* until
//! `nextUpdate` (refreshed from upstream when possible, else served with a `Warning`
//! header), then *expired* (503 unless upstream refreshes it). An upstream that is down
//! never removes anything from the store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::clock::Clock;
use crate::collateral::{
    CaType, CollateralBundle, ENCLAVE_IDENTITY_ISSUER_CHAIN, PCK_CERT_ISSUER_CHAIN,
    PCK_CRL_ISSUER_CHAIN, SGX_TCB_INFO_ISSUER_CHAIN, TCB_INFO_ISSUER_CHAIN, crl_info, decode_crl,
    encode_chain_header, signed_info,
};
use crate::store::{CT_CRL, CT_JSON, CT_PEM, Entry, Store, key};

/// How the cache is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Fetch from the upstream on a miss and refresh before `nextUpdate`.
    Lazy,
    /// Serve only what was imported.
    Offline,
}

/// Configuration of the PCCS.
#[derive(Debug, Clone)]
pub struct Config {
    /// Fill mode.
    pub mode: Mode,
    /// Upstream base URL ending in `/sgx/certification/v4` (LAZY mode).
    pub upstream: Option<String>,
    /// Where to fetch the root CA CRL if the upstream has no `rootcacrl` (Intel PCS has none).
    pub root_crl_url: Option<String>,
    /// Refresh this long before `nextUpdate`.
    pub refresh_margin: Duration,
    /// Timeout of one upstream request.
    pub upstream_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Offline,
            upstream: None,
            root_crl_url: Some(
                "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der".into(),
            ),
            refresh_margin: Duration::from_secs(24 * 3600),
            upstream_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Metrics of the PCCS.
#[derive(Clone, Default)]
struct Metrics {
    requests: Family<ResultLabel, Counter>,
    upstream_failures: Counter,
}

/// Shared state of the PCCS.
#[derive(Clone)]
pub struct PccsState {
    store: Arc<Store>,
    config: Arc<Config>,
    clock: Clock,
    http: reqwest::Client,
    metrics: Metrics,
    probes: confcom_runtime::Probes,
    /// Last failed upstream attempt per key: while the upstream is down, requests do not
    /// each wait for its timeout.
    failed: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

/// After a failed upstream fetch, requests for that key skip the upstream this long.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

impl PccsState {
    /// Builds the state around an opened store.
    pub fn new(store: Store, config: Config, clock: Clock) -> Result<Self, reqwest::Error> {
        let http = crate::http_client(config.upstream_timeout)?;
        let metrics = Metrics::default();
        let mut registry = Registry::with_prefix("confcom_pccs");
        registry.register(
            "requests",
            "PCS requests by result (hit, stale, fetched, miss, expired, error)",
            metrics.requests.clone(),
        );
        registry.register(
            "upstream_failures",
            "failed upstream fetches",
            metrics.upstream_failures.clone(),
        );
        let probes = confcom_runtime::Probes::new(registry);
        probes.set_ready(true);
        Ok(Self {
            store: Arc::new(store),
            config: Arc::new(config),
            clock,
            http,
            metrics,
            probes,
            failed: Arc::default(),
        })
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn count(&self, result: &'static str) {
        self.metrics
            .requests
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}

/// API version of a route prefix (only the TCB info chain header differs).
#[derive(Debug, Clone, Copy)]
enum Api {
    V3,
    V4,
}

/// The PCCS router: PCS routes under `/sgx/certification/v3` and `/v4`, plus probes.
pub fn router(state: PccsState) -> Router {
    let mut r = Router::new();
    for (prefix, api) in [
        ("/sgx/certification/v4", Api::V4),
        ("/sgx/certification/v3", Api::V3),
    ] {
        r = r
            .route(&format!("{prefix}/tcb"), get(move |s, q| tcb(s, q, api)))
            .route(
                &format!("{prefix}/qe/identity"),
                get(|s: State<PccsState>| identity(s, key::QE_IDENTITY, "qe/identity")),
            )
            .route(
                &format!("{prefix}/qve/identity"),
                get(|s: State<PccsState>| identity(s, key::QVE_IDENTITY, "qve/identity")),
            )
            .route(&format!("{prefix}/pckcrl"), get(pckcrl))
            .route(&format!("{prefix}/rootcacrl"), get(rootcacrl))
            .route(&format!("{prefix}/crl"), get(crl_by_uri))
            .route(&format!("{prefix}/pckcert"), get(pckcert));
    }
    let probes = state.probes.router();
    r.with_state(state).merge(probes)
}

/// Serves the PCCS over plain HTTP on an already-bound listener until `shutdown` resolves;
/// refreshes entries before their `nextUpdate` in LAZY mode.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: PccsState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, None, shutdown).await
}

/// Serves the PCCS over HTTPS (rustls, aws-lc-rs; see [`crate::server`]), as QCNL's
/// `pccs_url = "https://…"` expects; otherwise as [`serve_on`].
pub async fn serve_tls_on(
    listener: tokio::net::TcpListener,
    state: PccsState,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Some(tls), shutdown).await
}

/// Serves HTTP (`tls` = `None`) or HTTPS, with the LAZY-mode refresher alongside.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: PccsState,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let refresher = (state.config.mode == Mode::Lazy).then(|| {
        let s = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tick.tick().await;
                refresh_due(&s).await;
            }
        })
    });
    let result = crate::server::serve(listener, router(state), tls, shutdown).await;
    if let Some(h) = refresher {
        h.abort();
    }
    result
}

/// One refresh step: re-fetches every entry inside its refresh margin. Returns how many
/// entries were refreshed. Failures keep the old entry.
pub async fn refresh_due(state: &PccsState) -> usize {
    let Ok(list) = state.store.list() else {
        return 0;
    };
    let now = state.clock.now();
    let margin = i64::try_from(state.config.refresh_margin.as_secs()).unwrap_or(i64::MAX);
    let mut n = 0;
    for (k, next) in list {
        if now < next.saturating_sub(margin) {
            continue;
        }
        if let Some(req) = upstream_request_for_key(&k)
            && fetch_and_store(state, &k, &req).await.is_ok()
        {
            n += 1;
        }
    }
    n
}

/// What to ask the upstream for a store key.
fn upstream_request_for_key(k: &str) -> Option<UpstreamReq> {
    if let Some(fmspc) = k.strip_prefix("sgx/tcb/") {
        return Some(UpstreamReq::Tcb(fmspc.to_owned()));
    }
    if let Some(ca) = crate::store::ca_of_key(k) {
        return Some(UpstreamReq::PckCrl(ca));
    }
    match k {
        key::QE_IDENTITY => Some(UpstreamReq::Identity("qe/identity")),
        key::QVE_IDENTITY => Some(UpstreamReq::Identity("qve/identity")),
        key::ROOT_CA_CRL => Some(UpstreamReq::RootCrl),
        _ => k
            .strip_prefix("sgx/pckcert/")
            .map(|q| UpstreamReq::PckCert(q.to_owned())),
    }
}

#[derive(Debug, Clone)]
enum UpstreamReq {
    Tcb(String),
    Identity(&'static str),
    PckCrl(CaType),
    RootCrl,
    PckCert(String),
}

/// Errors of the PCCS (returned to clients as JSON with a safe message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad query.
    #[error("invalid request: {0}")]
    BadRequest(&'static str),
    /// Not cached, and no upstream to ask (or upstream says 404).
    #[error("no cached data for this request")]
    NotFound,
    /// Cached data expired and the upstream could not refresh it.
    #[error("cached collateral expired at {next_update} and the upstream is unavailable")]
    Expired {
        /// When it expired.
        next_update: i64,
    },
    /// Upstream unavailable on a miss.
    #[error("upstream unavailable")]
    Upstream,
    /// Store failure.
    #[error("store failure")]
    Store(#[from] crate::store::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "InvalidRequest"),
            Self::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
            Self::Expired { .. } => (StatusCode::SERVICE_UNAVAILABLE, "CollateralExpired"),
            Self::Upstream => (StatusCode::SERVICE_UNAVAILABLE, "UpstreamUnavailable"),
            Self::Store(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(e), "pccs store failure");
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
            }
        };
        crate::json_error(status, code, &self.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("upstream has no such resource")]
    NotFound,
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    #[error("upstream response unusable: {0}")]
    Bad(String),
}

/// Looks a key up, fetching/refreshing from upstream as the mode and dates require.
async fn lookup(
    state: &PccsState,
    k: &str,
    req: UpstreamReq,
) -> Result<(Entry, Option<String>), Error> {
    let now = state.clock.now();
    let margin = i64::try_from(state.config.refresh_margin.as_secs()).unwrap_or(i64::MAX);
    let cached = state.store.get(k)?;
    let recently_failed = state
        .failed
        .lock()
        .ok()
        .and_then(|m| m.get(k).map(|t| t.elapsed() < RETRY_AFTER_FAILURE))
        .unwrap_or(false);
    let lazy = state.config.mode == Mode::Lazy && state.config.upstream.is_some();
    let try_upstream = lazy && !recently_failed;
    match cached {
        Some(e) if now < e.next_update.saturating_sub(margin) => {
            state.count("hit");
            Ok((e, None))
        }
        Some(e) => {
            if try_upstream {
                match fetch_and_store(state, k, &req).await {
                    Ok(fresh) if now < fresh.next_update => {
                        state.count("fetched");
                        return Ok((fresh, None));
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(key = k, error = %err, "upstream refresh failed"),
                }
            }
            if now < e.next_update {
                state.count("stale");
                let why = if lazy {
                    "upstream unavailable"
                } else {
                    "offline mode"
                };
                let warning = format!(
                    "110 - \"Response is Stale: refresh due before nextUpdate {}, {why}\"",
                    fmt_time(e.next_update)
                );
                Ok((e, Some(warning)))
            } else {
                state.count("expired");
                Err(Error::Expired {
                    next_update: e.next_update,
                })
            }
        }
        None if try_upstream => match fetch_and_store(state, k, &req).await {
            Ok(e) => {
                state.count("fetched");
                Ok((e, None))
            }
            Err(FetchError::NotFound) => {
                state.count("miss");
                Err(Error::NotFound)
            }
            Err(err) => {
                tracing::warn!(key = k, error = %err, "upstream fetch failed on a miss");
                state.count("error");
                Err(Error::Upstream)
            }
        },
        None if lazy => {
            state.count("error");
            Err(Error::Upstream)
        }
        None => {
            state.count("miss");
            Err(Error::NotFound)
        }
    }
}

fn fmt_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Fetches one resource from upstream, normalises it into an entry, stores it.
async fn fetch_and_store(
    state: &PccsState,
    k: &str,
    req: &UpstreamReq,
) -> Result<Entry, FetchError> {
    let r = fetch_upstream(state, req).await;
    if let Ok(mut m) = state.failed.lock() {
        match &r {
            Err(FetchError::Unavailable(_)) => {
                m.insert(k.to_owned(), std::time::Instant::now());
            }
            _ => {
                m.remove(k);
            }
        }
    }
    if r.is_err() {
        state.metrics.upstream_failures.inc();
    }
    let e = r?;
    if let Err(err) = state.store.put(k, &e) {
        tracing::error!(error = %err, "storing fetched collateral");
    }
    Ok(e)
}

async fn get_upstream(state: &PccsState, url: &str) -> Result<reqwest::Response, FetchError> {
    let resp = state
        .http
        .get(url)
        .send()
        .await
        .map_err(|e| FetchError::Unavailable(e.to_string()))?;
    match resp.status() {
        s if s.is_success() => Ok(resp),
        reqwest::StatusCode::NOT_FOUND => Err(FetchError::NotFound),
        s => Err(FetchError::Unavailable(format!("status {s}"))),
    }
}

fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn fetch_upstream(state: &PccsState, req: &UpstreamReq) -> Result<Entry, FetchError> {
    let base = state
        .config
        .upstream
        .as_deref()
        .ok_or(FetchError::NotFound)?
        .trim_end_matches('/');
    let now = state.clock.now();
    let bad = |m: &str| FetchError::Bad(m.to_owned());
    match req {
        UpstreamReq::Tcb(fmspc) => {
            let resp = get_upstream(state, &format!("{base}/tcb?fmspc={fmspc}")).await?;
            let chain = header_str(&resp, TCB_INFO_ISSUER_CHAIN)
                .or_else(|| header_str(&resp, SGX_TCB_INFO_ISSUER_CHAIN))
                .ok_or_else(|| bad("no TCB info issuer chain"))?;
            let body = resp
                .bytes()
                .await
                .map_err(|e| FetchError::Unavailable(e.to_string()))?;
            let (inner, _) = crate::collateral::split_signed(&body, "tcbInfo")
                .map_err(|e| bad(&e.to_string()))?;
            let next = signed_info(&inner, "TCB info")
                .and_then(|i| i.next_update())
                .map_err(|e| bad(&e.to_string()))?;
            Ok(Entry {
                body: body.to_vec(),
                content_type: CT_JSON.into(),
                headers: vec![(TCB_INFO_ISSUER_CHAIN.into(), chain)],
                next_update: next,
                fetched_at: now,
            })
        }
        UpstreamReq::Identity(path) => {
            let resp = get_upstream(state, &format!("{base}/{path}")).await?;
            let chain = header_str(&resp, ENCLAVE_IDENTITY_ISSUER_CHAIN)
                .ok_or_else(|| bad("no enclave identity issuer chain"))?;
            let body = resp
                .bytes()
                .await
                .map_err(|e| FetchError::Unavailable(e.to_string()))?;
            let (inner, _) = crate::collateral::split_signed(&body, "enclaveIdentity")
                .map_err(|e| bad(&e.to_string()))?;
            let next = signed_info(&inner, "enclave identity")
                .and_then(|i| i.next_update())
                .map_err(|e| bad(&e.to_string()))?;
            Ok(Entry {
                body: body.to_vec(),
                content_type: CT_JSON.into(),
                headers: vec![(ENCLAVE_IDENTITY_ISSUER_CHAIN.into(), chain)],
                next_update: next,
                fetched_at: now,
            })
        }
        UpstreamReq::PckCrl(ca) => {
            let resp = get_upstream(
                state,
                &format!("{base}/pckcrl?ca={}&encoding=der", ca.as_str()),
            )
            .await?;
            let chain = header_str(&resp, PCK_CRL_ISSUER_CHAIN)
                .ok_or_else(|| bad("no PCK CRL issuer chain"))?;
            let body = resp
                .bytes()
                .await
                .map_err(|e| FetchError::Unavailable(e.to_string()))?;
            let der_bytes = decode_crl(&body).ok_or_else(|| bad("PCK CRL not DER/PEM/hex"))?;
            let next = crl_info(&der_bytes)
                .ok_or_else(|| bad("PCK CRL unparsable"))?
                .next_update
                .unwrap_or(i64::MAX);
            Ok(Entry {
                body: der_bytes,
                content_type: CT_CRL.into(),
                headers: vec![(PCK_CRL_ISSUER_CHAIN.into(), chain)],
                next_update: next,
                fetched_at: now,
            })
        }
        UpstreamReq::RootCrl => {
            let resp = match get_upstream(state, &format!("{base}/rootcacrl")).await {
                Ok(r) => r,
                Err(FetchError::NotFound) => match &state.config.root_crl_url {
                    Some(u) => get_upstream(state, u).await?,
                    None => return Err(FetchError::NotFound),
                },
                Err(e) => return Err(e),
            };
            let body = resp
                .bytes()
                .await
                .map_err(|e| FetchError::Unavailable(e.to_string()))?;
            let der_bytes = decode_crl(&body).ok_or_else(|| bad("root CA CRL not DER/PEM/hex"))?;
            let next = crl_info(&der_bytes)
                .ok_or_else(|| bad("root CA CRL unparsable"))?
                .next_update
                .unwrap_or(i64::MAX);
            Ok(Entry {
                body: der_bytes,
                content_type: CT_CRL.into(),
                headers: Vec::new(),
                next_update: next,
                fetched_at: now,
            })
        }
        UpstreamReq::PckCert(q) => {
            let resp = get_upstream(state, &format!("{base}/pckcert?{q}")).await?;
            let mut headers = Vec::new();
            for h in [
                PCK_CERT_ISSUER_CHAIN,
                "SGX-TCBm",
                "SGX-FMSPC",
                "SGX-PCK-Certificate-CA-Type",
            ] {
                if let Some(v) = header_str(&resp, h) {
                    headers.push((h.to_owned(), v));
                }
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| FetchError::Unavailable(e.to_string()))?;
            Ok(Entry {
                body: body.to_vec(),
                content_type: CT_PEM.into(),
                headers,
                next_update: i64::MAX,
                fetched_at: now,
            })
        }
    }
}

fn respond(
    entry: Entry,
    warning: Option<String>,
    body: Vec<u8>,
    content_type: &str,
    api: Api,
) -> Response {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    for (n, v) in &entry.headers {
        let name = match api {
            Api::V3 if n.eq_ignore_ascii_case(TCB_INFO_ISSUER_CHAIN) => SGX_TCB_INFO_ISSUER_CHAIN,
            _ => n.as_str(),
        };
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(v)) {
            h.insert(n, v);
        }
    }
    if let Some(w) = warning
        && let Ok(v) = HeaderValue::from_str(&w)
    {
        h.insert(header::WARNING, v);
    }
    (StatusCode::OK, h, body).into_response()
}

fn serve_entry(r: Result<(Entry, Option<String>), Error>, api: Api) -> Response {
    match r {
        Ok((e, w)) => {
            let body = e.body.clone();
            let ct = e.content_type.clone();
            respond(e, w, body, &ct, api)
        }
        Err(e) => e.into_response(),
    }
}

async fn tcb(
    State(s): State<PccsState>,
    Query(q): Query<BTreeMap<String, String>>,
    api: Api,
) -> Response {
    let Some(fmspc) = q.get("fmspc") else {
        return Error::BadRequest("missing fmspc").into_response();
    };
    if fmspc.len() != 12 || !fmspc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Error::BadRequest("fmspc must be 12 hex digits").into_response();
    }
    let fmspc = fmspc.to_ascii_uppercase();
    serve_entry(
        lookup(&s, &key::tcb(&fmspc), UpstreamReq::Tcb(fmspc)).await,
        api,
    )
}

async fn identity(State(s): State<PccsState>, k: &'static str, path: &'static str) -> Response {
    serve_entry(lookup(&s, k, UpstreamReq::Identity(path)).await, Api::V4)
}

async fn pckcrl(State(s): State<PccsState>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(ca) = q.get("ca").and_then(|c| CaType::parse(c)) else {
        return Error::BadRequest("ca must be processor or platform").into_response();
    };
    let pem_wanted = q
        .get("encoding")
        .is_some_and(|e| e.eq_ignore_ascii_case("pem"));
    match lookup(&s, &key::pck_crl(ca), UpstreamReq::PckCrl(ca)).await {
        Ok((e, w)) if pem_wanted => {
            let body = pem::encode(&pem::Pem::new("X509 CRL", e.body.clone())).into_bytes();
            respond(e, w, body, CT_PEM, Api::V4)
        }
        r => serve_entry(r, Api::V4),
    }
}

/// `rootcacrl`: the hex string of the DER, as Intel's PCCS serves it (QCNL and dcap-qvl
/// expect that); `?encoding=der` gives the DER itself.
async fn rootcacrl(
    State(s): State<PccsState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let der_wanted = q
        .get("encoding")
        .is_some_and(|e| e.eq_ignore_ascii_case("der"));
    match lookup(&s, key::ROOT_CA_CRL, UpstreamReq::RootCrl).await {
        Ok((e, w)) if !der_wanted => {
            let body = hex::encode(&e.body).into_bytes();
            respond(e, w, body, CT_CRL, Api::V4)
        }
        r => serve_entry(r, Api::V4),
    }
}

/// `crl?uri=<CRL distribution point>`: PCCS's CRL-by-URI route, mapped onto our entries.
async fn crl_by_uri(
    State(s): State<PccsState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(uri) = q.get("uri") else {
        return Error::BadRequest("missing uri").into_response();
    };
    let lower = uri.to_ascii_lowercase();
    let (k, req) = if lower.contains("rootca") {
        (key::ROOT_CA_CRL.to_owned(), UpstreamReq::RootCrl)
    } else if lower.contains("processor") {
        (
            key::pck_crl(CaType::Processor),
            UpstreamReq::PckCrl(CaType::Processor),
        )
    } else if lower.contains("platform") {
        (
            key::pck_crl(CaType::Platform),
            UpstreamReq::PckCrl(CaType::Platform),
        )
    } else {
        return Error::NotFound.into_response();
    };
    serve_entry(lookup(&s, &k, req).await, Api::V4)
}

async fn pckcert(
    State(s): State<PccsState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    const PARAMS: [&str; 5] = ["cpusvn", "encrypted_ppid", "pceid", "pcesvn", "qeid"];
    let mut canon = Vec::new();
    for (k, v) in &q {
        if PARAMS.contains(&k.as_str()) {
            if !v.bytes().all(|b| b.is_ascii_hexdigit()) || v.len() > 1024 {
                return Error::BadRequest("pckcert parameters must be hex").into_response();
            }
            canon.push(format!("{k}={}", v.to_ascii_lowercase()));
        }
    }
    if !q.contains_key("cpusvn") || !q.contains_key("pcesvn") || !q.contains_key("pceid") {
        return Error::BadRequest("cpusvn, pcesvn and pceid are required").into_response();
    }
    let canon = canon.join("&");
    let k = match pck_cert_key(&s, &q, &canon) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    serve_entry(
        lookup(&s, &k, UpstreamReq::PckCert(canon.clone())).await,
        Api::V4,
    )
}

/// The store key that answers a `pckcert` query: the entry stored for the exact canonical
/// query if there is one (fetched from upstream earlier), else the certificate imported for
/// the platform (QE ID, PCE ID, raw CPUSVN, raw PCESVN; `encrypted_ppid` ignored) if there is
/// one, else the canonical key again (upstream on a miss in LAZY mode, 404 in OFFLINE mode).
fn pck_cert_key(s: &PccsState, q: &BTreeMap<String, String>, canon: &str) -> Result<String, Error> {
    let by_query = key::pck_cert(canon);
    if s.store.get(&by_query)?.is_some() {
        return Ok(by_query);
    }
    let param = |n: &str| q.get(n).map(String::as_str);
    if let (Some(qeid), Some(pceid), Some(cpusvn), Some(pcesvn)) = (
        param("qeid"),
        param("pceid"),
        param("cpusvn"),
        param("pcesvn"),
    ) {
        let by_platform = key::pck_cert_by_platform(qeid, pceid, cpusvn, pcesvn);
        if s.store.get(&by_platform)?.is_some() {
            return Ok(by_platform);
        }
    }
    Ok(by_query)
}

/// Imports FILEs into a store, each told apart by its content: a directory of PCS responses
/// (see [`read_pcs_dir`]); a quote (raw bytes starting with version 3, 4 or 5 as a
/// little-endian `u16`, or the same as hex text) whose certification data is type 5, whose
/// PCK certificate is stored for its platform (see [`pck_cert_from_quote`]); else a dcap-qvl
/// collateral JSON file. Returns the keys written.
pub fn import_paths(
    store: &Store,
    paths: &[std::path::PathBuf],
    now: i64,
) -> Result<Vec<String>, ImportError> {
    let mut keys = Vec::new();
    for p in paths {
        let path = || p.display().to_string();
        if p.is_dir() {
            keys.extend(store.import_bundle(&read_pcs_dir(p)?, now)?);
            continue;
        }
        let bytes = std::fs::read(p).map_err(|source| ImportError::Io {
            path: path(),
            source,
        })?;
        if let Some(quote) = quote_bytes(&bytes) {
            let (k, entry) =
                pck_cert_from_quote(&quote, now).map_err(|source| ImportError::Quote {
                    path: path(),
                    source,
                })?;
            store.put(&k, &entry)?;
            keys.push(k);
        } else {
            let bundle =
                crate::collateral::from_json(&bytes).map_err(|source| ImportError::Collateral {
                    path: path(),
                    source,
                })?;
            keys.extend(store.import_bundle(&bundle, now)?);
        }
    }
    Ok(keys)
}

/// Quote versions an import recognises (SGX v3; SGX or TDX v4 and v5).
const QUOTE_VERSIONS: [u16; 3] = [3, 4, 5];

/// The quote an import file holds, if it holds one: the bytes themselves when they start
/// with a quote version, or the decoded hex text (optionally `0x`-prefixed, whitespace and
/// line breaks ignored) when that does. JSON (`{…}`) never qualifies.
fn quote_bytes(bytes: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let starts_with_version = |b: &[u8]| {
        b.first_chunk::<2>()
            .is_some_and(|v| QUOTE_VERSIONS.contains(&u16::from_le_bytes(*v)))
    };
    if starts_with_version(bytes) {
        return Some(std::borrow::Cow::Borrowed(bytes));
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let text: String = text
        .strip_prefix("0x")
        .unwrap_or(text)
        .split_whitespace()
        .collect();
    let decoded = hex::decode(text).ok()?;
    starts_with_version(&decoded).then_some(std::borrow::Cow::Owned(decoded))
}

/// Why the PCK certificate of a quote could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteImportError {
    /// The bytes do not parse as a quote.
    #[error("not a well-formed quote")]
    Parse(#[source] sgx_quote::QuoteError),
    /// The certification data is not the PCK certificate chain (type 5).
    #[error("certification data type {0} carries no pck certificate chain (only type 5 does)")]
    CertType(u16),
    /// The PEM chain of the certification data is malformed.
    #[error("invalid pck certificate chain")]
    Chain(#[source] sgx_quote::pck::PckError),
    /// No certificate of the chain carries the Intel SGX extension.
    #[error("no certificate of the chain carries the sgx extension")]
    NoPckCertificate,
    /// The chain lacks the issuer of a certificate.
    #[error("the chain lacks the issuer of the {0}")]
    MissingIssuer(&'static str),
    /// A certificate of the chain is not DER X.509.
    #[error("invalid certificate in the chain")]
    Certificate(#[source] der::Error),
}

/// The PCK certificate a quote carries (certification data type 5), as the store entry of
/// Intel PCS's answer to `GET /sgx/certification/v4/pckcert` for the quote's platform, with
/// its key ([`key::pck_cert_by_platform`]).
///
/// The platform: QE ID = the header's `user_data[0..16]`; PCE ID = the PCK certificate's
/// (SGX extension .3: the quote header carries none); raw CPUSVN = the QE report's
/// `cpu_svn`; raw PCESVN = the header's `pce_svn` (little-endian bytes, as QCNL sends them).
///
/// The response (Intel PCS API v4, "Get PCK Certificate"): body = the leaf PEM; headers
/// `SGX-PCK-Certificate-Issuer-Chain` (URL-encoded PEM of the PCK CA then the root CA),
/// `SGX-TCBm` (hex of the certificate's TCB: CPUSVN, 16 bytes (.2.18) ‖ PCESVN (.2.17), 2
/// bytes little-endian), `SGX-FMSPC` (upper-case hex), `SGX-PCK-Certificate-CA-Type`
/// (`processor` or `platform`, from the issuer's common name). Valid until the leaf's
/// `notAfter`.
pub fn pck_cert_from_quote(quote: &[u8], now: i64) -> Result<(String, Entry), QuoteImportError> {
    use der::Decode;
    use sgx_quote::pck::{PckCa, find_pck_leaf, split_pem_chain};

    let (q, _padding) = sgx_quote::Quote::parse_tolerant(quote).map_err(QuoteImportError::Parse)?;
    let cert_data = q.certification();
    let pem_chain = cert_data
        .pck_chain_pem()
        .ok_or(QuoteImportError::CertType(cert_data.cert_type.to_u16()))?;
    let chain = split_pem_chain(pem_chain).map_err(QuoteImportError::Chain)?;
    let (leaf_at, ext) = find_pck_leaf(&chain).ok_or(QuoteImportError::NoPckCertificate)?;
    let certs = chain
        .iter()
        .map(|d| x509_cert::Certificate::from_der(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(QuoteImportError::Certificate)?;
    // The chain may come in any order (INDEX.md set D): follow issuer names from the leaf.
    let issuer_at = |i: usize| {
        let issuer = &certs.get(i)?.tbs_certificate.issuer;
        certs
            .iter()
            .position(|c| &c.tbs_certificate.subject == issuer)
            .filter(|&j| j != i)
    };
    let ca_at = issuer_at(leaf_at).ok_or(QuoteImportError::MissingIssuer("pck certificate"))?;
    let root_at = issuer_at(ca_at).ok_or(QuoteImportError::MissingIssuer("pck ca certificate"))?;
    let der_at = |i: usize| chain.get(i).map(Vec::as_slice).unwrap_or_default();
    let (leaf, ca, root) = (der_at(leaf_at), der_at(ca_at), der_at(root_at));
    let ca_type = PckCa::from_cert_der(leaf).map_err(QuoteImportError::Chain)?;
    let not_after = certs
        .get(leaf_at)
        .map(|c| {
            c.tbs_certificate
                .validity
                .not_after
                .to_unix_duration()
                .as_secs()
        })
        .and_then(|s| i64::try_from(s).ok())
        .unwrap_or(i64::MAX);

    let mut tcbm = ext.tcb.cpu_svn.to_vec();
    tcbm.extend_from_slice(&ext.tcb.pce_svn.to_le_bytes());
    let qe_id: Vec<u8> = q.header.user_data.iter().take(QE_ID_LEN).copied().collect();
    let k = key::pck_cert_by_platform(
        &hex::encode(qe_id),
        &hex::encode(ext.pce_id),
        &hex::encode(q.qe().qe_report.cpu_svn.0),
        &hex::encode(q.header.pce_svn.to_le_bytes()),
    );
    let issuer_chain = format!("{}{}", pem_cert(ca), pem_cert(root));
    let entry = Entry {
        body: pem_cert(leaf).into_bytes(),
        content_type: CT_PEM.into(),
        headers: vec![
            (
                PCK_CERT_ISSUER_CHAIN.into(),
                encode_chain_header(&issuer_chain),
            ),
            ("SGX-TCBm".into(), hex::encode_upper(tcbm)),
            ("SGX-FMSPC".into(), hex::encode_upper(ext.fmspc)),
            (
                "SGX-PCK-Certificate-CA-Type".into(),
                ca_type.as_str().into(),
            ),
        ],
        next_update: not_after,
        fetched_at: now,
    };
    Ok((k, entry))
}

/// Length of the QE ID at the start of the quote header's `user_data`.
const QE_ID_LEN: usize = 16;

/// One certificate as PEM the way Intel PCS writes it (64-column base64, `\n` line ends).
fn pem_cert(der_bytes: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der_bytes),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Errors of an import.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading failed.
    #[error("reading {path}")]
    Io {
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not collateral.
    #[error("{path} is not importable collateral")]
    Collateral {
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: crate::collateral::Error,
    },
    /// A quote's PCK certificate could not be imported.
    #[error("importing the pck certificate of the quote {path}")]
    Quote {
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: QuoteImportError,
    },
    /// A PCS directory lacks a piece.
    #[error("{path}: {what}")]
    Incomplete {
        /// The directory.
        path: String,
        /// What is missing.
        what: String,
    },
    /// Writing failed.
    #[error("writing the store")]
    Store(#[source] Box<crate::store::Error>),
}

impl From<crate::store::Error> for ImportError {
    fn from(e: crate::store::Error) -> Self {
        Self::Store(Box::new(e))
    }
}

/// Reads a directory of saved Intel PCS responses: the `tcb` body (JSON with `tcbInfo`),
/// the `qe/identity` body (JSON with `enclaveIdentity`), the PCK CRL and root CA CRL
/// (DER, PEM or hex; told apart by their issuer), each body file `X` with its response
/// headers in `X.headers` (as saved by `curl -D`), which must hold the issuer chain.
pub fn read_pcs_dir(dir: &Path) -> Result<CollateralBundle, ImportError> {
    let io = |source| ImportError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut tcb = None;
    let mut qe = None;
    let mut pck = None;
    let mut root = None;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "headers"))
        .collect();
    names.sort();
    for p in names {
        let body = std::fs::read(&p).map_err(io)?;
        let headers =
            std::fs::read_to_string(format!("{}.headers", p.display())).unwrap_or_default();
        let chain = |name: &str| {
            headers.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| crate::collateral::decode_chain_header(v.trim()))
                    .flatten()
            })
        };
        if crate::collateral::split_signed(&body, "tcbInfo").is_ok() {
            tcb = Some((
                body,
                chain(TCB_INFO_ISSUER_CHAIN).or_else(|| chain(SGX_TCB_INFO_ISSUER_CHAIN)),
            ));
        } else if crate::collateral::split_signed(&body, "enclaveIdentity").is_ok() {
            let is_qe = std::str::from_utf8(&body).is_ok_and(|s| s.contains("\"id\":\"QE\""));
            if is_qe || qe.is_none() {
                qe = Some((body, chain(ENCLAVE_IDENTITY_ISSUER_CHAIN)));
            }
        } else if let Some(der_bytes) = decode_crl(&body) {
            match crl_info(&der_bytes) {
                Some(i) if i.issuer_cn.contains("Root") => root = Some(der_bytes),
                Some(_) => pck = Some((der_bytes, chain(PCK_CRL_ISSUER_CHAIN))),
                None => {}
            }
        }
    }
    let missing = |what: &str| ImportError::Incomplete {
        path: dir.display().to_string(),
        what: what.to_owned(),
    };
    let (tcb, tcb_chain) = tcb.ok_or_else(|| missing("no TCB info body"))?;
    let tcb_chain =
        tcb_chain.ok_or_else(|| missing("no TCB-Info-Issuer-Chain in the TCB info's .headers"))?;
    let (qe, qe_chain) = qe.ok_or_else(|| missing("no QE identity body"))?;
    let qe_chain =
        qe_chain.ok_or_else(|| missing("no SGX-Enclave-Identity-Issuer-Chain header"))?;
    let (pck, pck_chain) = pck.ok_or_else(|| missing("no PCK CRL"))?;
    let pck_chain = pck_chain.ok_or_else(|| missing("no SGX-PCK-CRL-Issuer-Chain header"))?;
    let root = root.ok_or_else(|| missing("no root CA CRL"))?;
    crate::collateral::from_pcs(dcap_verify::PcsResponses {
        tcb_info: &tcb,
        tcb_info_issuer_chain: tcb_chain.as_bytes(),
        qe_identity: &qe,
        qe_identity_issuer_chain: qe_chain.as_bytes(),
        pck_crl: Some(&pck),
        pck_crl_issuer_chain: pck_chain.as_bytes(),
        root_ca_crl: Some(&root),
        pck_certificate_chain: None,
    })
    .map_err(|source| ImportError::Collateral {
        path: dir.display().to_string(),
        source,
    })
}

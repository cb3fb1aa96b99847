//! Collateral client: fetches the collateral of a quote (by FMSPC and PCK CA) from a PCCS or
//! Intel PCS URL with timeouts and retries with backoff, caching each bundle in memory until
//! the earliest `nextUpdate` of its pieces; or serves bundles read from files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::collateral::{
    CaType, CollateralBundle, ENCLAVE_IDENTITY_ISSUER_CHAIN, PCK_CRL_ISSUER_CHAIN,
    PreparedCollateral, SGX_TCB_INFO_ISSUER_CHAIN, TCB_INFO_ISSUER_CHAIN, decode_chain_header,
};

/// Errors fetching collateral.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The service has no collateral for this platform.
    #[error("no collateral for FMSPC {fmspc} ({ca:?})")]
    NotFound {
        /// FMSPC (hex).
        fmspc: String,
        /// CA type.
        ca: CaType,
    },
    /// The service could not be reached or kept failing.
    #[error("collateral service unavailable after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// Last failure.
        last: String,
    },
    /// The service answered something that is not collateral.
    #[error("collateral service sent an unusable {what}")]
    Invalid {
        /// Which response.
        what: &'static str,
    },
    /// Reading files failed.
    #[error("reading collateral {path}")]
    File {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: Box<crate::pccs::ImportError>,
    },
}

/// Retry and timeout settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Timeout of one request.
    pub timeout: Duration,
    /// Attempts per resource (>= 1).
    pub attempts: u32,
    /// First backoff (doubles each retry).
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

type CacheKey = (String, CaType);

/// HTTP collateral client with an in-memory cache.
#[derive(Debug)]
pub struct CollateralClient {
    base: String,
    http: reqwest::Client,
    retry: RetryPolicy,
    clock: Clock,
    cache: Mutex<HashMap<CacheKey, (Arc<PreparedCollateral>, i64)>>,
}

impl CollateralClient {
    /// A client of the PCCS/PCS at `base_url` (ending in `/sgx/certification/v4`; a bare
    /// host URL gets that path appended).
    pub fn new(base_url: &str, retry: RetryPolicy, clock: Clock) -> Result<Self, reqwest::Error> {
        let mut base = base_url.trim_end_matches('/').to_owned();
        if !base.contains("/certification/") {
            base.push_str("/sgx/certification/v4");
        }
        Ok(Self {
            base,
            http: crate::http_client(retry.timeout)?,
            retry,
            clock,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The base URL in use.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The collateral for (FMSPC, CA); the bool says whether it came from the cache.
    pub async fn get(
        &self,
        fmspc: &[u8; 6],
        ca: CaType,
    ) -> Result<(Arc<PreparedCollateral>, bool), FetchError> {
        let fmspc_hex = hex::encode_upper(fmspc);
        let k = (fmspc_hex.clone(), ca);
        let now = self.clock.now();
        if let Ok(cache) = self.cache.lock()
            && let Some((b, exp)) = cache.get(&k)
            && now < *exp
        {
            return Ok((b.clone(), true));
        }
        let bundle = Arc::new(PreparedCollateral::new(self.fetch(&fmspc_hex, ca).await?));
        let exp = bundle.next_update.unwrap_or(now);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(k, (bundle.clone(), exp));
        }
        Ok((bundle, false))
    }

    /// Fetches the four pieces (uncached).
    pub async fn fetch(&self, fmspc_hex: &str, ca: CaType) -> Result<CollateralBundle, FetchError> {
        let b = &self.base;
        let (tcb, qe, pck, root) = tokio::join!(
            self.get_retry(format!("{b}/tcb?fmspc={fmspc_hex}")),
            self.get_retry(format!("{b}/qe/identity")),
            self.get_retry(format!("{b}/pckcrl?ca={}&encoding=der", ca.as_str())),
            self.get_retry(format!("{b}/rootcacrl")),
        );
        let not_found = |e: FetchError| match e {
            FetchError::NotFound { .. } => FetchError::NotFound {
                fmspc: fmspc_hex.to_owned(),
                ca,
            },
            e => e,
        };
        let (tcb_h, tcb_b) = tcb.map_err(not_found)?;
        let (qe_h, qe_b) = qe.map_err(not_found)?;
        let (pck_h, pck_b) = pck.map_err(not_found)?;
        let (_, root_b) = root.map_err(not_found)?;
        let chain = |h: &reqwest::header::HeaderMap, names: &[&str], what| {
            names
                .iter()
                .find_map(|n| h.get(*n).and_then(|v| v.to_str().ok()))
                .and_then(decode_chain_header)
                .ok_or(FetchError::Invalid { what })
        };
        let tcb_chain = chain(
            &tcb_h,
            &[TCB_INFO_ISSUER_CHAIN, SGX_TCB_INFO_ISSUER_CHAIN],
            "TCB info issuer chain",
        )?;
        let qe_chain = chain(
            &qe_h,
            &[ENCLAVE_IDENTITY_ISSUER_CHAIN],
            "QE identity issuer chain",
        )?;
        let pck_chain = chain(&pck_h, &[PCK_CRL_ISSUER_CHAIN], "PCK CRL issuer chain")?;
        crate::collateral::from_pcs(dcap_verify::PcsResponses {
            tcb_info: &tcb_b,
            tcb_info_issuer_chain: tcb_chain.as_bytes(),
            qe_identity: &qe_b,
            qe_identity_issuer_chain: qe_chain.as_bytes(),
            pck_crl: Some(&pck_b),
            pck_crl_issuer_chain: pck_chain.as_bytes(),
            root_ca_crl: Some(&root_b),
            pck_certificate_chain: None,
        })
        .map_err(|_| FetchError::Invalid { what: "collateral" })
    }

    async fn get_retry(
        &self,
        url: String,
    ) -> Result<(reqwest::header::HeaderMap, bytes_t::Bytes), FetchError> {
        let mut last = String::new();
        let attempts = self.retry.attempts.max(1);
        for i in 0..attempts {
            if i > 0 {
                let factor = 1u32.checked_shl(i.saturating_sub(1)).unwrap_or(u32::MAX);
                tokio::time::sleep(self.retry.backoff.saturating_mul(factor)).await;
            }
            match self.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    let h = r.headers().clone();
                    match r.bytes().await {
                        Ok(b) => return Ok((h, b)),
                        Err(e) => last = e.to_string(),
                    }
                }
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    return Err(FetchError::NotFound {
                        fmspc: String::new(),
                        ca: CaType::Processor,
                    });
                }
                Ok(r)
                    if r.status().is_client_error()
                        && r.status() != reqwest::StatusCode::TOO_MANY_REQUESTS =>
                {
                    return Err(FetchError::Unavailable {
                        attempts: i.saturating_add(1),
                        last: format!("status {}", r.status()),
                    });
                }
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(url, attempt = i, error = %last, "collateral request failed");
        }
        Err(FetchError::Unavailable { attempts, last })
    }
}

mod bytes_t {
    pub(super) use axum::body::Bytes;
}

/// Where the attestation server gets collateral.
#[derive(Debug)]
pub enum CollateralSource {
    /// A PCCS/PCS over HTTP.
    Http(CollateralClient),
    /// Bundles read at start-up from files (dcap-qvl JSON or PCS response directories).
    Static(Vec<Arc<PreparedCollateral>>),
}

impl CollateralSource {
    /// Reads bundles from files or directories.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, FetchError> {
        let mut out = Vec::new();
        for p in paths {
            let b = if p.is_dir() {
                crate::pccs::read_pcs_dir(p)
            } else {
                std::fs::read(p)
                    .map_err(|source| crate::pccs::ImportError::Io {
                        path: p.display().to_string(),
                        source,
                    })
                    .and_then(|bytes| {
                        crate::collateral::from_json(&bytes).map_err(|source| {
                            crate::pccs::ImportError::Collateral {
                                path: p.display().to_string(),
                                source,
                            }
                        })
                    })
            }
            .map_err(|source| FetchError::File {
                path: p.display().to_string(),
                source: Box::new(source),
            })?;
            out.push(b);
        }
        Ok(Self::from_bundles(out))
    }

    /// Serves these bundles.
    #[must_use]
    pub fn from_bundles(bundles: Vec<CollateralBundle>) -> Self {
        Self::Static(
            bundles
                .into_iter()
                .map(|b| Arc::new(PreparedCollateral::new(b)))
                .collect(),
        )
    }

    /// The collateral for (FMSPC, CA) and whether it was a cache hit.
    pub async fn get(
        &self,
        fmspc: &[u8; 6],
        ca: CaType,
    ) -> Result<(Arc<PreparedCollateral>, bool), FetchError> {
        match self {
            Self::Http(c) => c.get(fmspc, ca).await,
            Self::Static(list) => {
                let want = hex::encode_upper(fmspc);
                list.iter()
                    .find(|b| b.fmspc.as_deref() == Some(want.as_str()) && b.ca == Some(ca))
                    .map(|b| (b.clone(), true))
                    .ok_or(FetchError::NotFound { fmspc: want, ca })
            }
        }
    }
}

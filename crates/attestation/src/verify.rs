//! The verification seam: what the attestation server needs from a DCAP verifier. The real
//! implementation is [`DcapVerifier`] (crates `sgx-quote` + `dcap-verify`); tests may plug in
//! others.

use crate::collateral::{CaType, PreparedCollateral};

/// Where a quote's collateral lives: its platform's FMSPC and the CA of its PCK certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuoteLocation {
    /// FMSPC from the PCK certificate's SGX extension.
    pub fmspc: [u8; 6],
    /// Issuer of the PCK certificate.
    pub ca: CaType,
}

/// What a successful verification established about the quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// Intel's spelling of the merged TCB status ("UpToDate", "SWHardeningNeeded", ...).
    pub tcb_status: String,
    /// Advisory IDs of the matched TCB levels.
    pub advisory_ids: Vec<String>,
    /// MRENCLAVE.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    pub mr_signer: [u8; 32],
    /// ISV product ID.
    pub isv_prod_id: u16,
    /// ISV SVN.
    pub isv_svn: u16,
    /// Whether the enclave is a debug enclave.
    pub debug: bool,
    /// REPORTDATA.
    pub report_data: [u8; 64],
    /// CONFIGID.
    pub config_id: [u8; 64],
    /// FMSPC.
    pub fmspc: [u8; 6],
    /// Earliest expiry of all inputs (UNIX seconds).
    pub valid_until: i64,
}

/// Why a quote was not verified. Messages are safe to return to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyFailure {
    /// The quote ends early.
    #[error("quote truncated: {0}")]
    Truncated(String),
    /// A quote of another TEE (TDX, ...).
    #[error("unsupported TEE: {0}")]
    UnsupportedTee(String),
    /// Structurally invalid quote.
    #[error("malformed quote: {0}")]
    Malformed(String),
    /// The quote parsed but did not verify (names the failed step).
    #[error("{0}")]
    Rejected(String),
}

/// A DCAP quote verifier.
pub trait QuoteVerifier: Send + Sync + 'static {
    /// Finds which collateral a quote needs (parses the quote and its PCK certificate).
    fn locate(&self, quote: &[u8]) -> Result<QuoteLocation, VerifyFailure>;

    /// Verifies the quote against the collateral at `now` (UNIX seconds). The verifier
    /// accepts every non-terminal TCB status; the server's policy decides.
    fn verify(
        &self,
        quote: &[u8],
        collateral: &PreparedCollateral,
        now: i64,
    ) -> Result<VerifiedQuote, VerifyFailure>;
}

/// The real verifier: `sgx-quote` to locate the collateral, `dcap-verify` to verify.
/// Every TCB status (even `Revoked`) and debug enclaves pass the verifier; the server's
/// policy decides, and the token carries the status.
#[derive(Debug)]
pub struct DcapVerifier {
    inner: dcap_verify::Verifier,
    policy: dcap_verify::Policy,
    /// PCK chain (keyed hash) → location: saves parsing the certificates on every request.
    /// A wrong entry could only pick the wrong collateral, which the verifier then rejects.
    locations: std::sync::RwLock<std::collections::HashMap<u64, QuoteLocation>>,
    hasher: std::collections::hash_map::RandomState,
}

/// Bound of the location cache (cleared when full).
const MAX_CACHED_LOCATIONS: usize = 4096;

impl DcapVerifier {
    /// A verifier pinned to `anchors` (e.g. `TrustAnchors::intel()`).
    #[must_use]
    pub fn new(anchors: dcap_verify::TrustAnchors) -> Self {
        Self {
            inner: dcap_verify::Verifier::new(anchors),
            policy: dcap_verify::Policy::new()
                .allow_debug(true)
                .accept_any_status(),
            locations: std::sync::RwLock::default(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The wrapped verifier.
    #[must_use]
    pub fn inner(&self) -> &dcap_verify::Verifier {
        &self.inner
    }

    /// The dcap-verify policy in use (permissive; see the type's docs).
    #[must_use]
    pub fn policy(&self) -> &dcap_verify::Policy {
        &self.policy
    }
}

fn quote_failure(e: &sgx_quote::QuoteError) -> VerifyFailure {
    match e {
        sgx_quote::QuoteError::Truncated { .. } => VerifyFailure::Truncated(e.to_string()),
        sgx_quote::QuoteError::UnsupportedTeeType(_) => {
            VerifyFailure::UnsupportedTee(e.to_string())
        }
        _ => VerifyFailure::Malformed(e.to_string()),
    }
}

impl QuoteVerifier for DcapVerifier {
    fn locate(&self, quote: &[u8]) -> Result<QuoteLocation, VerifyFailure> {
        use sgx_quote::pck::{PckCa, find_pck_leaf, split_pem_chain};
        let (q, _) = sgx_quote::Quote::parse_tolerant(quote).map_err(|e| quote_failure(&e))?;
        if q.sgx_report_body().is_none() {
            return Err(VerifyFailure::UnsupportedTee(format!(
                "{} quote",
                q.body.tee_type().as_str()
            )));
        }
        let pem = q.pck_chain_pem().ok_or_else(|| {
            VerifyFailure::Rejected(format!(
                "the quote carries no PCK certificate chain (certification data type {})",
                q.certification().cert_type.to_u16()
            ))
        })?;
        let h = std::hash::BuildHasher::hash_one(&self.hasher, pem);
        if let Some(loc) = self.locations.read().ok().and_then(|m| m.get(&h).copied()) {
            return Ok(loc);
        }
        let chain = split_pem_chain(pem)
            .map_err(|e| VerifyFailure::Malformed(format!("PCK chain: {e}")))?;
        let (i, ext) = find_pck_leaf(&chain)
            .ok_or_else(|| VerifyFailure::Malformed("no PCK certificate in the chain".into()))?;
        let leaf = chain
            .get(i)
            .ok_or_else(|| VerifyFailure::Malformed("no PCK certificate in the chain".into()))?;
        let ca = match PckCa::from_cert_der(leaf) {
            Ok(PckCa::Processor) => CaType::Processor,
            Ok(PckCa::Platform) => CaType::Platform,
            Err(e) => {
                return Err(VerifyFailure::Malformed(format!(
                    "PCK certificate issuer: {e}"
                )));
            }
        };
        let loc = QuoteLocation {
            fmspc: ext.fmspc,
            ca,
        };
        if let Ok(mut m) = self.locations.write() {
            if m.len() >= MAX_CACHED_LOCATIONS {
                m.clear();
            }
            m.insert(h, loc);
        }
        Ok(loc)
    }

    fn verify(
        &self,
        quote: &[u8],
        collateral: &PreparedCollateral,
        now: i64,
    ) -> Result<VerifiedQuote, VerifyFailure> {
        let c = &collateral.bundle;
        let now = dcap_verify::UnixTime(u64::try_from(now).unwrap_or(0));
        let v = self
            .inner
            .verify(quote, c, now, &self.policy)
            .map_err(|e| match e {
                dcap_verify::VerifyError::Quote(q) => quote_failure(&q),
                dcap_verify::VerifyError::UnsupportedQuote(m) => {
                    VerifyFailure::UnsupportedTee(m.to_owned())
                }
                e => VerifyFailure::Rejected(e.to_string()),
            })?;
        let config_id = sgx_quote::Quote::parse_tolerant(quote)
            .ok()
            .and_then(|(q, _)| q.sgx_report_body().map(|b| b.config_id))
            .unwrap_or([0; 64]);
        Ok(VerifiedQuote {
            tcb_status: v.status.as_str().to_owned(),
            advisory_ids: v.advisory_ids.clone(),
            mr_enclave: v.mr_enclave,
            mr_signer: v.mr_signer,
            isv_prod_id: v.isv_prod_id,
            isv_svn: v.isv_svn,
            debug: v.debug,
            report_data: v.report_data,
            config_id,
            fmspc: v.fmspc,
            valid_until: i64::try_from(v.valid_until.0).unwrap_or(i64::MAX),
        })
    }
}

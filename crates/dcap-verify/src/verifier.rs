//! The verifier: the checks of Intel's QVL in order, with a cache of everything verified once.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, RwLock};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use sgx_quote::pck::SgxExtension;
use sgx_quote::{CertDataType, Quote, QuoteBody};

use crate::anchors::TrustAnchors;
use crate::collateral::Collateral;
use crate::crypto::{Crypto, sha256, uncompressed};
use crate::error::{Item, VerifyError};
use crate::policy::Policy;
use crate::tcb::{self, QeIdentity, QeReportFields, TcbId, TcbInfo};
use crate::verdict::{UnixTime, Verdict};
use crate::x509::{Chain, Crl};

/// Most entries per cache map; beyond it the map is cleared (a fleet has few platforms and one collateral set per
/// FMSPC, so this only bounds memory under abuse).
const MAX_CACHE_ENTRIES: usize = 4096;
/// Bytes of a key that are hashed from each end (equality still compares every byte).
const KEY_SAMPLE: usize = 512;

/// Buckets of cache entries by a sampled hash of their key bytes; lookups compare the full key.
type Buckets<E> = HashMap<u64, Vec<Arc<E>>>;

/// Inserts `e` under `h`, dropping entries that `keep` rejects when the map is full.
fn insert_bounded<E>(m: &mut Buckets<E>, h: u64, e: Arc<E>, keep: impl Fn(&E) -> bool) {
    if m.len() >= MAX_CACHE_ENTRIES {
        m.retain(|_, v| {
            v.retain(|e| keep(e));
            !v.is_empty()
        });
        if m.len() >= MAX_CACHE_ENTRIES {
            m.clear();
        }
    }
    let bucket = m.entry(h).or_default();
    bucket.retain(|e| keep(e));
    bucket.push(e);
}

/// Validity window of one item.
#[derive(Clone, Copy, Debug)]
struct Window {
    item: Item,
    not_before: UnixTime,
    not_after: UnixTime,
}

/// A verified PCK chain (by its PEM bytes).
struct PckEntry {
    pem: Box<[u8]>,
    chain: Chain,
    ext: SgxExtension,
    pck_key: ParsedPublicKey,
    /// Key that must sign the PCK CRL (the leaf's issuer).
    ca_key: Vec<u8>,
    windows: Vec<Window>,
    /// The last QE report (raw bytes, then its signature) found signed by `pck_key`. The
    /// PCE signs the QE report when it certifies the QE's attestation key, so every quote
    /// made with that key carries the same one: later quotes compare bytes instead of
    /// verifying the same signature again.
    qe_report_verified: RwLock<Option<Box<[u8]>>>,
}

impl PckEntry {
    /// Whether `report ‖ signature` was already found signed by this PCK key.
    fn qe_report_seen(&self, report: &[u8], signature: &[u8; 64]) -> bool {
        self.qe_report_verified.read().is_ok_and(|seen| {
            seen.as_deref().is_some_and(|b| {
                b.len() == report.len().saturating_add(signature.len())
                    && b.starts_with(report)
                    && b.ends_with(signature)
            })
        })
    }

    fn remember_qe_report(&self, report: &[u8], signature: &[u8; 64]) {
        if let Ok(mut seen) = self.qe_report_verified.write() {
            *seen = Some([report, signature.as_slice()].concat().into_boxed_slice());
        }
    }
}

/// A parsed CRL whose signature was verified with `verified_with`.
struct CrlEntry {
    der: Box<[u8]>,
    crl: Crl,
    verified_with: Vec<u8>,
}

/// A signed TCB info or QE identity whose signature and issuer chain were verified.
struct SignedEntry<T> {
    text: String,
    signature: Vec<u8>,
    chain_pem: String,
    parsed: T,
    signer: Chain,
    windows: Vec<Window>,
}

/// A signed document of the collateral, verified, or why it is not.
type Signed<T> = Result<Arc<SignedEntry<T>>, VerifyError>;

/// A verified TCB signing chain (by its PEM text).
struct SignerEntry {
    pem: String,
    chain: Chain,
}

#[derive(Default)]
struct Cache {
    pck: Buckets<PckEntry>,
    signers: Buckets<SignerEntry>,
    crl: Buckets<CrlEntry>,
    tcb_info: Buckets<SignedEntry<TcbInfo>>,
    qe_identity: Buckets<SignedEntry<QeIdentity>>,
}

fn not_after(w: &[Window]) -> UnixTime {
    w.iter().map(|w| w.not_after).min().unwrap_or(UnixTime::MAX)
}

/// Time checks of one verification: strict, or recorded as a flag.
struct Clock {
    now: UnixTime,
    allow_expired: bool,
    expired: bool,
    valid_until: UnixTime,
}

impl Clock {
    fn check(&mut self, w: &Window) -> Result<(), VerifyError> {
        self.valid_until = self.valid_until.min(w.not_after);
        let err = if self.now < w.not_before {
            VerifyError::NotYetValid {
                item: w.item,
                not_before: w.not_before,
                now: self.now,
            }
        } else if self.now > w.not_after {
            VerifyError::Expired {
                item: w.item,
                not_after: w.not_after,
                now: self.now,
            }
        } else {
            return Ok(());
        };
        if self.allow_expired {
            self.expired = true;
            Ok(())
        } else {
            Err(err)
        }
    }

    fn check_all(&mut self, ws: &[Window]) -> Result<(), VerifyError> {
        ws.iter().try_for_each(|w| self.check(w))
    }
}

fn chain_windows(chain: &Chain, leaf: Item) -> Vec<Window> {
    chain
        .certs
        .iter()
        .enumerate()
        .map(|(i, c)| Window {
            item: if i == 0 {
                leaf
            } else if c.is_self_issued() {
                Item::RootCaCertificate
            } else {
                Item::PckCaCertificate
            },
            not_before: c.not_before,
            not_after: c.not_after,
        })
        .collect()
}

/// Whether this process may run on more than one CPU (asked once: the answer reads cgroup files).
fn several_cpus() -> bool {
    static SEVERAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SEVERAL.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// Verifies quotes against collateral. `Send + Sync`; share one per process to benefit from its cache.
pub struct Verifier {
    inner: Arc<Inner>,
    parallel: bool,
}

/// The trust anchors and the cache, shared with the cold-path helper thread.
struct Inner {
    anchors: TrustAnchors,
    crypto: Crypto,
    hasher: RandomState,
    cache: RwLock<Cache>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("anchors", &self.inner.anchors)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier trusting `anchors`, with an empty cache.
    pub fn new(anchors: TrustAnchors) -> Verifier {
        Verifier::with_crypto(anchors, Crypto::default())
    }

    fn with_crypto(anchors: TrustAnchors, crypto: Crypto) -> Verifier {
        Verifier {
            inner: Arc::new(Inner {
                anchors,
                crypto,
                hasher: RandomState::new(),
                cache: RwLock::new(Cache::default()),
            }),
            parallel: several_cpus(),
        }
    }

    /// A verifier that accepts every signature, so fuzzers reach TCB evaluation. Never use it outside fuzzing.
    #[cfg(feature = "dangerous-fuzzing")]
    pub fn dangerous_accept_all_signatures(anchors: TrustAnchors) -> Verifier {
        Verifier::with_crypto(anchors, Crypto { accept_all: true }).with_parallel_cold_path(false)
    }

    /// Whether the cold path (collateral not yet cached) hands the TCB info, QE identity and root CRL signatures to a
    /// persistent helper thread while the caller checks the PCK chain, the PCK CRL and the quote signatures. The
    /// caller takes the work back if the helper has not started it by then, so a loaded machine costs one wake-up,
    /// never a wait for a core. Default: on when the machine has more than one CPU.
    #[must_use]
    pub fn with_parallel_cold_path(mut self, on: bool) -> Verifier {
        self.parallel = on;
        self
    }

    /// The trust anchors.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.inner.anchors
    }

    /// Drops every cached item.
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.inner.cache.write() {
            *c = Cache::default();
        }
    }

    /// Verifies `quote` (raw bytes; trailing bytes after the quote are ignored) with `collateral` at `now`, then
    /// applies `policy`.
    pub fn verify(
        &self,
        quote: &[u8],
        collateral: &Collateral,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Verdict, VerifyError> {
        self.inner
            .verify(quote, collateral, now, policy, self.parallel)
    }
}

impl Inner {
    /// Sampled hash of `b`: its length and up to [`KEY_SAMPLE`] bytes from each end.
    fn key_hash(&self, b: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_usize(b.len());
        h.write(b.get(..KEY_SAMPLE).unwrap_or(b));
        h.write(b.get(b.len().saturating_sub(KEY_SAMPLE)..).unwrap_or(b));
        h.finish()
    }

    fn verify(
        self: &Arc<Self>,
        quote: &[u8],
        collateral: &Collateral,
        now: UnixTime,
        policy: &Policy,
        parallel: bool,
    ) -> Result<Verdict, VerifyError> {
        let mut clock = Clock {
            now,
            allow_expired: policy.allow_expired_collateral,
            expired: false,
            valid_until: UnixTime::MAX,
        };

        // 1. Parse. Collateral checks come first (as in Intel's QvE), so a bad collateral item costs one ECDSA check.
        let (q, _trailing) = Quote::parse_tolerant(quote)?;
        let report = match &q.body {
            QuoteBody::Sgx(r) => r,
            _ => {
                return Err(VerifyError::UnsupportedQuote(
                    "TDX quotes are not supported yet",
                ));
            }
        };
        let sig = &q.signature;
        let qe = &sig.qe;

        // 2. PCK chain to a pinned root, SGX extension.
        let pck_pem: &[u8] = match qe.certification.cert_type {
            CertDataType::PckCertChain => qe.certification.data,
            other => collateral
                .pck_certificate_chain
                .as_deref()
                .map(str::as_bytes)
                .ok_or(VerifyError::PckCertificateNeeded {
                    cert_type: other.to_u16(),
                })?,
        };
        // Cold path with `with_parallel_cold_path(true)` (collateral not yet verified by this verifier): verify the TCB
        // info, QE identity and root CRL signatures on a helper thread while this one does the PCK chain, the PCK CRL
        // and the quote / QE report signatures. The results are only applied below, in order, so the first failure
        // reported does not depend on the threads.
        let att_key = uncompressed(&sig.attestation_key);
        let verify_quote_sig = || {
            self.crypto
                .verify_raw_sig(&att_key, q.signed_region, &sig.quote_signature, Item::Quote)
        };
        let verify_qe_sig = |pck: &PckEntry| {
            if pck.qe_report_seen(qe.qe_report_raw, &qe.qe_report_signature) {
                return Ok(());
            }
            if self.crypto.accept_all_or(|| {
                pck.pck_key
                    .verify_sig(qe.qe_report_raw, &qe.qe_report_signature)
                    .is_ok()
            }) {
                pck.remember_qe_report(qe.qe_report_raw, &qe.qe_report_signature);
                Ok(())
            } else {
                Err(VerifyError::SignatureInvalid {
                    item: Item::QeReport,
                })
            }
        };
        let cached = (
            self.cached_signed::<TcbInfo>(
                &collateral.tcb_info,
                &collateral.tcb_info_signature,
                &collateral.tcb_info_issuer_chain,
            ),
            self.cached_signed::<QeIdentity>(
                &collateral.qe_identity,
                &collateral.qe_identity_signature,
                &collateral.qe_identity_issuer_chain,
            ),
        );
        let (early_sigs, (tcb, qei)) = if let (Some(t), Some(i)) = cached
            && self.root_crl_cached(collateral)
        {
            (None, (Ok(t), Ok(i)))
        } else if !parallel {
            (None, self.signed_entries(collateral, now))
        } else {
            let (inner, c) = (Arc::clone(self), collateral.clone());
            let helper = crate::helper::offload(move || {
                let r = inner.signed_entries(&c, now);
                inner.prefetch_root_crl(&c, now);
                r
            });
            let q = verify_quote_sig();
            let mut qe_sig = None;
            if let Ok(pck) = self.pck_entry(pck_pem, now) {
                if !collateral.pck_crl.is_empty() {
                    self.prefetch_crl(&collateral.pck_crl, Item::PckCrl, &[&pck.ca_key], now);
                }
                qe_sig = Some(verify_qe_sig(&pck));
            }
            (Some((q, qe_sig)), helper.join())
        };

        let pck = self.pck_entry(pck_pem, now)?;
        clock.check_all(&pck.windows)?;

        // 3. CRLs: the PCK CRL of the leaf's issuer, the root CA CRL over the CA certificates.
        let leaf = pck.chain.leaf().ok_or(VerifyError::ChainBroken {
            item: Item::PckCertificate,
            reason: "no certificate",
        })?;
        if collateral.pck_crl.is_empty() {
            if !policy.allow_missing_crls {
                return Err(VerifyError::CrlMissing { crl: Item::PckCrl });
            }
        } else {
            let crl = self.crl_entry(
                &collateral.pck_crl,
                Item::PckCrl,
                &leaf.issuer,
                leaf.issuer_cn.as_str(),
                &[pck.ca_key.as_slice()],
                now,
            )?;
            clock.check(&Window {
                item: Item::PckCrl,
                not_before: crl.crl.this_update,
                not_after: crl.crl.next_update,
            })?;
            if crl.crl.is_revoked(&leaf.serial) {
                return Err(VerifyError::Revoked {
                    item: Item::PckCertificate,
                });
            }
        }

        // 4. TCB info and QE identity: signatures over the exact bytes, by a chain to a pinned root.
        let tcb = tcb?;
        clock.check_all(&tcb.windows)?;
        let qei = qei?;
        clock.check_all(&qei.windows)?;

        // Root CA CRL: CA certificates of both chains must not be listed.
        let top = pck.chain.top().ok_or(VerifyError::ChainBroken {
            item: Item::PckCertificate,
            reason: "no certificate",
        })?;
        let root_name = if top.is_self_issued() {
            &top.subject
        } else {
            &top.issuer
        };
        if collateral.root_ca_crl.is_empty() {
            if !policy.allow_missing_crls {
                return Err(VerifyError::CrlMissing {
                    crl: Item::RootCaCrl,
                });
            }
        } else {
            let keys: Vec<&[u8]> = self.anchors.keys().iter().map(Vec::as_slice).collect();
            let crl = self.crl_entry(
                &collateral.root_ca_crl,
                Item::RootCaCrl,
                root_name,
                "Intel SGX Root CA",
                &keys,
                now,
            )?;
            clock.check(&Window {
                item: Item::RootCaCrl,
                not_before: crl.crl.this_update,
                not_after: crl.crl.next_update,
            })?;
            let covered = pck
                .chain
                .certs
                .iter()
                .skip(1)
                .map(|c| (c, Item::PckCaCertificate))
                .chain(
                    tcb.signer
                        .certs
                        .iter()
                        .map(|c| (c, Item::TcbSigningCertificate)),
                )
                .chain(
                    qei.signer
                        .certs
                        .iter()
                        .map(|c| (c, Item::TcbSigningCertificate)),
                );
            for (c, item) in covered {
                if !c.is_self_issued()
                    && c.issuer == crl.crl.issuer
                    && crl.crl.is_revoked(&c.serial)
                {
                    return Err(VerifyError::Revoked { item });
                }
            }
        }

        // 5. The quote: signature by the attestation key over header ‖ body, QE report binding, QE report
        //    signature by the PCK key.
        let (quote_sig, qe_sig) = match early_sigs {
            Some((q, qe_sig)) => (q, qe_sig),
            None => (verify_quote_sig(), None),
        };
        quote_sig?;
        let binding = sha256(&[&sig.attestation_key, qe.qe_auth_data]);
        let rd = &qe.qe_report.report_data.0;
        if rd.get(..32) != Some(&binding[..])
            || rd.get(32..).is_none_or(|z| z.iter().any(|b| *b != 0))
        {
            return Err(VerifyError::QeReportDataMismatch);
        }
        match qe_sig {
            Some(r) => r?,
            None => verify_qe_sig(&pck)?,
        }

        // 6. TCB info applies to this platform; platform TCB level.
        let info = &tcb.parsed;
        if info.id != TcbId::Sgx {
            return Err(VerifyError::UnsupportedCollateral {
                item: Item::TcbInfo,
                reason: "TDX TCB info for an SGX quote".into(),
            });
        }
        if info.fmspc != pck.ext.fmspc {
            return Err(VerifyError::FmspcMismatch {
                pck: hex::encode_upper(pck.ext.fmspc),
                tcb_info: hex::encode_upper(info.fmspc),
            });
        }
        if info.pce_id != pck.ext.pce_id {
            return Err(VerifyError::PceIdMismatch {
                pck: hex::encode_upper(pck.ext.pce_id),
                tcb_info: hex::encode_upper(info.pce_id),
            });
        }

        // 7. QE identity.
        let ident = &qei.parsed;
        if ident.id != "QE" {
            return Err(VerifyError::UnsupportedCollateral {
                item: Item::QeIdentity,
                reason: format!("identity {:?} is not the SGX QE's", ident.id),
            });
        }
        let qr = &qe.qe_report;
        tcb::check_qe_identity(
            ident,
            &QeReportFields {
                misc_select: qr.misc_select.0.to_le_bytes(),
                attributes: qr.attributes.to_bytes(),
                mr_signer: &qr.mr_signer.0,
                isv_prod_id: qr.isv_prod_id,
            },
        )?;
        if qr.attributes.is_debug() {
            return Err(VerifyError::DebugQe);
        }
        let qe_level = ident
            .level(qr.isv_svn)
            .ok_or(VerifyError::QeTcbNotSupported {
                isv_svn: qr.isv_svn,
            })?;

        let level = info
            .sgx_level(&pck.ext.tcb.comp_svn, pck.ext.tcb.pce_svn)
            .ok_or(VerifyError::TcbNotSupported)?;
        let status = tcb::merge(level.status, qe_level.status);
        let advisory_ids = tcb::union(&level.advisory_ids, &qe_level.advisory_ids);

        // 8. Policy.
        let debug = report.attributes.is_debug();
        if debug && !policy.allow_debug {
            return Err(VerifyError::DebugEnclave);
        }
        if !policy.accepts(status) {
            return Err(VerifyError::StatusNotAccepted(status));
        }
        if let Some(a) = advisory_ids
            .iter()
            .find(|a| policy.rejected_advisories.contains(a))
        {
            return Err(VerifyError::AdvisoryNotAccepted(a.clone()));
        }

        Ok(Verdict {
            status,
            advisory_ids,
            platform_status: level.status,
            qe_status: qe_level.status,
            mr_enclave: report.mr_enclave.0,
            mr_signer: report.mr_signer.0,
            isv_prod_id: report.isv_prod_id,
            isv_svn: report.isv_svn,
            attributes: report.attributes.to_bytes(),
            debug,
            report_data: report.report_data.0,
            fmspc: pck.ext.fmspc,
            pce_id: pck.ext.pce_id,
            ppid: pck.ext.ppid,
            tcb_evaluation_data_number: info.tcb_evaluation_data_number,
            valid_until: clock.valid_until,
            collateral_expired: clock.expired,
        })
    }

    /// The TCB info and QE identity of `c`, their signatures and issuer chains verified (or cached).
    fn signed_entries(
        &self,
        c: &Collateral,
        now: UnixTime,
    ) -> (Signed<TcbInfo>, Signed<QeIdentity>) {
        (
            self.signed_entry::<TcbInfo>(
                &c.tcb_info,
                &c.tcb_info_signature,
                &c.tcb_info_issuer_chain,
                Item::TcbInfo,
                now,
            ),
            self.signed_entry::<QeIdentity>(
                &c.qe_identity,
                &c.qe_identity_signature,
                &c.qe_identity_issuer_chain,
                Item::QeIdentity,
                now,
            ),
        )
    }

    /// The cached, verified entry for this exact signed text, signature and issuer chain.
    fn cached_signed<T: Parsed>(
        &self,
        text: &str,
        signature: &[u8],
        chain_pem: &str,
    ) -> Option<Arc<SignedEntry<T>>> {
        let h = self.key_hash(signature);
        let cache = self.cache.read().ok()?;
        T::map(&cache)
            .get(&h)?
            .iter()
            .find(|e| e.signature == signature && e.text == text && e.chain_pem == chain_pem)
            .cloned()
    }

    /// Whether the root CRL of `c` is absent or already verified.
    fn root_crl_cached(&self, c: &Collateral) -> bool {
        c.root_ca_crl.is_empty()
            || self.cache.read().ok().is_some_and(|cache| {
                cache
                    .crl
                    .get(&self.key_hash(&c.root_ca_crl))
                    .is_some_and(|b| b.iter().any(|e| *e.der == *c.root_ca_crl))
            })
    }

    /// Verifies (and caches) the root CRL's signature; errors are left for the ordered checks.
    fn prefetch_root_crl(&self, c: &Collateral, now: UnixTime) {
        if !c.root_ca_crl.is_empty() {
            let keys: Vec<&[u8]> = self.anchors.keys().iter().map(Vec::as_slice).collect();
            self.prefetch_crl(&c.root_ca_crl, Item::RootCaCrl, &keys, now);
        }
    }

    /// Parses a CRL and caches it if one of `keys` signed it (the issuer check is left to [`Self::crl_entry`]).
    fn prefetch_crl(&self, der: &[u8], item: Item, keys: &[&[u8]], now: UnixTime) {
        let h = self.key_hash(der);
        let cached = self.cache.read().ok().is_some_and(|c| {
            c.crl.get(&h).is_some_and(|b| {
                b.iter()
                    .any(|e| *e.der == *der && keys.contains(&e.verified_with.as_slice()))
            })
        });
        if cached {
            return;
        }
        let Ok(crl) = Crl::parse(der, item) else {
            return;
        };
        let Some(key) = keys.iter().find(|k| {
            self.crypto
                .verify_der_sig(k, &crl.tbs, &crl.signature, item)
                .is_ok()
        }) else {
            return;
        };
        let entry = Arc::new(CrlEntry {
            der: der.into(),
            crl,
            verified_with: key.to_vec(),
        });
        if let Ok(mut c) = self.cache.write() {
            insert_bounded(&mut c.crl, h, entry, |e| e.crl.next_update >= now);
        }
    }

    fn pck_entry(&self, pem: &[u8], now: UnixTime) -> Result<Arc<PckEntry>, VerifyError> {
        let h = self.key_hash(pem);
        let found = self.cache.read().ok().and_then(|c| {
            c.pck
                .get(&h)
                .and_then(|b| b.iter().find(|e| &*e.pem == pem).cloned())
        });
        if let Some(e) = found {
            return Ok(e);
        }
        let chain = Chain::build(
            pem,
            Item::PckCertificate,
            "SGX PCK Certificate",
            &self.anchors,
            &self.crypto,
        )?;
        let leaf = chain.leaf().ok_or(VerifyError::ChainBroken {
            item: Item::PckCertificate,
            reason: "no certificate",
        })?;
        let ext = SgxExtension::from_cert_der(&leaf.der).map_err(VerifyError::PckExtension)?;
        let pck_key =
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &leaf.public_key).map_err(|_| {
                VerifyError::MalformedCertificate {
                    item: Item::PckCertificate,
                    reason: "public key is not a P-256 point".into(),
                }
            })?;
        let ca_key = match chain.certs.get(1) {
            Some(ca) => ca.public_key.clone(),
            None => self
                .anchors
                .keys()
                .iter()
                .find(|k| {
                    self.crypto
                        .verify_der_sig(k, &leaf.tbs, &leaf.signature, Item::PckCertificate)
                        .is_ok()
                })
                .cloned()
                .unwrap_or_default(),
        };
        let windows = chain_windows(&chain, Item::PckCertificate);
        let entry = Arc::new(PckEntry {
            pem: pem.into(),
            chain,
            ext,
            pck_key,
            ca_key,
            windows,
            qe_report_verified: RwLock::new(None),
        });
        if let Ok(mut c) = self.cache.write() {
            insert_bounded(&mut c.pck, h, entry.clone(), |e| {
                not_after(&e.windows) >= now
            });
        }
        Ok(entry)
    }

    /// A CRL whose issuer must be `issuer` and which must verify with one of `keys`.
    fn crl_entry(
        &self,
        der: &[u8],
        item: Item,
        issuer: &[u8],
        issuer_cn: &str,
        keys: &[&[u8]],
        now: UnixTime,
    ) -> Result<Arc<CrlEntry>, VerifyError> {
        let h = self.key_hash(der);
        let cached = self.cache.read().ok().and_then(|c| {
            c.crl
                .get(&h)
                .and_then(|b| b.iter().find(|e| &*e.der == der).cloned())
        });
        let entry = match cached {
            Some(e) => e,
            None => Arc::new(CrlEntry {
                der: der.into(),
                crl: Crl::parse(der, item)?,
                verified_with: Vec::new(),
            }),
        };
        if entry.crl.issuer != issuer {
            return Err(VerifyError::CrlIssuerMismatch {
                crl: item,
                expected: issuer_cn.to_owned(),
                found: entry.crl.issuer_cn.clone(),
            });
        }
        if keys.contains(&entry.verified_with.as_slice()) {
            return Ok(entry);
        }
        let key = keys
            .iter()
            .find(|k| {
                self.crypto
                    .verify_der_sig(k, &entry.crl.tbs, &entry.crl.signature, item)
                    .is_ok()
            })
            .ok_or(VerifyError::SignatureInvalid { item })?;
        let entry = Arc::new(CrlEntry {
            der: der.into(),
            crl: entry.crl.clone(),
            verified_with: key.to_vec(),
        });
        if let Ok(mut c) = self.cache.write() {
            insert_bounded(&mut c.crl, h, entry.clone(), |e| e.crl.next_update >= now);
        }
        Ok(entry)
    }

    fn signer_chain(&self, pem: &str, now: UnixTime) -> Result<Arc<SignerEntry>, VerifyError> {
        let h = self.key_hash(pem.as_bytes());
        let found = self.cache.read().ok().and_then(|c| {
            c.signers
                .get(&h)
                .and_then(|b| b.iter().find(|e| e.pem == pem).cloned())
        });
        if let Some(e) = found {
            return Ok(e);
        }
        let chain = Chain::build(
            pem.as_bytes(),
            Item::TcbSigningCertificate,
            "TCB Signing",
            &self.anchors,
            &self.crypto,
        )?;
        let entry = Arc::new(SignerEntry {
            pem: pem.to_owned(),
            chain,
        });
        if let Ok(mut c) = self.cache.write() {
            insert_bounded(&mut c.signers, h, entry.clone(), |e| {
                e.chain.certs.iter().all(|c| c.not_after >= now)
            });
        }
        Ok(entry)
    }

    fn signed_entry<T: Parsed>(
        &self,
        text: &str,
        signature: &[u8],
        chain_pem: &str,
        item: Item,
        now: UnixTime,
    ) -> Result<Arc<SignedEntry<T>>, VerifyError> {
        let h = self.key_hash(signature);
        if let Some(e) = self.cached_signed::<T>(text, signature, chain_pem) {
            return Ok(e);
        }
        let signer = self.signer_chain(chain_pem, now)?.chain.clone();
        let leaf = signer.leaf().ok_or(VerifyError::ChainBroken {
            item: Item::TcbSigningCertificate,
            reason: "no certificate",
        })?;
        if signature.len() != 64 {
            return Err(VerifyError::SignatureInvalid { item });
        }
        self.crypto
            .verify_raw_sig(&leaf.public_key, text.as_bytes(), signature, item)?;
        let parsed = T::parse(text)?;
        let mut windows = chain_windows(&signer, Item::TcbSigningCertificate);
        let (nb, na) = T::window(&parsed);
        windows.push(Window {
            item,
            not_before: nb,
            not_after: na,
        });
        let entry = Arc::new(SignedEntry {
            text: text.to_owned(),
            signature: signature.to_vec(),
            chain_pem: chain_pem.to_owned(),
            parsed,
            signer,
            windows,
        });
        if let Ok(mut c) = self.cache.write() {
            insert_bounded(T::map_mut(&mut c), h, entry.clone(), |e| {
                not_after(&e.windows) >= now
            });
        }
        Ok(entry)
    }
}

/// TCB info and QE identity, for the shared signed-document cache.
trait Parsed: Sized {
    fn parse(text: &str) -> Result<Self, VerifyError>;
    fn window(&self) -> (UnixTime, UnixTime);
    fn map(c: &Cache) -> &Buckets<SignedEntry<Self>>;
    fn map_mut(c: &mut Cache) -> &mut Buckets<SignedEntry<Self>>;
}

impl Parsed for TcbInfo {
    fn parse(text: &str) -> Result<Self, VerifyError> {
        TcbInfo::parse(text)
    }
    fn window(&self) -> (UnixTime, UnixTime) {
        (self.issue_date, self.next_update)
    }
    fn map(c: &Cache) -> &Buckets<SignedEntry<Self>> {
        &c.tcb_info
    }
    fn map_mut(c: &mut Cache) -> &mut Buckets<SignedEntry<Self>> {
        &mut c.tcb_info
    }
}

impl Parsed for QeIdentity {
    fn parse(text: &str) -> Result<Self, VerifyError> {
        QeIdentity::parse(text)
    }
    fn window(&self) -> (UnixTime, UnixTime) {
        (self.issue_date, self.next_update)
    }
    fn map(c: &Cache) -> &Buckets<SignedEntry<Self>> {
        &c.qe_identity
    }
    fn map_mut(c: &mut Cache) -> &mut Buckets<SignedEntry<Self>> {
        &mut c.qe_identity
    }
}

//! The X.509 certificates and CRLs of the SGX PKI: parsing (x509-cert), exact signed bytes, signatures.

use std::collections::HashSet;

use const_oid::ObjectIdentifier;
use der::{Decode, Encode, Header, Reader, SliceReader};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;

use crate::crypto::Crypto;
use crate::error::{Item, VerifyError};
use crate::verdict::UnixTime;

/// ecdsa-with-SHA256.
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// Common name attribute.
const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// Most certificates a chain may hold (leaf, intermediate, root, plus a duplicate root variant).
pub(crate) const MAX_CHAIN_LEN: usize = 5;

/// Splits PEM text into DER certificates (tolerates a trailing NUL and text around the blocks).
pub(crate) fn pem_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine;
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(b) = find(rest, BEGIN) {
        let body = rest
            .get(b.saturating_add(BEGIN.len())..)
            .unwrap_or_default();
        let e = find(body, END).ok_or("PEM block without END line")?;
        let b64: Vec<u8> = body
            .get(..e)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .map_err(|e| format!("PEM base64: {e}"))?;
        out.push(der);
        if out.len() > MAX_CHAIN_LEN {
            return Err("too many certificates".into());
        }
        rest = body.get(e.saturating_add(END.len())..).unwrap_or_default();
    }
    Ok(out)
}

/// The exact signed bytes (tbs TLV) and the signature of a `SEQUENCE { tbs, algorithm, signature }`.
fn tbs_slice(der: &[u8]) -> der::Result<&[u8]> {
    let mut r = SliceReader::new(der)?;
    let _outer = Header::decode(&mut r)?;
    let start = usize::try_from(r.position())?;
    let tbs = Header::decode(&mut r)?;
    r.read_slice(tbs.length)?;
    let end = usize::try_from(r.position())?;
    der.get(start..end).ok_or_else(|| {
        der::ErrorKind::Incomplete {
            expected_len: r.position(),
            actual_len: der::Length::ZERO,
        }
        .into()
    })
}

fn time_secs(t: x509_cert::time::Time) -> UnixTime {
    UnixTime(t.to_unix_duration().as_secs())
}

fn common_name(name: &x509_cert::name::Name) -> String {
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == CN {
                if let Ok(s) = atv.value.decode_as::<der::asn1::Utf8StringRef<'_>>() {
                    return s.as_str().to_owned();
                }
                if let Ok(s) = atv.value.decode_as::<der::asn1::PrintableStringRef<'_>>() {
                    return s.as_str().to_owned();
                }
            }
        }
    }
    String::new()
}

/// A parsed certificate with what verification needs.
#[derive(Clone, Debug)]
pub(crate) struct Cert {
    pub(crate) der: Vec<u8>,
    pub(crate) tbs: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    pub(crate) subject: Vec<u8>,
    pub(crate) issuer: Vec<u8>,
    pub(crate) subject_cn: String,
    pub(crate) issuer_cn: String,
    pub(crate) serial: Vec<u8>,
    pub(crate) not_before: UnixTime,
    pub(crate) not_after: UnixTime,
    /// Uncompressed P-256 point.
    pub(crate) public_key: Vec<u8>,
}

impl Cert {
    pub(crate) fn parse(der: &[u8], item: Item) -> Result<Cert, VerifyError> {
        let bad = |reason: String| VerifyError::MalformedCertificate { item, reason };
        let c = Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
        if c.signature_algorithm.oid != ECDSA_WITH_SHA256 {
            return Err(bad(format!(
                "signature algorithm {} is not ecdsa-with-SHA256",
                c.signature_algorithm.oid
            )));
        }
        let tbs = tbs_slice(der).map_err(|e| bad(e.to_string()))?;
        let t = &c.tbs_certificate;
        let v = t.validity;
        Ok(Cert {
            der: der.to_vec(),
            tbs: tbs.to_vec(),
            signature: c.signature.raw_bytes().to_vec(),
            subject: t.subject.to_der().map_err(|e| bad(e.to_string()))?,
            issuer: t.issuer.to_der().map_err(|e| bad(e.to_string()))?,
            subject_cn: common_name(&t.subject),
            issuer_cn: common_name(&t.issuer),
            serial: t.serial_number.as_bytes().to_vec(),
            not_before: time_secs(v.not_before),
            not_after: time_secs(v.not_after),
            public_key: t
                .subject_public_key_info
                .subject_public_key
                .raw_bytes()
                .to_vec(),
        })
    }

    pub(crate) fn verify_signed_by(
        &self,
        issuer_key: &[u8],
        crypto: &Crypto,
        item: Item,
    ) -> Result<(), VerifyError> {
        crypto.verify_der_sig(issuer_key, &self.tbs, &self.signature, item)
    }

    pub(crate) fn is_self_issued(&self) -> bool {
        self.subject == self.issuer
    }
}

/// A parsed CRL.
#[derive(Clone, Debug)]
pub(crate) struct Crl {
    pub(crate) tbs: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    pub(crate) issuer: Vec<u8>,
    pub(crate) issuer_cn: String,
    pub(crate) this_update: UnixTime,
    pub(crate) next_update: UnixTime,
    pub(crate) revoked: HashSet<Vec<u8>>,
}

impl Crl {
    pub(crate) fn parse(der: &[u8], item: Item) -> Result<Crl, VerifyError> {
        let bad = |reason: String| VerifyError::MalformedCollateral {
            field: if item == Item::PckCrl {
                "pck_crl"
            } else {
                "root_ca_crl"
            },
            reason,
        };
        let c = CertificateList::from_der(der).map_err(|e| bad(e.to_string()))?;
        if c.signature_algorithm.oid != ECDSA_WITH_SHA256 {
            return Err(bad("signature algorithm is not ecdsa-with-SHA256".into()));
        }
        let tbs = tbs_slice(der).map_err(|e| bad(e.to_string()))?;
        let t = &c.tbs_cert_list;
        let next_update = t
            .next_update
            .map(time_secs)
            .ok_or_else(|| bad("no nextUpdate".into()))?;
        let revoked = t
            .revoked_certificates
            .iter()
            .flatten()
            .map(|r| r.serial_number.as_bytes().to_vec())
            .collect();
        Ok(Crl {
            tbs: tbs.to_vec(),
            signature: c.signature.raw_bytes().to_vec(),
            issuer: t.issuer.to_der().map_err(|e| bad(e.to_string()))?,
            issuer_cn: common_name(&t.issuer),
            this_update: time_secs(t.this_update),
            next_update,
            revoked,
        })
    }

    pub(crate) fn is_revoked(&self, serial: &[u8]) -> bool {
        self.revoked.contains(serial)
    }
}

/// A verified chain, leaf first; the last element's issuer is a trusted key (it is either self-signed by a pinned
/// key, or signed by one).
#[derive(Clone, Debug)]
pub(crate) struct Chain {
    pub(crate) certs: Vec<Cert>,
}

impl Chain {
    /// Parses `pem`, picks the leaf (the certificate that issued no other one, preferring a subject CN containing
    /// `leaf_cn`), links issuers by name and verifies every signature up to a pinned key.
    pub(crate) fn build(
        pem: &[u8],
        leaf_item: Item,
        leaf_cn: &str,
        anchors: &crate::TrustAnchors,
        crypto: &Crypto,
    ) -> Result<Chain, VerifyError> {
        let ders = pem_certs(pem).map_err(|reason| VerifyError::MalformedCertificate {
            item: leaf_item,
            reason,
        })?;
        if ders.is_empty() {
            return Err(VerifyError::ChainBroken {
                item: leaf_item,
                reason: "no certificate",
            });
        }
        let mut pool = Vec::with_capacity(ders.len());
        for d in &ders {
            pool.push(Cert::parse(d, leaf_item)?);
        }
        let leaf_idx = pool
            .iter()
            .position(|c| c.subject_cn.contains(leaf_cn))
            .or_else(|| {
                pool.iter().position(|c| {
                    !pool
                        .iter()
                        .any(|o| !std::ptr::eq(o, c) && o.issuer == c.subject)
                })
            })
            .ok_or(VerifyError::ChainBroken {
                item: leaf_item,
                reason: "no leaf certificate",
            })?;
        let mut chain = vec![pool.swap_remove(leaf_idx)];
        while let Some(cur) = chain.last() {
            if cur.is_self_issued() {
                break;
            }
            let Some(pos) = pool.iter().position(|c| c.subject == cur.issuer) else {
                break;
            };
            if chain.len() >= MAX_CHAIN_LEN {
                return Err(VerifyError::ChainBroken {
                    item: leaf_item,
                    reason: "chain too long",
                });
            }
            let parent = pool.swap_remove(pos);
            let item = if chain.len() == 1 {
                leaf_item
            } else {
                Item::PckCaCertificate
            };
            let preverified =
                anchors.contains(&parent.public_key) && anchors.is_preverified(&cur.der);
            if !preverified {
                cur.verify_signed_by(&parent.public_key, crypto, item)?;
            }
            chain.push(parent);
        }
        let Some(top) = chain.last() else {
            return Err(VerifyError::ChainBroken {
                item: leaf_item,
                reason: "no certificate",
            });
        };
        if top.is_self_issued() {
            // The key is pinned: its self-signature adds nothing.
            if !anchors.contains(&top.public_key) {
                return Err(VerifyError::UntrustedRoot { item: leaf_item });
            }
        } else {
            // The chain stops below the root: its top must be signed by a pinned key.
            let ok = anchors.is_preverified(&top.der)
                || anchors.keys().iter().any(|k| {
                    crypto
                        .verify_der_sig(k, &top.tbs, &top.signature, leaf_item)
                        .is_ok()
                });
            if !ok {
                return Err(VerifyError::UntrustedRoot { item: leaf_item });
            }
        }
        Ok(Chain { certs: chain })
    }

    pub(crate) fn leaf(&self) -> Option<&Cert> {
        self.certs.first()
    }

    /// The top certificate (root, or the highest intermediate).
    pub(crate) fn top(&self) -> Option<&Cert> {
        self.certs.last()
    }
}

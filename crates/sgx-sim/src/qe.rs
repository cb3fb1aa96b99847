//! The software QE3: a P-256 attestation key certified by the simulated PCK key.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use sgx_quote::quote::INTEL_QE_VENDOR_ID;
use sgx_quote::{
    AttestationKeyType, Attributes, CertDataType, CertificationData, CpuSvn, MiscSelect, MrEnclave,
    MrSigner, QeReportCertData, Quote, QuoteBody, QuoteHeader, QuoteSignature, Report, ReportBody,
    ReportData, TargetInfo, TeeType,
};

use crate::{Error, PlatformTcb, Result, SimPki};

/// MRSIGNER of Intel's production QE3; the simulated QE identity names the same signer so
/// the advertised attestation key ID and the QE report agree.
pub const QE_MRSIGNER: [u8; 32] = [
    0x8c, 0x4f, 0x57, 0x75, 0xd7, 0x96, 0x50, 0x3e, 0x96, 0x13, 0x7f, 0x77, 0xc6, 0x8a, 0x82, 0x9a,
    0x00, 0x56, 0xac, 0x8d, 0xed, 0x70, 0x14, 0x0b, 0x08, 0x1b, 0x09, 0x44, 0x90, 0xc5, 0x7b, 0xff,
];

/// MRENCLAVE of the simulated QE3 (ASCII "confcom SIMULATED QE3", zero-padded).
pub const QE_MRENCLAVE: [u8; 32] = *b"confcom SIMULATED QE3\0\0\0\0\0\0\0\0\0\0\0";

/// ISVSVN of the simulated QE3.
pub const QE_ISV_SVN: u16 = 8;

/// QE authentication data (Intel's QE uses 32 bytes 00 01 .. 1f).
pub const QE_AUTH_DATA: [u8; 32] = {
    let mut a = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        a[i] = i as u8;
        i += 1;
    }
    a
};

/// QE3 ATTRIBUTES: INIT | MODE64BIT | PROVISIONKEY, XFRM x87|SSE.
const QE_ATTRIBUTES: Attributes = Attributes {
    flags: Attributes::INIT | Attributes::MODE64BIT | (1 << 4),
    xfrm: 0x3,
};

/// Generates a new attestation key (PKCS#8 DER).
pub(crate) fn generate_attestation_key() -> Result<Vec<u8>> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| Error::Crypto {
            what: "attestation key generation",
        })
}

/// A software QE3.
pub struct SoftQe {
    att_key: EcdsaKeyPair,
    att_key_pkcs8: Vec<u8>,
    att_pub: [u8; 64],
    pck_key: EcdsaKeyPair,
    chain_pem: Vec<u8>,
    qe_report: ReportBody,
    /// The quote header: the same in every quote.
    header: QuoteHeader,
    /// The signature section's length, which precedes the quote signature: the same in every
    /// quote.
    section_len: [u8; 4],
    /// Everything after the quote signature (attestation key, QE report, its signature, auth
    /// data, PCK chain): the same in every quote.
    after_signature: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for SoftQe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftQe")
            .field("pub_key_id", &hex::encode(self.pub_key_id()))
            .finish_non_exhaustive()
    }
}

fn key(pkcs8: &[u8], what: &'static str) -> Result<EcdsaKeyPair> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
        .map_err(|_| Error::Crypto { what })
}

/// The header of every quote of a QE on `platform`.
fn header(platform: &PlatformTcb) -> QuoteHeader {
    let mut user_data = [0u8; 20];
    if let Some(qe_id) = user_data.get_mut(..16) {
        let h = digest(&SHA256, &platform.ppid);
        qe_id.copy_from_slice(h.as_ref().get(..16).unwrap_or(&[0; 16]));
    }
    QuoteHeader {
        version: 3,
        att_key_type: AttestationKeyType::EcdsaP256,
        tee_type: TeeType::Sgx,
        qe_svn: QE_ISV_SVN,
        pce_svn: platform.pce_svn,
        qe_vendor_id: INTEL_QE_VENDOR_ID,
        user_data,
    }
}

fn sign(k: &EcdsaKeyPair, rng: &SystemRandom, msg: &[u8]) -> Result<[u8; 64]> {
    let sig = k
        .sign(rng, msg)
        .map_err(|_| Error::Crypto { what: "ecdsa sign" })?;
    sig.as_ref()
        .try_into()
        .map_err(|_| Error::Crypto { what: "ecdsa sign" })
}

impl SoftQe {
    /// A QE3 with the attestation key `att_key_pkcs8`, certified by `pki`'s PCK key.
    ///
    /// The QE report (REPORTDATA = SHA-256(attestation key ‖ QE auth data) ‖ 0^32) is
    /// signed once here: it does not depend on the app.
    ///
    /// # Errors
    /// Key parsing or signing failures.
    pub fn new(pki: &SimPki, att_key_pkcs8: &[u8]) -> Result<Self> {
        let att_key = key(att_key_pkcs8, "attestation key")?;
        let pck_key = key(&pki.pck_pkcs8()?, "pck key")?;
        let att_pub: [u8; 64] = att_key
            .public_key()
            .as_ref()
            .get(1..65)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Crypto {
                what: "attestation public key",
            })?;
        let mut hashed = Vec::with_capacity(96);
        hashed.extend_from_slice(&att_pub);
        hashed.extend_from_slice(&QE_AUTH_DATA);
        let mut report_data = [0u8; 64];
        if let Some(head) = report_data.get_mut(..32) {
            head.copy_from_slice(digest(&SHA256, &hashed).as_ref());
        }
        let platform = &pki.platform;
        let qe_report = ReportBody {
            cpu_svn: CpuSvn(platform.cpu_svn),
            misc_select: MiscSelect(0),
            attributes: QE_ATTRIBUTES,
            mr_enclave: MrEnclave(QE_MRENCLAVE),
            mr_signer: MrSigner(QE_MRSIGNER),
            isv_prod_id: 1,
            isv_svn: QE_ISV_SVN,
            report_data: ReportData(report_data),
            ..ReportBody::default()
        };
        let rng = SystemRandom::new();
        let qe_report_raw = qe_report.to_bytes();
        let qe_report_signature = sign(&pck_key, &rng, &qe_report_raw)?;
        let chain_pem = pki.pck_chain_pem().into_bytes();
        let header = header(platform);
        // One quote encoded by `sgx_quote`, with an empty body and a zero signature: every
        // quote is this one with its own body and signature.
        let body = QuoteBody::Sgx(ReportBody::default());
        let signed = Quote::signed_bytes(&header, &body);
        let template = Quote {
            header,
            body,
            signed_region: &signed,
            signature: QuoteSignature {
                quote_signature: [0; 64],
                attestation_key: att_pub,
                qe: QeReportCertData {
                    qe_report,
                    qe_report_raw: &qe_report_raw,
                    qe_report_signature,
                    qe_auth_data: &QE_AUTH_DATA,
                    certification: CertificationData {
                        cert_type: CertDataType::PckCertChain,
                        data: &chain_pem,
                    },
                },
            },
        }
        .try_encode()
        .map_err(|_| Error::Crypto {
            what: "quote encoding",
        })?;
        let signature_at = signed.len().saturating_add(4);
        let section_len = template
            .get(signed.len()..signature_at)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_default();
        let after_signature = template
            .get(signature_at.saturating_add(64)..)
            .unwrap_or_default()
            .to_vec();
        Ok(Self {
            att_key,
            att_key_pkcs8: att_key_pkcs8.to_vec(),
            att_pub,
            pck_key,
            chain_pem,
            qe_report,
            header,
            section_len,
            after_signature,
            rng,
        })
    }

    /// The attestation key (PKCS#8 DER), for persistence.
    #[must_use]
    pub fn attestation_key_pkcs8(&self) -> &[u8] {
        &self.att_key_pkcs8
    }

    /// The attestation public key, x‖y.
    #[must_use]
    pub fn attestation_public_key(&self) -> [u8; 64] {
        self.att_pub
    }

    /// The public key ID InitQuoteEx returns: SHA-256 of the attestation public key.
    #[must_use]
    pub fn pub_key_id(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, &self.att_pub).as_ref());
        out
    }

    /// The QE's TARGETINFO (512 bytes) that apps EREPORT against.
    #[must_use]
    pub fn target_info(&self) -> [u8; 512] {
        TargetInfo {
            mr_enclave: MrEnclave(QE_MRENCLAVE),
            attributes: QE_ATTRIBUTES,
            config_svn: 0,
            misc_select: MiscSelect(0),
            config_id: [0; 64],
        }
        .to_bytes()
    }

    /// The QE report body embedded in every quote.
    #[must_use]
    pub fn qe_report(&self) -> &ReportBody {
        &self.qe_report
    }

    /// Size in bytes of every quote this QE produces.
    #[must_use]
    pub fn quote_size(&self) -> usize {
        // header 48 + body 384 + sig len 4 + sig 64 + key 64 + QE report 384 + QE sig 64
        // + auth size 2 + auth + cert type 2 + cert size 4 + chain.
        1020usize
            .saturating_add(QE_AUTH_DATA.len())
            .saturating_add(self.chain_pem.len())
    }

    /// A v3 quote (certification data type 5) over `app`, the app enclave's report body.
    ///
    /// # Errors
    /// Signing failures.
    pub fn quote(&self, app: &ReportBody) -> Result<Vec<u8>> {
        // Header and body are what the attestation key signs; everything after the signature
        // was encoded once, in `new`.
        let mut out = Vec::with_capacity(self.quote_size());
        self.header.write(&mut out);
        QuoteBody::Sgx(*app).write(&mut out);
        let quote_signature = sign(&self.att_key, &self.rng, &out)?;
        out.extend_from_slice(&self.section_len);
        out.extend_from_slice(&quote_signature);
        out.extend_from_slice(&self.after_signature);
        Ok(out)
    }

    /// A QE REPORT for the `qe_report_info` exchange: the QE report body with
    /// `report_data` (SHA-256(nonce ‖ quote) ‖ 0^32 in AESM), targeted at `target`.
    ///
    /// The simulated QE has no report key, so KEYID and MAC are zero: apps that verify the
    /// QE report with EGETKEY cannot accept it (nothing in simulation can).
    #[must_use]
    pub fn qe_report_for(&self, _target: &TargetInfo, report_data: [u8; 64]) -> [u8; 432] {
        Report {
            body: ReportBody {
                report_data: ReportData(report_data),
                ..self.qe_report
            },
            key_id: [0; 32],
            mac: [0; 16],
        }
        .to_bytes()
    }

    /// Signs `msg` with the PCK key (used by tests and benchmarks as "one ECDSA signing").
    ///
    /// # Errors
    /// Signing failures.
    pub fn sign_with_pck(&self, msg: &[u8]) -> Result<[u8; 64]> {
        sign(&self.pck_key, &self.rng, msg)
    }
}

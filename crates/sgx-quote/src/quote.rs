//! DCAP ECDSA quotes: v3 (SGX), v4 (SGX or TDX 1.0) and v5 (SGX, TDX 1.0 or TDX 1.5).
//!
//! Layout: Intel SGX ECDSA Quote Library API, Appendix A "Quote Format" (v3: header,
//! enclave report body, quote signature data with QE report, QE authentication data and
//! certification data), and the Intel TDX DCAP Quoting Library API, "Quote Format" (v4:
//! the QE report section moves into certification data type 6; v5: a body descriptor
//! precedes the body). Integers are little-endian; ECDSA values are raw big-endian halves.
//!
//! ```text
//! v3:    header(48) | report body(384) | u32 N | sig(64) | att key(64) | QE report section
//! v4:    header(48) | body(384|584)    | u32 N | sig(64) | att key(64) | u16 6 | u32 C | QE report section
//! v5:    header(48) | u16 type | u32 size | body(size) | u32 N | ... as v4
//! QE report section: QE report(384) | QE report sig(64) | u16 A | auth(A) | u16 type | u32 C | cert data(C)
//! ```
//!
//! The quote signature covers everything before the `u32 N`; the parser keeps that prefix as
//! [`Quote::signed_region`].

use crate::report::REPORT_BODY_LEN;
use crate::td::{TD_REPORT10_LEN, TD_REPORT15_LEN};
use crate::{QuoteError, Reader, ReportBody, ReportData, TdReport10, TdReport15};

/// Size of the quote header (all versions).
pub const HEADER_LEN: usize = 48;
/// Size of a raw ECDSA P-256 signature (r ‖ s, 32 bytes each, big-endian).
pub const ECDSA_SIGNATURE_LEN: usize = 64;
/// Size of a raw ECDSA P-256 public key (x ‖ y, no SEC1 `0x04` prefix).
pub const ECDSA_PUBLIC_KEY_LEN: usize = 64;
/// Size of the v5 body descriptor (u16 body type, u32 body size).
pub const BODY_DESCRIPTOR_LEN: usize = 6;
/// Intel's Quoting Enclave vendor id, `939a7233-f79c-4ca9-940a-0db3957f0607`.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// Bound on the quote signature data length (`u32 N`). Real quotes carry 0.6–4.3 KiB (a
/// three-certificate PEM chain is about 3.6 KiB); a platform manifest (type 7) of a
/// multi-package platform adds a few KiB more. 64 KiB leaves ample room.
pub const MAX_SIGNATURE_DATA_LEN: usize = 64 * 1024;
/// Bound on any certification data length (`u32 C`): it lives inside the signature data.
pub const MAX_CERT_DATA_LEN: usize = MAX_SIGNATURE_DATA_LEN;
/// Bound on the QE authentication data length (`u16 A`). Intel's QE uses 32 bytes; the
/// format allows up to 65535, we accept up to 4 KiB.
pub const MAX_QE_AUTH_DATA_LEN: usize = 4096;

/// Quote header `att_key_type` (Intel: `sgx_attestation_algorithm_id_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttestationKeyType {
    /// 2: ECDSA-256-with-P-256 curve, the only type DCAP quotes use.
    EcdsaP256,
}

impl AttestationKeyType {
    /// Decodes the header value; anything but 2 is [`QuoteError::UnsupportedKeyType`]
    /// (3 = P-384 is defined by Intel but not used by any quoting enclave).
    pub fn from_u16(v: u16) -> Result<Self, QuoteError> {
        match v {
            2 => Ok(Self::EcdsaP256),
            other => Err(QuoteError::UnsupportedKeyType(other)),
        }
    }
    /// The header value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::EcdsaP256 => 2,
        }
    }
}

/// Quote header `tee_type` (v4/v5; reserved and zero = SGX in v3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TeeType {
    /// 0x00000000: Intel SGX.
    Sgx,
    /// 0x00000081: Intel TDX.
    Tdx,
}

impl TeeType {
    /// Decodes the header value.
    pub fn from_u32(v: u32) -> Result<Self, QuoteError> {
        match v {
            0 => Ok(Self::Sgx),
            0x81 => Ok(Self::Tdx),
            other => Err(QuoteError::UnsupportedTeeType(other)),
        }
    }
    /// The header value.
    pub fn to_u32(self) -> u32 {
        match self {
            Self::Sgx => 0,
            Self::Tdx => 0x81,
        }
    }
    /// `"sgx"` or `"tdx"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sgx => "sgx",
            Self::Tdx => "tdx",
        }
    }
}

/// The 48-byte quote header.
///
/// | off | size | field |
/// |---|---|---|
/// | 0 | 2 | `version` (3, 4 or 5) |
/// | 2 | 2 | `att_key_type` (2) |
/// | 4 | 4 | `tee_type` (v4/v5); reserved, zero, in v3 |
/// | 8 | 2 | `qe_svn` (v3; reserved in v4/v5, zero in Intel's TD quotes) |
/// | 10 | 2 | `pce_svn` (v3; reserved in v4/v5) |
/// | 12 | 16 | `qe_vendor_id` |
/// | 28 | 20 | `user_data` (Intel's QE: QE id in the first 16 bytes) |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuoteHeader {
    /// Quote format version: 3, 4 or 5.
    pub version: u16,
    /// Attestation key type.
    pub att_key_type: AttestationKeyType,
    /// TEE type (always [`TeeType::Sgx`] in v3).
    pub tee_type: TeeType,
    /// ISVSVN of the QE as the QE wrote it in the header (informational; TCB decisions use
    /// the QE report).
    pub qe_svn: u16,
    /// PCE SVN as the QE wrote it in the header (informational).
    pub pce_svn: u16,
    /// Vendor of the quoting enclave ([`INTEL_QE_VENDOR_ID`] for Intel's).
    pub qe_vendor_id: [u8; 16],
    /// Custom data of the quoting enclave.
    pub user_data: [u8; 20],
}

impl QuoteHeader {
    /// Reads and validates a header: version, key type and TEE type must be known, and v3
    /// quotes must be SGX.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        let version = r.u16_le("header.version")?;
        if !matches!(version, 3..=5) {
            return Err(QuoteError::UnsupportedVersion(version));
        }
        let att_key_type = AttestationKeyType::from_u16(r.u16_le("header.att_key_type")?)?;
        let raw_tee = r.u32_le("header.tee_type")?;
        let tee_type = TeeType::from_u32(raw_tee)?;
        if version == 3 && tee_type != TeeType::Sgx {
            return Err(QuoteError::TeeTypeNotAllowed {
                version,
                tee_type: raw_tee,
            });
        }
        Ok(Self {
            version,
            att_key_type,
            tee_type,
            qe_svn: r.u16_le("header.qe_svn")?,
            pce_svn: r.u16_le("header.pce_svn")?,
            qe_vendor_id: r.take_array("header.qe_vendor_id")?,
            user_data: r.take_array("header.user_data")?,
        })
    }

    /// Appends the 48 wire bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.att_key_type.to_u16().to_le_bytes());
        out.extend_from_slice(&self.tee_type.to_u32().to_le_bytes());
        out.extend_from_slice(&self.qe_svn.to_le_bytes());
        out.extend_from_slice(&self.pce_svn.to_le_bytes());
        out.extend_from_slice(&self.qe_vendor_id);
        out.extend_from_slice(&self.user_data);
    }
}

/// The quote body: the report of the attested enclave or TD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuoteBody {
    /// SGX enclave report body (v3, v4 with TEE type SGX, v5 body type 1).
    Sgx(ReportBody),
    /// TD report 1.0 (v4 with TEE type TDX, v5 body type 2).
    Td10(TdReport10),
    /// TD report 1.5 (v5 body type 3).
    Td15(TdReport15),
}

impl QuoteBody {
    /// The v5 body descriptor type: 1 SGX, 2 TD 1.0, 3 TD 1.5.
    pub fn body_type(&self) -> u16 {
        match self {
            Self::Sgx(_) => 1,
            Self::Td10(_) => 2,
            Self::Td15(_) => 3,
        }
    }

    /// Wire size of the body.
    pub fn len(&self) -> usize {
        match self {
            Self::Sgx(_) => REPORT_BODY_LEN,
            Self::Td10(_) => TD_REPORT10_LEN,
            Self::Td15(_) => TD_REPORT15_LEN,
        }
    }

    /// Always false: bodies have a fixed, non-zero size.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The TEE type this body belongs to.
    pub fn tee_type(&self) -> TeeType {
        match self {
            Self::Sgx(_) => TeeType::Sgx,
            Self::Td10(_) | Self::Td15(_) => TeeType::Tdx,
        }
    }

    /// The body's `REPORTDATA`.
    pub fn report_data(&self) -> &ReportData {
        match self {
            Self::Sgx(b) => &b.report_data,
            Self::Td10(b) => &b.report_data,
            Self::Td15(b) => &b.base.report_data,
        }
    }

    /// Appends the body's wire bytes (without a v5 descriptor) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Sgx(b) => b.write(out),
            Self::Td10(b) => b.write(out),
            Self::Td15(b) => b.write(out),
        }
    }

    fn read(r: &mut Reader<'_>, header: &QuoteHeader) -> Result<Self, QuoteError> {
        match (header.version, header.tee_type) {
            (3 | 4, TeeType::Sgx) => read_exact(r, REPORT_BODY_LEN, "report_body", |r| {
                ReportBody::read(r).map(Self::Sgx)
            }),
            (4, TeeType::Tdx) => read_exact(r, TD_REPORT10_LEN, "td_report", |r| {
                TdReport10::read(r).map(Self::Td10)
            }),
            _ => {
                let body_type = r.u16_le("body_descriptor.type")?;
                let size = r.u32_le("body_descriptor.size")?;
                let mismatch = QuoteError::BodyMismatch {
                    body_type,
                    size,
                    tee_type: header.tee_type.to_u32(),
                };
                let expected = match body_type {
                    1 => REPORT_BODY_LEN,
                    2 => TD_REPORT10_LEN,
                    3 => TD_REPORT15_LEN,
                    other => return Err(QuoteError::UnsupportedBodyType(other)),
                };
                let tee_ok = (body_type == 1) == (header.tee_type == TeeType::Sgx);
                if !tee_ok || usize::try_from(size).ok() != Some(expected) {
                    return Err(mismatch);
                }
                match body_type {
                    1 => read_exact(r, expected, "report_body", |r| {
                        ReportBody::read(r).map(Self::Sgx)
                    }),
                    2 => read_exact(r, expected, "td_report", |r| {
                        TdReport10::read(r).map(Self::Td10)
                    }),
                    _ => read_exact(r, expected, "td_report", |r| {
                        TdReport15::read(r).map(Self::Td15)
                    }),
                }
            }
        }
    }
}

/// Reads a fixed-size structure of `len` bytes from its own sub-reader, so a short input is
/// reported as the structure being truncated.
fn read_exact<'a, T>(
    r: &mut Reader<'a>,
    len: usize,
    field: &'static str,
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, QuoteError>,
) -> Result<T, QuoteError> {
    let mut sub = r.sub(len, field)?;
    let v = f(&mut sub)?;
    sub.finish_within(field)?;
    Ok(v)
}

/// Certification data type (Intel: `sgx_ql_cert_key_type_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertDataType {
    /// 1: PPID in clear text (PCK_ID_PLAIN).
    PpidCleartext,
    /// 2: PPID encrypted with RSA-2048-OAEP.
    PpidRsa2048Encrypted,
    /// 3: PPID encrypted with RSA-3072-OAEP, then CPUSVN, PCESVN, PCE-ID (404 bytes).
    PpidRsa3072Encrypted,
    /// 4: PCK leaf certificate.
    PckLeafCert,
    /// 5: PCK certificate chain, concatenated PEM (leaf, intermediate CA, root CA).
    PckCertChain,
    /// 6: QE report certification data (v4/v5 wrapper around the QE report section).
    QeReportCertData,
    /// 7: Platform manifest.
    PlatformManifest,
}

impl CertDataType {
    /// Decodes the wire value (1..=7).
    pub fn from_u16(v: u16) -> Result<Self, QuoteError> {
        Ok(match v {
            1 => Self::PpidCleartext,
            2 => Self::PpidRsa2048Encrypted,
            3 => Self::PpidRsa3072Encrypted,
            4 => Self::PckLeafCert,
            5 => Self::PckCertChain,
            6 => Self::QeReportCertData,
            7 => Self::PlatformManifest,
            other => return Err(QuoteError::UnsupportedCertDataType(other)),
        })
    }

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::PpidCleartext => 1,
            Self::PpidRsa2048Encrypted => 2,
            Self::PpidRsa3072Encrypted => 3,
            Self::PckLeafCert => 4,
            Self::PckCertChain => 5,
            Self::QeReportCertData => 6,
            Self::PlatformManifest => 7,
        }
    }
}

/// Certification data: how a verifier finds the PCK certificate that signed the QE report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CertificationData<'a> {
    /// The certification data type.
    pub cert_type: CertDataType,
    /// The certification data (for type 5: the PEM chain, possibly NUL-terminated).
    pub data: &'a [u8],
}

impl<'a> CertificationData<'a> {
    /// The concatenated PEM PCK chain, when the type is 5 (split it with
    /// [`crate::pck::split_pem_chain`]).
    pub fn pck_chain_pem(&self) -> Option<&'a [u8]> {
        (self.cert_type == CertDataType::PckCertChain).then_some(self.data)
    }

    /// The PCK certificate id, for types 1–3 whose data has the size the type defines.
    pub fn pck_cert_id(&self) -> Option<PckCertId<'a>> {
        let ppid_len = match self.cert_type {
            CertDataType::PpidCleartext => 16,
            CertDataType::PpidRsa2048Encrypted => 256,
            CertDataType::PpidRsa3072Encrypted => 384,
            _ => return None,
        };
        Reader::read_all(self.data, |r| {
            Ok(PckCertId {
                ppid: r.take(ppid_len, "pck_cert_id.ppid")?,
                cpu_svn: crate::CpuSvn(r.take_array("pck_cert_id.cpu_svn")?),
                pce_svn: r.u16_le("pck_cert_id.pce_svn")?,
                pce_id: r.take_array("pck_cert_id.pce_id")?,
            })
        })
        .ok()
    }

    /// Reads `u16 type ‖ u32 size ‖ data`.
    pub fn read(r: &mut Reader<'a>) -> Result<Self, QuoteError> {
        let cert_type = CertDataType::from_u16(r.u16_le("certification_data.type")?)?;
        let len = read_len_u32(r, "certification_data.size", MAX_CERT_DATA_LEN)?;
        let data = r.take(len, "certification_data")?;
        Ok(Self { cert_type, data })
    }

    /// Appends `u16 type ‖ u32 size ‖ data` to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cert_type.to_u16().to_le_bytes());
        out.extend_from_slice(&len_u32(self.data.len()).to_le_bytes());
        out.extend_from_slice(self.data);
    }
}

/// The PCK certificate id carried by certification data types 1–3: enough to fetch the PCK
/// certificate from Intel PCS / a PCCS (`GET /sgx/certification/v4/pckcert?encrypted_ppid=…
/// &cpusvn=…&pcesvn=…&pceid=…`).
///
/// Layout: PPID (type 1: 16 bytes clear text; type 2: 256 bytes RSA-2048-OAEP; type 3:
/// 384 bytes RSA-3072-OAEP) ‖ CPUSVN (16) ‖ PCESVN (u16) ‖ PCE-ID (2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PckCertId<'a> {
    /// The PPID, in clear text (type 1) or encrypted (types 2 and 3).
    pub ppid: &'a [u8],
    /// The platform's raw CPUSVN.
    pub cpu_svn: crate::CpuSvn,
    /// The PCE's ISVSVN.
    pub pce_svn: u16,
    /// The PCE id.
    pub pce_id: [u8; 2],
}

/// The QE report section: the Quoting Enclave's report, signed by the PCK key, binding the
/// attestation key. Top-level in v3 signature data; the payload of certification data type 6
/// in v4/v5. Normalized to this one type for all versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QeReportCertData<'a> {
    /// The QE's report body (its `REPORTDATA[..32]` is SHA-256(attestation key ‖ QE auth data)).
    pub qe_report: ReportBody,
    /// The 384 bytes of the QE report as they appear in the quote (what the PCK key signed).
    pub qe_report_raw: &'a [u8],
    /// ECDSA P-256 signature (r ‖ s) over `qe_report_raw` by the PCK private key.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data (Intel's QE: 32 bytes).
    pub qe_auth_data: &'a [u8],
    /// The certification data (type 1–5 or 7; never 6 here).
    pub certification: CertificationData<'a>,
}

impl<'a> QeReportCertData<'a> {
    /// Reads the section from `r`; the inner certification data may not be type 6.
    pub fn read(r: &mut Reader<'a>) -> Result<Self, QuoteError> {
        let mut qe = r.sub(REPORT_BODY_LEN, "qe_report")?;
        let qe_report_raw = qe.rest();
        let qe_report = ReportBody::read(&mut qe)?;
        qe.finish_within("qe_report")?;
        let qe_report_signature = r.take_array("qe_report_signature")?;
        let auth_len = usize::from(r.u16_le("qe_auth_data.size")?);
        if auth_len > MAX_QE_AUTH_DATA_LEN {
            return Err(QuoteError::LengthTooLarge {
                field: "qe_auth_data.size",
                offset: r.offset().saturating_sub(2),
                len: auth_len,
                max: MAX_QE_AUTH_DATA_LEN,
            });
        }
        let qe_auth_data = r.take(auth_len, "qe_auth_data")?;
        let type_offset = r.offset();
        let certification = CertificationData::read(r)?;
        if certification.cert_type == CertDataType::QeReportCertData {
            return Err(QuoteError::UnexpectedCertDataType {
                cert_type: 6,
                offset: type_offset,
                expected: "type 1-5 or 7 inside the QE report section",
            });
        }
        Ok(Self {
            qe_report,
            qe_report_raw,
            qe_report_signature,
            qe_auth_data,
            certification,
        })
    }

    /// Appends the section's wire bytes to `out` (the QE report is written from
    /// [`Self::qe_report`]; `qe_report_raw` is not consulted).
    pub fn write(&self, out: &mut Vec<u8>) {
        self.qe_report.write(out);
        out.extend_from_slice(&self.qe_report_signature);
        let auth_len = u16::try_from(self.qe_auth_data.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&auth_len.to_le_bytes());
        out.extend_from_slice(self.qe_auth_data);
        self.certification.write(out);
    }
}

/// The quote signature data (ECDSA 256-bit quote signature data structure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuoteSignature<'a> {
    /// ECDSA P-256 signature (r ‖ s) over [`Quote::signed_region`] by the attestation key.
    pub quote_signature: [u8; 64],
    /// The attestation public key (x ‖ y).
    pub attestation_key: [u8; 64],
    /// The QE report section (v3: inline; v4/v5: unwrapped from certification data type 6).
    pub qe: QeReportCertData<'a>,
}

/// A parsed DCAP ECDSA quote, borrowing from the input bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quote<'a> {
    /// The header.
    pub header: QuoteHeader,
    /// The body.
    pub body: QuoteBody,
    /// header ‖ (v5 body descriptor) ‖ body: exactly the bytes the attestation key signed.
    pub signed_region: &'a [u8],
    /// The signature data.
    pub signature: QuoteSignature<'a>,
}

impl<'a> Quote<'a> {
    /// Parses a quote that fills `bytes` exactly; trailing bytes are
    /// [`QuoteError::TrailingBytes`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, QuoteError> {
        Reader::read_all(bytes, Self::read)
    }

    /// Parses a quote at the start of `bytes` and returns it with the number of trailing
    /// bytes ignored (quote buffers from Intel's libraries are often zero-padded).
    pub fn parse_tolerant(bytes: &'a [u8]) -> Result<(Self, usize), QuoteError> {
        let mut r = Reader::new(bytes);
        let quote = Self::read(&mut r)?;
        Ok((quote, r.remaining()))
    }

    /// Reads one quote from `r`, leaving any bytes after it.
    pub fn read(r: &mut Reader<'a>) -> Result<Self, QuoteError> {
        let mut signed = r.clone();
        let start = r.offset();
        let header = QuoteHeader::read(r)?;
        let body = QuoteBody::read(r, &header)?;
        let signed_region = signed.take(r.offset().saturating_sub(start), "signed_region")?;

        let len = read_len_u32(r, "signature_data.size", MAX_SIGNATURE_DATA_LEN)?;
        let mut sig = r.sub(len, "signature_data")?;
        let quote_signature = sig.take_array("quote_signature")?;
        let attestation_key = sig.take_array("attestation_key")?;
        let qe = if header.version == 3 {
            QeReportCertData::read(&mut sig)?
        } else {
            let type_offset = sig.offset();
            let outer_type =
                CertDataType::from_u16(sig.u16_le("qe_report_certification_data.type")?)?;
            if outer_type != CertDataType::QeReportCertData {
                return Err(QuoteError::UnexpectedCertDataType {
                    cert_type: outer_type.to_u16(),
                    offset: type_offset,
                    expected: "type 6 (QE report certification data) in a v4/v5 quote",
                });
            }
            let len = read_len_u32(
                &mut sig,
                "qe_report_certification_data.size",
                MAX_CERT_DATA_LEN,
            )?;
            let mut inner = sig.sub(len, "qe_report_certification_data")?;
            let qe = QeReportCertData::read(&mut inner)?;
            inner.finish_within("qe_report_certification_data")?;
            qe
        };
        sig.finish_within("signature_data")?;
        Ok(Self {
            header,
            body,
            signed_region,
            signature: QuoteSignature {
                quote_signature,
                attestation_key,
                qe,
            },
        })
    }

    /// The bytes the attestation key signs for `header` and `body`: header ‖ (v5 body
    /// descriptor) ‖ body. For a parsed quote this equals [`Quote::signed_region`].
    pub fn signed_bytes(header: &QuoteHeader, body: &QuoteBody) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN.saturating_add(TD_REPORT15_LEN));
        header.write(&mut out);
        if header.version >= 5 {
            out.extend_from_slice(&body.body_type().to_le_bytes());
            out.extend_from_slice(&len_u32(body.len()).to_le_bytes());
        }
        body.write(&mut out);
        out
    }

    /// Encodes the quote from its typed fields (`signed_region` and `qe_report_raw` are not
    /// consulted). For every quote [`Quote::parse`] accepts, `encode(parse(b)) == b`.
    ///
    /// Lengths beyond the wire format's range are saturated; use [`Quote::try_encode`] to get
    /// an error instead for hand-built quotes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Self::signed_bytes(&self.header, &self.body);
        let mut sig = Vec::with_capacity(4096);
        sig.extend_from_slice(&self.signature.quote_signature);
        sig.extend_from_slice(&self.signature.attestation_key);
        if self.header.version == 3 {
            self.signature.qe.write(&mut sig);
        } else {
            let mut inner = Vec::with_capacity(4096);
            self.signature.qe.write(&mut inner);
            CertificationData {
                cert_type: CertDataType::QeReportCertData,
                data: &inner,
            }
            .write(&mut sig);
        }
        out.extend_from_slice(&len_u32(sig.len()).to_le_bytes());
        out.extend_from_slice(&sig);
        out
    }

    /// [`Quote::encode`], then checks that the result parses back to the same quote
    /// (catches hand-built quotes whose header, body and sizes do not fit together).
    pub fn try_encode(&self) -> Result<Vec<u8>, QuoteError> {
        let bytes = self.encode();
        let back = Quote::parse(&bytes)?;
        let sig = &self.signature;
        let checks = [
            ("header", back.header == self.header),
            ("body", back.body == self.body),
            (
                "signature",
                back.signature.quote_signature == sig.quote_signature,
            ),
            (
                "attestation_key",
                back.signature.attestation_key == sig.attestation_key,
            ),
            ("qe_report", back.signature.qe.qe_report == sig.qe.qe_report),
            (
                "qe_report_signature",
                back.signature.qe.qe_report_signature == sig.qe.qe_report_signature,
            ),
            (
                "qe_auth_data",
                back.signature.qe.qe_auth_data == sig.qe.qe_auth_data,
            ),
            (
                "certification",
                back.signature.qe.certification == sig.qe.certification,
            ),
        ];
        if let Some((what, _)) = checks.iter().find(|(_, same)| !same) {
            return Err(QuoteError::NotEncodable(what));
        }
        Ok(bytes)
    }

    /// The SGX report body of the attested enclave, for SGX quotes.
    pub fn sgx_report_body(&self) -> Option<&ReportBody> {
        match &self.body {
            QuoteBody::Sgx(b) => Some(b),
            QuoteBody::Td10(_) | QuoteBody::Td15(_) => None,
        }
    }

    /// The body's `REPORTDATA`.
    pub fn report_data(&self) -> &ReportData {
        self.body.report_data()
    }

    /// The QE report section.
    pub fn qe(&self) -> &QeReportCertData<'a> {
        &self.signature.qe
    }

    /// The certification data inside the QE report section.
    pub fn certification(&self) -> &CertificationData<'a> {
        &self.signature.qe.certification
    }

    /// The PEM PCK chain, when the certification data is type 5.
    pub fn pck_chain_pem(&self) -> Option<&'a [u8]> {
        self.signature.qe.certification.pck_chain_pem()
    }
}

/// Reads a `u32` length and bounds it by `max`.
fn read_len_u32(r: &mut Reader<'_>, field: &'static str, max: usize) -> Result<usize, QuoteError> {
    let offset = r.offset();
    let raw = r.u32_le(field)?;
    match usize::try_from(raw) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(QuoteError::LengthTooLarge {
            field,
            offset,
            len: usize::try_from(raw).unwrap_or(usize::MAX),
            max,
        }),
    }
}

/// A length as its `u32` wire value, saturated.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

//! PCK certificates: the PEM chain of certification data type 5, the Intel SGX extension
//! (OID 1.2.840.113741.1.13.1) and the PCK CA type.
//!
//! Source: Intel "SGX PCK Certificate and Certificate Revocation List Profile
//! Specification", section 1.5 "Intel SGX PCK Certificate" (SGX extensions table). The
//! extension value is `SEQUENCE OF SEQUENCE { OBJECT IDENTIFIER, ANY }`:
//!
//! | sub-OID | field | ASN.1 |
//! |---|---|---|
//! | .1 | PPID | OCTET STRING (16) |
//! | .2 | TCB | SEQUENCE of (.2.1 … .2.16 SGX TCB comp SVN INTEGER, .2.17 PCESVN INTEGER, .2.18 CPUSVN OCTET STRING (16)) |
//! | .3 | PCE-ID | OCTET STRING (2) |
//! | .4 | FMSPC | OCTET STRING (6) |
//! | .5 | SGX type | ENUMERATED (0 Standard, 1 Scalable, 2 Scalable with integrity) |
//! | .6 | Platform instance id | OCTET STRING (16), Platform CA certificates only |
//! | .7 | Configuration | SEQUENCE of (.7.1 dynamic platform, .7.2 cached keys, .7.3 SMT enabled: BOOLEAN), Platform CA only |
//!
//! Unknown sub-OIDs are skipped (forward compatibility); duplicates are rejected.

use const_oid::ObjectIdentifier;
use der::asn1::AnyRef;
use der::{Decode, Encode, Tag, Tagged};

use crate::quote::MAX_CERT_DATA_LEN;

/// The Intel SGX extension OID, as text.
pub const SGX_EXTENSION_OID: &str = "1.2.840.113741.1.13.1";
/// The Intel SGX extension OID.
pub const SGX_EXTENSION: ObjectIdentifier = ObjectIdentifier::new_unwrap(SGX_EXTENSION_OID);

/// Bound on the number of certificates in a PEM chain (a PCK chain has 3).
pub const MAX_PEM_CHAIN_CERTS: usize = 8;
/// Bound on the PEM chain length: it comes from certification data.
pub const MAX_PEM_CHAIN_LEN: usize = MAX_CERT_DATA_LEN;

const OID_PPID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.1");
const OID_TCB: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.2");
const OID_PCE_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.3");
const OID_FMSPC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.4");
const OID_SGX_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.5");
const OID_PLATFORM_INSTANCE_ID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.6");
const OID_CONFIGURATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.7");
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// Why a PCK chain, certificate or SGX extension could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PckError {
    /// The PEM text is malformed.
    #[error("invalid pem chain")]
    Pem(#[source] pem::PemError),
    /// A PEM block is not a `CERTIFICATE`.
    #[error("pem block {index} is not a certificate")]
    NotACertificate {
        /// Position of the block in the chain.
        index: usize,
    },
    /// No certificate in the PEM text.
    #[error("no certificate in the pem chain")]
    EmptyChain,
    /// More certificates or bytes than the named bounds allow.
    #[error("pem chain exceeds {max} {what}")]
    ChainTooLarge {
        /// "certificates" or "bytes".
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// DER decoding failed.
    #[error("invalid der")]
    Der(#[source] der::Error),
    /// The certificate has no SGX extension.
    #[error("certificate has no sgx extension ({SGX_EXTENSION_OID})")]
    MissingExtension,
    /// A required field of the SGX extension is missing.
    #[error("sgx extension has no {0}")]
    MissingField(&'static str),
    /// A field of the SGX extension appears twice.
    #[error("sgx extension has a duplicate {0}")]
    DuplicateField(&'static str),
    /// A field has the wrong ASN.1 type or an out-of-range value.
    #[error("sgx extension field {0} has an invalid value")]
    InvalidField(&'static str),
    /// An OCTET STRING field has the wrong length.
    #[error("sgx extension field {field} must be {expected} bytes, got {actual}")]
    InvalidFieldLength {
        /// The field.
        field: &'static str,
        /// Its fixed size.
        expected: usize,
        /// The size found.
        actual: usize,
    },
    /// The issuer common name is not one of the two PCK CAs.
    #[error("issuer is not an intel sgx pck ca")]
    UnknownIssuer,
}

impl From<der::Error> for PckError {
    fn from(e: der::Error) -> Self {
        Self::Der(e)
    }
}

/// Splits a concatenated PEM chain (certification data type 5) into DER certificates, in
/// the order they appear. A trailing NUL (as Intel's QE writes) and surrounding whitespace
/// are tolerated.
pub fn split_pem_chain(pem_chain: &[u8]) -> Result<Vec<Vec<u8>>, PckError> {
    if pem_chain.len() > MAX_PEM_CHAIN_LEN {
        return Err(PckError::ChainTooLarge {
            what: "bytes",
            max: MAX_PEM_CHAIN_LEN,
        });
    }
    let mut text = pem_chain;
    while let Some((last, rest)) = text.split_last() {
        if *last == 0 || last.is_ascii_whitespace() {
            text = rest;
        } else {
            break;
        }
    }
    let blocks = pem::parse_many(text).map_err(PckError::Pem)?;
    if blocks.is_empty() {
        return Err(PckError::EmptyChain);
    }
    if blocks.len() > MAX_PEM_CHAIN_CERTS {
        return Err(PckError::ChainTooLarge {
            what: "certificates",
            max: MAX_PEM_CHAIN_CERTS,
        });
    }
    blocks
        .into_iter()
        .enumerate()
        .map(|(index, b)| {
            if b.tag() == "CERTIFICATE" {
                Ok(b.into_contents())
            } else {
                Err(PckError::NotACertificate { index })
            }
        })
        .collect()
}

/// Finds the PCK leaf in a chain (in any order): the first certificate carrying the SGX
/// extension. Returns its index and parsed extension.
pub fn find_pck_leaf(chain: &[Vec<u8>]) -> Option<(usize, SgxExtension)> {
    chain
        .iter()
        .enumerate()
        .find_map(|(i, der)| SgxExtension::from_cert_der(der).ok().map(|e| (i, e)))
}

/// Which Intel CA issued a PCK certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PckCa {
    /// "Intel SGX PCK Processor CA" (single-package platforms; CRL `?ca=processor`).
    Processor,
    /// "Intel SGX PCK Platform CA" (multi-package platforms; CRL `?ca=platform`).
    Platform,
}

impl PckCa {
    /// Issuer common name of the Processor CA.
    pub const PROCESSOR_CN: &str = "Intel SGX PCK Processor CA";
    /// Issuer common name of the Platform CA.
    pub const PLATFORM_CN: &str = "Intel SGX PCK Platform CA";

    /// The CA type for an issuer common name, if it is one of the two.
    pub fn from_issuer_cn(cn: &str) -> Option<Self> {
        match cn {
            Self::PROCESSOR_CN => Some(Self::Processor),
            Self::PLATFORM_CN => Some(Self::Platform),
            _ => None,
        }
    }

    /// The CA type of a PCK certificate (DER), from its issuer common name.
    pub fn from_cert_der(cert_der: &[u8]) -> Result<Self, PckError> {
        let cert = x509_cert::Certificate::from_der(cert_der)?;
        cert.tbs_certificate
            .issuer
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .filter(|atv| atv.oid == OID_CN)
            .find_map(|atv| {
                core::str::from_utf8(atv.value.value())
                    .ok()
                    .and_then(Self::from_issuer_cn)
            })
            .ok_or(PckError::UnknownIssuer)
    }

    /// `"processor"` or `"platform"` (the PCS `ca` query parameter).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processor => "processor",
            Self::Platform => "platform",
        }
    }
}

/// SGX type of the platform (sub-OID .5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SgxType {
    /// 0: Standard.
    Standard,
    /// 1: Scalable.
    Scalable,
    /// 2: Scalable with integrity.
    ScalableWithIntegrity,
}

impl SgxType {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Standard),
            1 => Some(Self::Scalable),
            2 => Some(Self::ScalableWithIntegrity),
            _ => None,
        }
    }
    /// The ENUMERATED value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Standard => 0,
            Self::Scalable => 1,
            Self::ScalableWithIntegrity => 2,
        }
    }
}

/// The TCB the PCK certificate was issued for (sub-OID .2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PckTcb {
    /// SGX TCB comp01..comp16 SVNs (sub-OIDs .2.1 … .2.16): what TCB-level matching uses.
    pub comp_svn: [u8; 16],
    /// PCESVN (.2.17).
    pub pce_svn: u16,
    /// CPUSVN (.2.18).
    pub cpu_svn: [u8; 16],
}

/// The optional platform configuration (sub-OID .7, Platform CA certificates).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PckConfiguration {
    /// .7.1 dynamicPlatform.
    pub dynamic_platform: Option<bool>,
    /// .7.2 cachedKeys.
    pub cached_keys: Option<bool>,
    /// .7.3 SMTEnabled.
    pub smt_enabled: Option<bool>,
}

/// The Intel SGX extension of a PCK certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SgxExtension {
    /// PPID (.1).
    pub ppid: [u8; 16],
    /// TCB (.2).
    pub tcb: PckTcb,
    /// PCE-ID (.3).
    pub pce_id: [u8; 2],
    /// FMSPC (.4): family-model-stepping-platform-customSKU, the key for TCB info.
    pub fmspc: [u8; 6],
    /// SGX type (.5).
    pub sgx_type: SgxType,
    /// Platform instance id (.6), Platform CA certificates only.
    pub platform_instance_id: Option<[u8; 16]>,
}

impl SgxExtension {
    /// Parses the SGX extension of a DER certificate.
    pub fn from_cert_der(cert_der: &[u8]) -> Result<Self, PckError> {
        Self::parse(extension_value(cert_der)?.as_slice())
    }

    /// Parses the extension value (the DER inside the extension's OCTET STRING).
    pub fn parse(ext_value_der: &[u8]) -> Result<Self, PckError> {
        let entries = entries(ext_value_der)?;
        let mut ppid = None;
        let mut tcb = None;
        let mut pce_id = None;
        let mut fmspc = None;
        let mut sgx_type = None;
        let mut platform_instance_id = None;
        for (oid, value) in entries {
            match oid {
                o if o == OID_PPID => set(&mut ppid, "ppid", octets(value, "ppid")?)?,
                o if o == OID_TCB => set(&mut tcb, "tcb", parse_tcb(value)?)?,
                o if o == OID_PCE_ID => set(&mut pce_id, "pce_id", octets(value, "pce_id")?)?,
                o if o == OID_FMSPC => set(&mut fmspc, "fmspc", octets(value, "fmspc")?)?,
                o if o == OID_SGX_TYPE => set(&mut sgx_type, "sgx_type", parse_sgx_type(value)?)?,
                o if o == OID_PLATFORM_INSTANCE_ID => set(
                    &mut platform_instance_id,
                    "platform_instance_id",
                    octets(value, "platform_instance_id")?,
                )?,
                _ => {}
            }
        }
        Ok(Self {
            ppid: ppid.ok_or(PckError::MissingField("ppid"))?,
            tcb: tcb.ok_or(PckError::MissingField("tcb"))?,
            pce_id: pce_id.ok_or(PckError::MissingField("pce_id"))?,
            fmspc: fmspc.ok_or(PckError::MissingField("fmspc"))?,
            sgx_type: sgx_type.ok_or(PckError::MissingField("sgx_type"))?,
            platform_instance_id,
        })
    }

    /// The extension value (DER), for building simulated PCK certificates. Fields are
    /// written in Intel's order (.1 … .6); see [`SgxExtension::to_der_with_configuration`]
    /// to add .7.
    pub fn to_der(&self) -> Vec<u8> {
        self.to_der_with_configuration(None)
    }

    /// The extension value (DER) with an optional configuration (.7) after the other fields,
    /// as Intel's Platform CA certificates carry it.
    pub fn to_der_with_configuration(&self, configuration: Option<&PckConfiguration>) -> Vec<u8> {
        self.try_to_der(configuration).unwrap_or_default()
    }

    fn try_to_der(&self, configuration: Option<&PckConfiguration>) -> Result<Vec<u8>, der::Error> {
        let mut tcb = Vec::with_capacity(18);
        for (oid, svn) in tcb_oids().iter().zip(self.tcb.comp_svn) {
            tcb.push(entry(*oid, der::asn1::Any::encode_from(&svn)?)?);
        }
        tcb.push(entry(
            tcb_oid(17),
            der::asn1::Any::encode_from(&self.tcb.pce_svn)?,
        )?);
        tcb.push(entry(tcb_oid(18), octet_any(&self.tcb.cpu_svn)?)?);
        let mut top = vec![
            entry(OID_PPID, octet_any(&self.ppid)?)?,
            entry(OID_TCB, der::asn1::Any::encode_from(&tcb)?)?,
            entry(OID_PCE_ID, octet_any(&self.pce_id)?)?,
            entry(OID_FMSPC, octet_any(&self.fmspc)?)?,
            entry(
                OID_SGX_TYPE,
                der::asn1::Any::new(Tag::Enumerated, vec![self.sgx_type.to_u8()])?,
            )?,
        ];
        if let Some(id) = &self.platform_instance_id {
            top.push(entry(OID_PLATFORM_INSTANCE_ID, octet_any(id)?)?);
        }
        if let Some(c) = configuration {
            let mut items = Vec::new();
            for (n, v) in [
                (1, c.dynamic_platform),
                (2, c.cached_keys),
                (3, c.smt_enabled),
            ] {
                if let Some(v) = v {
                    items.push(entry(
                        configuration_oid(n),
                        der::asn1::Any::encode_from(&v)?,
                    )?);
                }
            }
            top.push(entry(
                OID_CONFIGURATION,
                der::asn1::Any::encode_from(&items)?,
            )?);
        }
        top.to_der()
    }
}

/// Parses the optional configuration (.7) of an SGX extension value; `None` if absent.
pub fn parse_configuration(ext_value_der: &[u8]) -> Result<Option<PckConfiguration>, PckError> {
    let mut found = None;
    for (oid, value) in entries(ext_value_der)? {
        if oid != OID_CONFIGURATION {
            continue;
        }
        let mut c = PckConfiguration::default();
        for (sub, v) in entries_of(value)? {
            let b = v
                .decode_as::<bool>()
                .map_err(|_| PckError::InvalidField("configuration"))?;
            let slot = match sub {
                s if s == configuration_oid(1) => &mut c.dynamic_platform,
                s if s == configuration_oid(2) => &mut c.cached_keys,
                s if s == configuration_oid(3) => &mut c.smt_enabled,
                _ => continue,
            };
            set(slot, "configuration", b)?;
        }
        set(&mut found, "configuration", c)?;
    }
    Ok(found)
}

/// The SGX extension value (DER) of a certificate.
pub fn extension_value(cert_der: &[u8]) -> Result<Vec<u8>, PckError> {
    let cert = x509_cert::Certificate::from_der(cert_der)?;
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == SGX_EXTENSION)
        .map(|e| e.extn_value.as_bytes().to_vec())
        .ok_or(PckError::MissingExtension)
}

fn set<T>(slot: &mut Option<T>, field: &'static str, v: T) -> Result<(), PckError> {
    if slot.replace(v).is_some() {
        return Err(PckError::DuplicateField(field));
    }
    Ok(())
}

/// `SEQUENCE OF SEQUENCE { OID, ANY }` from DER bytes.
fn entries(der_bytes: &[u8]) -> Result<Vec<(ObjectIdentifier, AnyRef<'_>)>, PckError> {
    entries_of(AnyRef::from_der(der_bytes)?)
}

fn entries_of(seq: AnyRef<'_>) -> Result<Vec<(ObjectIdentifier, AnyRef<'_>)>, PckError> {
    if seq.tag() != Tag::Sequence {
        return Err(PckError::Der(der::Error::from(
            der::ErrorKind::TagUnexpected {
                expected: Some(Tag::Sequence),
                actual: seq.tag(),
            },
        )));
    }
    let mut out = Vec::new();
    let mut reader = der::SliceReader::new(seq.value())?;
    while !der::Reader::is_finished(&reader) {
        let item = AnyRef::decode(&mut reader)?;
        let pair = item.sequence(|r| {
            let oid = ObjectIdentifier::decode(r)?;
            let value = AnyRef::decode(r)?;
            Ok((oid, value))
        })?;
        out.push(pair);
    }
    Ok(out)
}

fn octets<const N: usize>(value: AnyRef<'_>, field: &'static str) -> Result<[u8; N], PckError> {
    if value.tag() != Tag::OctetString {
        return Err(PckError::InvalidField(field));
    }
    let bytes = value.value();
    <[u8; N]>::try_from(bytes).map_err(|_| PckError::InvalidFieldLength {
        field,
        expected: N,
        actual: bytes.len(),
    })
}

fn parse_sgx_type(value: AnyRef<'_>) -> Result<SgxType, PckError> {
    if value.tag() != Tag::Enumerated {
        return Err(PckError::InvalidField("sgx_type"));
    }
    match value.value() {
        [v] => SgxType::from_u8(*v).ok_or(PckError::InvalidField("sgx_type")),
        _ => Err(PckError::InvalidField("sgx_type")),
    }
}

fn parse_tcb(value: AnyRef<'_>) -> Result<PckTcb, PckError> {
    let mut comps: [Option<u8>; 16] = [None; 16];
    let mut pce_svn = None;
    let mut cpu_svn = None;
    let oids = tcb_oids();
    for (oid, v) in entries_of(value)? {
        if let Some(slot) = oids
            .iter()
            .zip(comps.iter_mut())
            .find(|(o, _)| **o == oid)
            .map(|(_, s)| s)
        {
            let svn = v
                .decode_as::<u8>()
                .map_err(|_| PckError::InvalidField("tcb.comp_svn"))?;
            set(slot, "tcb.comp_svn", svn)?;
        } else if oid == tcb_oid(17) {
            let svn = v
                .decode_as::<u16>()
                .map_err(|_| PckError::InvalidField("tcb.pce_svn"))?;
            set(&mut pce_svn, "tcb.pce_svn", svn)?;
        } else if oid == tcb_oid(18) {
            set(&mut cpu_svn, "tcb.cpu_svn", octets(v, "tcb.cpu_svn")?)?;
        }
    }
    let mut comp_svn = [0; 16];
    for (out, c) in comp_svn.iter_mut().zip(comps) {
        *out = c.ok_or(PckError::MissingField("tcb.comp_svn"))?;
    }
    Ok(PckTcb {
        comp_svn,
        pce_svn: pce_svn.ok_or(PckError::MissingField("tcb.pce_svn"))?,
        cpu_svn: cpu_svn.ok_or(PckError::MissingField("tcb.cpu_svn"))?,
    })
}

/// `1.2.840.113741.1.13.1.2.<n>`.
fn tcb_oid(n: u32) -> ObjectIdentifier {
    OID_TCB.push_arc(n).unwrap_or(OID_TCB)
}

/// `1.2.840.113741.1.13.1.7.<n>`.
fn configuration_oid(n: u32) -> ObjectIdentifier {
    OID_CONFIGURATION.push_arc(n).unwrap_or(OID_CONFIGURATION)
}

/// The 16 component OIDs `.2.1` … `.2.16`.
fn tcb_oids() -> [ObjectIdentifier; 16] {
    let mut out = [OID_TCB; 16];
    for (n, o) in (1..=16).zip(out.iter_mut()) {
        *o = tcb_oid(n);
    }
    out
}

fn octet_any(bytes: &[u8]) -> Result<der::asn1::Any, der::Error> {
    der::asn1::Any::new(Tag::OctetString, bytes.to_vec())
}

/// `SEQUENCE { oid, value }` as an `Any`.
fn entry(oid: ObjectIdentifier, value: der::asn1::Any) -> Result<der::asn1::Any, der::Error> {
    let mut body = oid.to_der()?;
    body.extend_from_slice(&value.to_der()?);
    der::asn1::Any::new(Tag::Sequence, body)
}

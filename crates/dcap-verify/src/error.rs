//! Verification errors: each variant names the step that failed.

use std::fmt;

use crate::verdict::{TcbStatus, UnixTime};

/// The object a check was about (used in error messages: "TCB info expired at ...").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Item {
    /// The quote itself (signature by the attestation key over header ‖ body).
    Quote,
    /// The Quoting Enclave report inside the quote (signature by the PCK key).
    QeReport,
    /// The PCK leaf certificate.
    PckCertificate,
    /// The PCK Platform/Processor CA certificate.
    PckCaCertificate,
    /// A root CA certificate found in a chain.
    RootCaCertificate,
    /// The Intel SGX TCB Signing certificate (issuer of TCB info and QE identity).
    TcbSigningCertificate,
    /// The PCK CRL (Platform or Processor CA).
    PckCrl,
    /// The Root CA CRL.
    RootCaCrl,
    /// The signed TCB info.
    TcbInfo,
    /// The signed QE identity.
    QeIdentity,
}

impl Item {
    /// Human-readable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Item::Quote => "quote",
            Item::QeReport => "QE report",
            Item::PckCertificate => "PCK certificate",
            Item::PckCaCertificate => "PCK CA certificate",
            Item::RootCaCertificate => "root CA certificate",
            Item::TcbSigningCertificate => "TCB signing certificate",
            Item::PckCrl => "PCK CRL",
            Item::RootCaCrl => "root CA CRL",
            Item::TcbInfo => "TCB info",
            Item::QeIdentity => "QE identity",
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a quote failed verification. Display is one lower-case line naming the step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The quote bytes are malformed or of an unsupported kind.
    #[error("quote parse: {0}")]
    Quote(#[from] sgx_quote::QuoteError),
    /// The quote is structurally valid but not something this verifier handles (e.g. TDX).
    #[error("unsupported quote: {0}")]
    UnsupportedQuote(&'static str),
    /// The quote carries no PCK certificate chain (certification data type 1–4) and the collateral supplies none.
    #[error(
        "the PCK certificate is needed: the quote's certification data is type {cert_type} (no PCK chain); supply the PCK certificate chain in the collateral (pck_certificate_chain)"
    )]
    PckCertificateNeeded {
        /// Certification data type found in the quote.
        cert_type: u16,
    },
    /// A collateral field is malformed (bad hex, JSON, PEM or DER).
    #[error("collateral {field} malformed: {reason}")]
    MalformedCollateral {
        /// Which field.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A certificate could not be parsed.
    #[error("{item} malformed: {reason}")]
    MalformedCertificate {
        /// Which certificate.
        item: Item,
        /// What was wrong.
        reason: String,
    },
    /// A certificate chain is incomplete or does not link up.
    #[error("{item} chain broken: {reason}")]
    ChainBroken {
        /// The chain's leaf.
        item: Item,
        /// What was wrong.
        reason: &'static str,
    },
    /// The chain does not end at a trusted root key.
    #[error("{item} chain does not lead to a trusted root CA key")]
    UntrustedRoot {
        /// The chain's leaf.
        item: Item,
    },
    /// A signature did not verify.
    #[error("{item} signature invalid")]
    SignatureInvalid {
        /// What was signed.
        item: Item,
    },
    /// An item was expired at the verification time.
    #[error("{item} expired at {not_after} (verification time {now})")]
    Expired {
        /// What expired.
        item: Item,
        /// Its end of validity (nextUpdate / notAfter).
        not_after: UnixTime,
        /// The verification time.
        now: UnixTime,
    },
    /// An item was not yet valid at the verification time.
    #[error("{item} not valid before {not_before} (verification time {now})")]
    NotYetValid {
        /// What is not yet valid.
        item: Item,
        /// Its start of validity (issueDate / thisUpdate / notBefore).
        not_before: UnixTime,
        /// The verification time.
        now: UnixTime,
    },
    /// A CRL's issuer does not match the certificate it must cover.
    #[error("{crl} issuer mismatch: expected {expected:?}, found {found:?}")]
    CrlIssuerMismatch {
        /// Which CRL.
        crl: Item,
        /// The issuer it should have.
        expected: String,
        /// The issuer it has.
        found: String,
    },
    /// A CRL the policy requires is absent.
    #[error("{crl} missing from the collateral")]
    CrlMissing {
        /// Which CRL.
        crl: Item,
    },
    /// A certificate is listed in a CRL.
    #[error("{item} revoked")]
    Revoked {
        /// The revoked certificate.
        item: Item,
    },
    /// The PCK certificate's SGX extension is missing or malformed.
    #[error("PCK certificate SGX extension: {0}")]
    PckExtension(#[source] sgx_quote::pck::PckError),
    /// The QE report data does not bind the attestation key and QE authentication data.
    #[error("QE report data does not match SHA-256(attestation key ‖ QE auth data)")]
    QeReportDataMismatch,
    /// A signed collateral document is malformed or of an unsupported version.
    #[error("{item} malformed: {reason}")]
    MalformedJson {
        /// TCB info or QE identity.
        item: Item,
        /// What was wrong.
        reason: String,
    },
    /// The TCB info or QE identity is of a kind this verifier does not handle.
    #[error("{item} unsupported: {reason}")]
    UnsupportedCollateral {
        /// TCB info or QE identity.
        item: Item,
        /// What was wrong.
        reason: String,
    },
    /// The TCB info is for another platform (FMSPC).
    #[error("TCB info FMSPC {tcb_info} does not match the PCK certificate's {pck}")]
    FmspcMismatch {
        /// FMSPC in the PCK certificate (hex).
        pck: String,
        /// FMSPC in the TCB info (hex).
        tcb_info: String,
    },
    /// The TCB info is for another PCE.
    #[error("TCB info PCE-ID {tcb_info} does not match the PCK certificate's {pck}")]
    PceIdMismatch {
        /// PCE-ID in the PCK certificate (hex).
        pck: String,
        /// PCE-ID in the TCB info (hex).
        tcb_info: String,
    },
    /// The QE report does not match the QE identity.
    #[error("QE identity mismatch: {field}")]
    QeIdentityMismatch {
        /// The field that differs (MRSIGNER, ISVPRODID, MISCSELECT, ATTRIBUTES).
        field: &'static str,
    },
    /// No TCB level in the TCB info matches the platform (TCB not supported).
    #[error(
        "platform TCB not supported: no TCB level in the TCB info matches the PCK certificate's TCB"
    )]
    TcbNotSupported,
    /// No QE identity TCB level matches the QE's ISVSVN.
    #[error("QE TCB not supported: no QE identity TCB level for QE ISVSVN {isv_svn}")]
    QeTcbNotSupported {
        /// The QE's ISVSVN.
        isv_svn: u16,
    },
    /// The Quoting Enclave is a debug enclave.
    #[error("QE report: the quoting enclave is a debug enclave")]
    DebugQe,
    /// Policy: the attested enclave is a debug enclave.
    #[error("policy: debug enclave rejected")]
    DebugEnclave,
    /// Policy: the TCB status is not accepted.
    #[error("policy: TCB status {0} not accepted")]
    StatusNotAccepted(TcbStatus),
    /// Policy: an advisory ID is not accepted.
    #[error("policy: advisory {0} not accepted")]
    AdvisoryNotAccepted(String),
}

impl VerifyError {
    /// Whether this error is only about time (expired / not yet valid).
    pub fn is_expiry(&self) -> bool {
        matches!(
            self,
            VerifyError::Expired { .. } | VerifyError::NotYetValid { .. }
        )
    }
}

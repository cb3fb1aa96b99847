//! Pure SGX/TDX DCAP quote, report and target-info structures: parse and encode. No IO.
//!
//! This crate turns bytes into typed structures and back, and nothing else: it does no IO,
//! reads no clock and checks no signatures (that is `dcap-verify`'s job). It covers
//!
//! - the SGX `REPORT` (432 B), report body (384 B) and `TARGETINFO` (512 B)
//!   ([`report`]);
//! - DCAP ECDSA quotes v3 (SGX), v4 (SGX or TDX 1.0) and v5 (SGX, TDX 1.0 or 1.5) with
//!   their ECDSA signature data, QE report section and certification data types 1–7
//!   ([`quote`], [`td`]);
//! - the PCK certificate chain and its SGX extension, OID 1.2.840.113741.1.13.1 ([`pck`]).
//!
//! Layouts follow the Intel SGX ECDSA Quote Library API (Appendix A, quote format v3), the
//! Intel TDX DCAP Quoting Library API (quote formats v4 and v5) and Intel's "SGX PCK
//! Certificate and Certificate Revocation List Profile Specification".
//!
//! Parsing is zero-copy ([`Quote`] borrows its input), bounded (every length prefix is
//! checked against a named `MAX_*` constant before slicing), strict (reserved bytes must be
//! zero; unknown versions, key types, TEE types and certification data types are errors;
//! [`Quote::parse`] rejects trailing bytes, [`Quote::parse_tolerant`] reports them) and never
//! panics. Encoding is canonical: `Quote::parse(b)?.encode() == b` for every accepted `b`.
//!
//! ```
//! # fn main() -> Result<(), sgx_quote::QuoteError> {
//! use sgx_quote::{Quote, ReportBody};
//! let body = ReportBody::default();
//! assert_eq!(ReportBody::parse(&body.to_bytes())?, body);
//! assert!(Quote::parse(&[3, 0]).is_err());
//! # Ok(())
//! # }
//! ```
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::as_conversions,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod pck;
pub mod quote;
mod reader;
pub mod report;
pub mod td;

pub use error::QuoteError;
pub use quote::{
    AttestationKeyType, CertDataType, CertificationData, PckCertId, QeReportCertData, Quote,
    QuoteBody, QuoteHeader, QuoteSignature, TeeType,
};
pub use reader::Reader;
pub use report::{
    Attributes, CpuSvn, MiscSelect, MrEnclave, MrSigner, Report, ReportBody, ReportData, TargetInfo,
};
pub use td::{TdReport10, TdReport15};

/// `Result` with [`QuoteError`].
pub type Result<T, E = QuoteError> = core::result::Result<T, E>;

#[cfg(test)]
mod tests;

//! Quoting backends: where target info and quotes come from.

use aesm::AesmError;

pub mod dcap;
pub mod sim;

/// A quoting enclave, as the service needs it. Errors are AESM codes, ready for the wire;
/// implementations log the details. Calls may block (enclave transitions, network): the
/// server calls them on its connection worker threads.
pub trait QuoteBackend: Send + Sync + 'static {
    /// Short name for logs (`dcap`, `sim`).
    fn name(&self) -> &'static str;

    /// Whether calls may block or take long (enclave transitions, network). The server keeps
    /// another worker accepting before it calls a backend that may; a backend that only
    /// computes (simulation) is called without, so the server runs one worker per busy core.
    fn may_block(&self) -> bool {
        true
    }

    /// The QE's TARGETINFO (512 bytes).
    ///
    /// # Errors
    /// The AESM code to return.
    fn target_info(&self) -> Result<[u8; 512], AesmError>;

    /// The public key ID (SHA-256 of the attestation public key).
    ///
    /// # Errors
    /// The AESM code to return.
    fn pub_key_id(&self) -> Result<[u8; 32], AesmError>;

    /// The size of a quote.
    ///
    /// # Errors
    /// The AESM code to return.
    fn quote_size(&self) -> Result<u32, AesmError>;

    /// A quote for the app REPORT (432 bytes).
    ///
    /// # Errors
    /// The AESM code to return (e.g. [`AesmError::InvalidReport`]).
    fn quote(&self, report: &[u8; 432]) -> Result<Vec<u8>, AesmError>;

    /// Whether [`QuoteBackend::qe_report`] can succeed at all. The service checks it before
    /// quoting, so a GetQuoteEx with `qe_report_info` that this backend cannot answer is
    /// refused with [`AesmError::UnableToGenerateQeReport`] without making (and wasting) a
    /// quote.
    fn supports_qe_report(&self) -> bool {
        true
    }

    /// A QE REPORT targeted at `target_info` with `report_data` (for `qe_report_info`).
    /// Only called when [`QuoteBackend::supports_qe_report`] is true.
    ///
    /// # Errors
    /// The AESM code to return.
    fn qe_report(
        &self,
        target_info: &[u8; 512],
        report_data: [u8; 64],
    ) -> Result<[u8; 432], AesmError>;
}

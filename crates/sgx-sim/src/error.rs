//! Errors of the simulation.

use std::path::PathBuf;

/// What went wrong in the simulation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Certificate or CRL generation failed.
    #[error("certificate generation failed")]
    Cert(#[source] rcgen::Error),
    /// A key could not be generated, parsed or used.
    #[error("{what}: key rejected or crypto failure")]
    Crypto {
        /// Which operation.
        what: &'static str,
    },
    /// A stored PEM or DER object is malformed.
    #[error("malformed {what}")]
    Malformed {
        /// Which object.
        what: &'static str,
    },
    /// Reading or writing the state directory failed.
    #[error("{op} {}", path.display())]
    Io {
        /// The operation (`reading`, `writing`, ...).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The app REPORT is not a well-formed 432-byte REPORT.
    #[error("malformed app report")]
    Report(#[source] sgx_quote::QuoteError),
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Self::Cert(e)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

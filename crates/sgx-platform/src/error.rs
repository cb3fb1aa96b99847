//! Errors of platform detection.

use std::path::PathBuf;

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while detecting SGX.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// CPUID leaf 0x12 enumerated a sub-leaf type that the SDM marks reserved (Intel SDM
    /// Vol. 2A, CPUID leaf 12H, sub-leaf index 2 or higher, `EAX[3:0]`).
    #[error("cpuid leaf 0x12 sub-leaf {subleaf} has reserved type {kind:#x}")]
    UnknownEpcSubleafType {
        /// The sub-leaf (2 or higher).
        subleaf: u32,
        /// The value of `EAX[3:0]`.
        kind: u32,
    },
    /// The EPC sections add up to more than 2^64 bytes (corrupt register values).
    #[error("epc section sizes overflow 64 bits")]
    EpcOverflow,
    /// A sysfs file could not be read or parsed.
    #[error("reading {path}")]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A sysfs file did not hold a decimal number.
    #[error("{path} does not hold a decimal byte count: {content:?}")]
    SysfsContent {
        /// The file.
        path: PathBuf,
        /// What it held (trimmed, at most 64 bytes).
        content: String,
    },
    /// The simulated device directory could not be created.
    #[error("creating simulated device node {path}")]
    SimDevice {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A size string (`64Mi`, `8GiB`, `1024`) could not be parsed.
    #[error(
        "invalid size {0:?}: expected a number with an optional unit (Ki, Mi, Gi, Ti, KiB, MiB, GiB, TiB, k, M, G, T)"
    )]
    InvalidSize(String),
}

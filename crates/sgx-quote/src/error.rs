//! [`QuoteError`]: why a byte string is not a well-formed report, target info or quote.

/// Why a byte string is not a well-formed SGX/TDX structure.
///
/// Every variant names what failed; where it makes sense it carries the field name and the
/// byte offset (from the start of the buffer handed to the parser), available through
/// [`QuoteError::field`] and [`QuoteError::offset`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The input ended inside `field`, which starts at `offset` and needs `needed` bytes.
    #[error("truncated {field} at offset {offset}: needed {needed} bytes")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
    },
    /// The strict parser found `count` bytes after the end of the structure at `offset`.
    #[error("{count} trailing bytes at offset {offset}")]
    TrailingBytes {
        /// Offset of the first byte after the structure.
        offset: usize,
        /// How many bytes follow.
        count: usize,
    },
    /// A length-prefixed `field` declared more bytes than its contents use
    /// (`count` unused bytes starting at `offset`).
    #[error("{field} declares {count} more bytes than its contents use (at offset {offset})")]
    UnusedBytes {
        /// The length-prefixed field.
        field: &'static str,
        /// Offset of the first unused byte.
        offset: usize,
        /// How many bytes were left unused.
        count: usize,
    },
    /// Quote header `version` is not 3, 4 or 5 (Intel DCAP quote format, header table).
    #[error("unsupported quote version {0}")]
    UnsupportedVersion(u16),
    /// Quote header `att_key_type` is not 2 (ECDSA-256-with-P-256 curve).
    #[error("unsupported attestation key type {0}")]
    UnsupportedKeyType(u16),
    /// Quote header `tee_type` is neither 0x00 (SGX) nor 0x81 (TDX).
    #[error("unsupported tee type {0:#x}")]
    UnsupportedTeeType(u32),
    /// The TEE type is not allowed for this quote version (v3 quotes are SGX only).
    #[error("tee type {tee_type:#x} is not allowed in a version {version} quote")]
    TeeTypeNotAllowed {
        /// Quote version.
        version: u16,
        /// The TEE type found.
        tee_type: u32,
    },
    /// Certification data type outside 1..=7 (Intel DCAP quote format, certification data
    /// table).
    #[error("unsupported certification data type {0}")]
    UnsupportedCertDataType(u16),
    /// A known certification data type where the format does not allow it (for example a
    /// v4 quote whose outer certification data is not type 6, or type 6 nested in type 6).
    #[error(
        "certification data type {cert_type} not allowed at offset {offset}: expected {expected}"
    )]
    UnexpectedCertDataType {
        /// The type found.
        cert_type: u16,
        /// Offset of the type field.
        offset: usize,
        /// What the format requires there.
        expected: &'static str,
    },
    /// A v5 quote body descriptor names an unknown body type (1 SGX, 2 TD 1.0, 3 TD 1.5).
    #[error("unsupported quote body type {0}")]
    UnsupportedBodyType(u16),
    /// A v5 body descriptor does not match the TEE type or the body's fixed size.
    #[error("quote body type {body_type} with size {size} does not match tee type {tee_type:#x}")]
    BodyMismatch {
        /// Body type from the descriptor.
        body_type: u16,
        /// Body size from the descriptor.
        size: u32,
        /// TEE type from the header.
        tee_type: u32,
    },
    /// A length prefix exceeds the named bound for `field`.
    #[error("{field} length {len} at offset {offset} exceeds the maximum {max}")]
    LengthTooLarge {
        /// The length-prefixed field.
        field: &'static str,
        /// Offset of the length prefix.
        offset: usize,
        /// Declared length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A reserved field is not all zero (reserved bytes must be zero; rejecting them keeps the
    /// encoding canonical, so `encode(parse(b)) == b`).
    #[error("reserved field {field} at offset {offset} is not zero")]
    NonZeroReserved {
        /// The reserved field.
        field: &'static str,
        /// Its offset.
        offset: usize,
    },
    /// A hand-built quote does not survive [`crate::Quote::try_encode`]: its header, body
    /// and sizes do not fit together, so the encoding parses back to different fields.
    #[error("quote does not survive encoding: {0} differs after re-parsing")]
    NotEncodable(&'static str),
    /// A fixed-size structure was given the wrong number of bytes.
    #[error("{what} must be {expected} bytes, got {actual}")]
    InvalidLength {
        /// The structure.
        what: &'static str,
        /// Its fixed size.
        expected: usize,
        /// The size given.
        actual: usize,
    },
}

impl QuoteError {
    /// The field that failed, where the error is about one field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Truncated { field, .. }
            | Self::UnusedBytes { field, .. }
            | Self::LengthTooLarge { field, .. }
            | Self::NonZeroReserved { field, .. } => Some(field),
            Self::UnsupportedVersion(_) => Some("header.version"),
            Self::UnsupportedKeyType(_) => Some("header.att_key_type"),
            Self::UnsupportedTeeType(_) | Self::TeeTypeNotAllowed { .. } => Some("header.tee_type"),
            Self::UnsupportedCertDataType(_) | Self::UnexpectedCertDataType { .. } => {
                Some("certification_data.type")
            }
            Self::UnsupportedBodyType(_) | Self::BodyMismatch { .. } => Some("body_descriptor"),
            Self::InvalidLength { what, .. } => Some(what),
            Self::NotEncodable(what) => Some(what),
            Self::TrailingBytes { .. } => None,
        }
    }

    /// Byte offset of the failure (from the start of the parsed buffer), where known.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Self::Truncated { offset, .. }
            | Self::TrailingBytes { offset, .. }
            | Self::UnusedBytes { offset, .. }
            | Self::UnexpectedCertDataType { offset, .. }
            | Self::LengthTooLarge { offset, .. }
            | Self::NonZeroReserved { offset, .. } => Some(*offset),
            Self::UnsupportedVersion(_) => Some(0),
            Self::UnsupportedKeyType(_) => Some(2),
            Self::UnsupportedTeeType(_) | Self::TeeTypeNotAllowed { .. } => Some(4),
            Self::UnsupportedBodyType(_) | Self::BodyMismatch { .. } => {
                Some(crate::quote::HEADER_LEN)
            }
            Self::UnsupportedCertDataType(_)
            | Self::InvalidLength { .. }
            | Self::NotEncodable(_) => None,
        }
    }
}

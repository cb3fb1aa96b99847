//! Framing: a 4-byte little-endian length, then that many bytes of protobuf.
//!
//! aesmd `memcpy`s a host `uint32_t` (little-endian on x86-64) and does not bound it; we do.

use crate::{Error, Result};

/// Bound on a request frame's payload. The largest legitimate request is GetQuoteEx: a
/// 432-byte REPORT, a 256-byte key ID, a 960-byte `qe_report_info` and a few tags; a
/// SelectAttKeyID list is at most 8 + 10 × 256 bytes. 64 KiB leaves ample room and keeps a
/// hostile length prefix (up to 4 GiB) from costing memory.
pub const MAX_REQUEST_LEN: u32 = 64 * 1024;

/// Bound on a response frame's payload, for clients. A quote with a PEM chain is a few KiB;
/// clients may ask for larger padded buffers (Gramine asks for 8 KiB), so allow 1 MiB.
pub const MAX_RESPONSE_LEN: u32 = 1024 * 1024;

/// Size of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Prepends the length prefix to `payload`.
///
/// # Errors
/// [`Error::FrameTooLarge`] if the payload does not fit in a `u32`.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::FrameTooLarge {
        len: u32::MAX,
        max: u32::MAX,
    })?;
    let mut out = Vec::with_capacity(payload.len().saturating_add(PREFIX_LEN));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Reads a length prefix and checks it against `max`.
///
/// # Errors
/// [`Error::FrameTooLarge`] above the bound.
pub fn check_len(prefix: [u8; 4], max: u32) -> Result<usize> {
    let len = u32::from_le_bytes(prefix);
    if len > max {
        return Err(Error::FrameTooLarge { len, max });
    }
    usize::try_from(len).map_err(|_| Error::FrameTooLarge { len, max })
}

/// Splits one complete frame held in memory into its payload; trailing bytes are an error
/// (a connection carries one request).
///
/// # Errors
/// [`Error::Truncated`], [`Error::FrameTooLarge`].
pub fn split_frame(data: &[u8], max: u32) -> Result<&[u8]> {
    let (prefix, rest) = data.split_first_chunk::<4>().ok_or(Error::Truncated {
        expected: PREFIX_LEN,
        got: data.len(),
    })?;
    let len = check_len(*prefix, max)?;
    if rest.len() != len {
        return Err(Error::Truncated {
            expected: len,
            got: rest.len(),
        });
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bounds_hold() {
        let f = encode_frame(b"abc").unwrap();
        assert_eq!(f, [3, 0, 0, 0, b'a', b'b', b'c']);
        assert_eq!(split_frame(&f, MAX_REQUEST_LEN).unwrap(), b"abc");
        assert!(matches!(
            split_frame(&f[..5], MAX_REQUEST_LEN),
            Err(Error::Truncated {
                expected: 3,
                got: 1
            })
        ));
        assert!(matches!(
            split_frame(&[0xff, 0xff, 0xff, 0xff], MAX_REQUEST_LEN),
            Err(Error::FrameTooLarge { len: u32::MAX, .. })
        ));
        assert!(matches!(
            split_frame(&[1], 10),
            Err(Error::Truncated { .. })
        ));
    }
}

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

/// The error for input that ended after `have` bytes of a frame whose prefix and payload
/// together take `want` bytes (`want` is [`PREFIX_LEN`] while the prefix is incomplete):
/// [`Error::TruncatedPrefix`] inside the prefix, else [`Error::Truncated`] with payload
/// byte counts.
#[must_use]
pub fn eof_error(have: usize, want: usize) -> Error {
    if have < PREFIX_LEN {
        Error::TruncatedPrefix { got: have }
    } else {
        Error::Truncated {
            expected: want.saturating_sub(PREFIX_LEN),
            got: have.saturating_sub(PREFIX_LEN),
        }
    }
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

/// Reads one length-prefixed payload of at most `max` bytes from a blocking reader (a
/// connection with read timeouts set). One read usually brings the whole frame, so the
/// prefix and the payload are read into one buffer of `first_read` bytes, grown only for a
/// larger frame; bytes after the frame are ignored, as aesmd does (one request per
/// connection). Nothing is allocated for a prefix above `max`.
///
/// # Errors
/// [`Error::TruncatedPrefix`] on EOF inside the length prefix, [`Error::Truncated`] on EOF
/// inside the payload, [`Error::FrameTooLarge`], [`Error::Io`] (a read timeout surfaces as
/// `WouldBlock` or `TimedOut`).
pub fn read_frame_blocking<R: std::io::Read>(
    r: &mut R,
    max: u32,
    first_read: usize,
) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; first_read.max(PREFIX_LEN)];
    let mut have = 0usize;
    let mut want = PREFIX_LEN;
    let mut len = None;
    loop {
        if len.is_none() && have >= PREFIX_LEN {
            let prefix = buf.first_chunk::<PREFIX_LEN>().copied().unwrap_or_default();
            let l = check_len(prefix, max)?;
            len = Some(l);
            want = PREFIX_LEN.saturating_add(l);
            if buf.len() < want {
                buf.resize(want, 0);
            }
        }
        if len.is_some() && have >= want {
            break;
        }
        let n = match r.read(buf.get_mut(have..).unwrap_or_default()) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(eof_error(have, want));
        }
        have = have.saturating_add(n);
    }
    buf.truncate(want);
    buf.drain(..PREFIX_LEN);
    Ok(buf)
}

/// A first-read buffer that holds any well-formed request (for [`read_frame_blocking`]).
pub const REQUEST_FIRST_READ: usize = 2048;

/// Splits one complete frame held in memory into its payload; trailing bytes are an error
/// (a connection carries one request).
///
/// # Errors
/// [`Error::TruncatedPrefix`], [`Error::Truncated`], [`Error::FrameTooLarge`].
pub fn split_frame(data: &[u8], max: u32) -> Result<&[u8]> {
    let (prefix, rest) = data
        .split_first_chunk::<PREFIX_LEN>()
        .ok_or(Error::TruncatedPrefix { got: data.len() })?;
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

    /// A reader that hands out its bytes `step` at a time.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            let (head, rest) = self.data.split_at(n);
            out[..n].copy_from_slice(head);
            self.data = rest;
            Ok(n)
        }
    }

    #[test]
    fn blocking_reads_take_frames_whole_or_in_pieces() {
        let payload: Vec<u8> = (0..3000u32)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let mut f = encode_frame(&payload).unwrap();
        f.extend_from_slice(b"trailing bytes are ignored");
        for step in [1, 3, 4, 5, 2047, 2048, 5000] {
            let mut r = Trickle { data: &f, step };
            assert_eq!(
                read_frame_blocking(&mut r, MAX_REQUEST_LEN, REQUEST_FIRST_READ).unwrap(),
                payload,
                "step {step}"
            );
        }
        let short = &f[..100];
        assert!(matches!(
            read_frame_blocking(
                &mut Trickle {
                    data: short,
                    step: 7
                },
                MAX_REQUEST_LEN,
                REQUEST_FIRST_READ
            ),
            Err(Error::Truncated {
                expected: 3000,
                got: 96
            })
        ));
        assert!(matches!(
            read_frame_blocking(
                &mut Trickle {
                    data: &[1, 0],
                    step: 1
                },
                MAX_REQUEST_LEN,
                REQUEST_FIRST_READ
            ),
            Err(Error::TruncatedPrefix { got: 2 })
        ));
        let huge = [0xffu8, 0xff, 0xff, 0xff, 0];
        assert!(matches!(
            read_frame_blocking(
                &mut Trickle {
                    data: &huge,
                    step: 5
                },
                MAX_REQUEST_LEN,
                REQUEST_FIRST_READ
            ),
            Err(Error::FrameTooLarge { len: u32::MAX, .. })
        ));
        let empty = encode_frame(b"").unwrap();
        assert_eq!(
            read_frame_blocking(
                &mut Trickle {
                    data: &empty,
                    step: 4
                },
                MAX_REQUEST_LEN,
                REQUEST_FIRST_READ
            )
            .unwrap(),
            b""
        );
    }

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
            Err(Error::TruncatedPrefix { got: 1 })
        ));
    }

    #[test]
    fn a_frame_cut_inside_the_length_prefix_says_so() {
        for cut in 0..PREFIX_LEN {
            let data = &[9u8, 0, 0, 0][..cut];
            let e = read_frame_blocking(
                &mut Trickle { data, step: 1 },
                MAX_REQUEST_LEN,
                REQUEST_FIRST_READ,
            )
            .unwrap_err();
            assert!(
                matches!(e, Error::TruncatedPrefix { got } if got == cut),
                "{cut}: {e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!("truncated frame: length prefix cut after {cut} of 4 bytes")
            );
            let e = split_frame(data, MAX_REQUEST_LEN).unwrap_err();
            assert!(
                matches!(e, Error::TruncatedPrefix { got } if got == cut),
                "{cut}: {e:?}"
            );
        }
        // A whole prefix and a cut payload still counts payload bytes.
        let e = read_frame_blocking(
            &mut Trickle {
                data: &[9, 0, 0, 0, 1, 2],
                step: 1,
            },
            MAX_REQUEST_LEN,
            REQUEST_FIRST_READ,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "truncated frame: expected 9 bytes, got 2");
        assert!(matches!(
            eof_error(4, 4),
            Error::Truncated {
                expected: 0,
                got: 0
            }
        ));
    }
}

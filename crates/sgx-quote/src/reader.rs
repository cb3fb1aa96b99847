//! [`Reader`]: a zero-copy, bounds-checked cursor over untrusted little-endian bytes.

use crate::QuoteError;

/// A borrowing cursor over `&'a [u8]`.
///
/// Every read names the field it reads so a short input becomes
/// [`QuoteError::Truncated`] with that field and its offset. Offsets are absolute: a
/// sub-reader made with [`Reader::sub`] keeps counting from the start of the outer buffer.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, starting at offset 0.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            offset: 0,
        }
    }

    /// Offset of the next byte to read.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of bytes left.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Takes the next `n` bytes of `field`.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], QuoteError> {
        let Some((head, tail)) = self.rest.split_at_checked(n) else {
            return Err(QuoteError::Truncated {
                field,
                offset: self.offset,
                needed: n,
            });
        };
        self.rest = tail;
        self.offset = self.offset.saturating_add(n);
        Ok(head)
    }

    /// Takes the next `N` bytes of `field` as an array.
    pub fn take_array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], QuoteError> {
        let Some((head, tail)) = self.rest.split_first_chunk::<N>() else {
            return Err(QuoteError::Truncated {
                field,
                offset: self.offset,
                needed: N,
            });
        };
        self.rest = tail;
        self.offset = self.offset.saturating_add(N);
        Ok(*head)
    }

    /// Takes `N` reserved bytes, which must be zero.
    pub fn reserved<const N: usize>(&mut self, field: &'static str) -> Result<(), QuoteError> {
        let offset = self.offset;
        let bytes = self.take_array::<N>(field)?;
        if bytes.iter().any(|b| *b != 0) {
            return Err(QuoteError::NonZeroReserved { field, offset });
        }
        Ok(())
    }

    /// Reads a little-endian `u16`.
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, QuoteError> {
        self.take_array(field).map(u16::from_le_bytes)
    }

    /// Reads a little-endian `u32`.
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, QuoteError> {
        self.take_array(field).map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, QuoteError> {
        self.take_array(field).map(u64::from_le_bytes)
    }

    /// Splits off the next `len` bytes of `field` as a sub-reader with absolute offsets.
    pub fn sub(&mut self, len: usize, field: &'static str) -> Result<Reader<'a>, QuoteError> {
        let offset = self.offset;
        let rest = self.take(len, field)?;
        Ok(Reader { rest, offset })
    }

    /// Ends a sub-reader made for the length-prefixed `field`: every byte must have been used.
    pub fn finish_within(self, field: &'static str) -> Result<(), QuoteError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(QuoteError::UnusedBytes {
                field,
                offset: self.offset,
                count: self.rest.len(),
            })
        }
    }

    /// Ends a top-level read: every byte must have been used, or [`QuoteError::TrailingBytes`].
    pub fn finish(self) -> Result<(), QuoteError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(QuoteError::TrailingBytes {
                offset: self.offset,
                count: self.rest.len(),
            })
        }
    }

    /// Runs `f` over all of `bytes` and fails with [`QuoteError::TrailingBytes`] on leftovers.
    pub fn read_all<T>(
        bytes: &'a [u8],
        f: impl FnOnce(&mut Reader<'a>) -> Result<T, QuoteError>,
    ) -> Result<T, QuoteError> {
        let mut r = Reader::new(bytes);
        let value = f(&mut r)?;
        r.finish()?;
        Ok(value)
    }
}

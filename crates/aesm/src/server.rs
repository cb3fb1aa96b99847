//! Server-side helpers (tokio): read one framed request, write one framed response.
//!
//! Timeouts and connection bounds are the caller's (see the quote-helper server); these
//! functions only enforce the frame-length bound before allocating.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{PREFIX_LEN, check_len};
use crate::{Request, Response, Result};

/// Reads one length-prefixed payload of at most `max` bytes.
///
/// # Errors
/// [`crate::Error::Truncated`] or [`crate::Error::TruncatedPrefix`] on EOF before the frame
/// ends, [`crate::Error::FrameTooLarge`] above `max`
/// (nothing is allocated for it), [`crate::Error::Io`].
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: u32) -> Result<Vec<u8>> {
    // One read usually brings the whole frame (requests are small): read into a buffer
    // rather than prefix and payload separately. Bytes after the frame are ignored, as
    // aesmd does (one request per connection).
    let mut buf: Vec<u8> = Vec::with_capacity(INITIAL_READ);
    let mut want = PREFIX_LEN;
    let mut len = None;
    loop {
        while buf.len() < want {
            buf.reserve(want.saturating_sub(buf.len()));
            if r.read_buf(&mut buf).await? == 0 {
                return Err(crate::frame::eof_error(buf.len(), want));
            }
        }
        match len {
            Some(_) => break,
            None => {
                let prefix = buf.first_chunk::<PREFIX_LEN>().copied().unwrap_or_default();
                let l = check_len(prefix, max)?;
                len = Some(l);
                want = PREFIX_LEN.saturating_add(l);
            }
        }
    }
    buf.truncate(want);
    buf.drain(..PREFIX_LEN);
    Ok(buf)
}

/// First read buffer size: holds any well-formed request in one read.
const INITIAL_READ: usize = 2048;

/// Reads and decodes one request frame of at most `max` payload bytes.
///
/// # Errors
/// As [`read_frame`] and [`Request::decode`].
pub async fn read_request<R: AsyncRead + Unpin>(r: &mut R, max: u32) -> Result<Request> {
    let payload = read_frame(r, max).await?;
    Request::decode(&payload)
}

/// Encodes and writes one response frame (one buffer, one write), then flushes.
///
/// # Errors
/// [`crate::Error::Io`], or [`crate::Error::FrameTooLarge`] for a payload over 4 GiB.
pub async fn write_response<W: AsyncWrite + Unpin>(w: &mut W, res: Response) -> Result<()> {
    let frame = res.into_frame()?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::frame::{MAX_REQUEST_LEN, encode_frame};

    #[tokio::test]
    async fn reads_a_request_and_rejects_bad_frames() {
        let frame = encode_frame(&Request::GetSupportedAttKeyIdNum.encode()).unwrap();
        let req = read_request(&mut frame.as_slice(), MAX_REQUEST_LEN)
            .await
            .unwrap();
        assert_eq!(req, Request::GetSupportedAttKeyIdNum);

        let huge = [0xffu8, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_request(&mut huge.as_slice(), MAX_REQUEST_LEN).await,
            Err(Error::FrameTooLarge { len: u32::MAX, .. })
        ));
        let short = &frame[..frame.len() - 1];
        assert!(matches!(
            read_request(&mut &short[..], MAX_REQUEST_LEN).await,
            Err(Error::Truncated { .. })
        ));
        // A frame split across reads, followed by extra bytes (ignored).
        let (a, b) = frame.split_at(3);
        let (mut rd, mut wr) = tokio::io::duplex(64);
        let writer = tokio::spawn({
            let (a, b) = (a.to_vec(), b.to_vec());
            async move {
                use tokio::io::AsyncWriteExt as _;
                wr.write_all(&a).await.unwrap();
                tokio::task::yield_now().await;
                wr.write_all(&b).await.unwrap();
                wr.write_all(b"extra").await.unwrap();
            }
        });
        let req = read_request(&mut rd, MAX_REQUEST_LEN).await.unwrap();
        assert_eq!(req, Request::GetSupportedAttKeyIdNum);
        writer.await.unwrap();
        let garbage = encode_frame(&[0xff, 0xff, 0xff]).unwrap();
        assert!(matches!(
            read_request(&mut garbage.as_slice(), MAX_REQUEST_LEN).await,
            Err(Error::Decode(_))
        ));
    }
}

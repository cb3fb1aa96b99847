//! A small blocking AESM client: one connection per request, as aesmd requires.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::frame::{MAX_RESPONSE_LEN, encode_frame, read_frame_blocking};
use crate::keyid::ECDSA_P256_QE3_KEY_ID;
use crate::{Error, Request, Response, Result};

/// The path aesmd (and every AESM client) uses.
pub const DEFAULT_SOCKET: &str = "/var/run/aesmd/aesm.socket";

/// Intel's client-side IPC latency bound in release builds (`IPC_LATENCY`, 15 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Blocking AESM client.
#[derive(Clone, Debug)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

/// What InitQuoteEx returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteInit {
    /// QE target info (512 bytes) to EREPORT against.
    pub target_info: Vec<u8>,
    /// Public key ID (SHA-256 of the attestation key for ECDSA).
    pub pub_key_id: Vec<u8>,
}

impl Client {
    /// A client for the socket at `path`, with [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the per-request read/write timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends one request on a fresh connection and decodes the reply.
    ///
    /// # Errors
    /// [`Error::Io`] (connect, timeout), framing and decoding errors.
    pub fn transact(&self, req: &Request) -> Result<Response> {
        let mut s = UnixStream::connect(&self.path)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        s.write_all(&encode_frame(&req.encode())?)?;
        // A quote response (a few KiB) usually arrives in one or two reads.
        let payload = read_frame_blocking(&mut s, MAX_RESPONSE_LEN, 8192)?;
        Response::decode(&payload, req.kind())
    }

    fn call(&self, req: &Request) -> Result<Response> {
        match self.transact(req)? {
            Response::Error { code, .. } => Err(Error::Aesm(code)),
            ok => Ok(ok),
        }
    }

    /// InitQuoteEx for the ECDSA P-256 key, the way libsgx_dcap_ql does it: a size probe,
    /// then a request with a buffer for the public key ID.
    ///
    /// # Errors
    /// [`Error::Aesm`] with the service's code, or transport errors.
    pub fn init_quote_ex(&self) -> Result<QuoteInit> {
        let probe = self.call(&Request::InitQuoteEx {
            att_key_id: Some(ECDSA_P256_QE3_KEY_ID.to_vec()),
            b_pub_key_id: false,
            buf_size: None,
        })?;
        let Response::InitQuoteEx {
            pub_key_id_size, ..
        } = probe
        else {
            return Err(Error::UnexpectedResponse {
                wanted: "init_quote_ex",
            });
        };
        match self.call(&Request::InitQuoteEx {
            att_key_id: Some(ECDSA_P256_QE3_KEY_ID.to_vec()),
            b_pub_key_id: true,
            buf_size: Some(pub_key_id_size),
        })? {
            Response::InitQuoteEx {
                target_info,
                pub_key_id,
                ..
            } => Ok(QuoteInit {
                target_info,
                pub_key_id: pub_key_id.unwrap_or_default(),
            }),
            _ => Err(Error::UnexpectedResponse {
                wanted: "init_quote_ex",
            }),
        }
    }

    /// GetQuoteSizeEx for the ECDSA P-256 key.
    ///
    /// # Errors
    /// [`Error::Aesm`] or transport errors.
    pub fn get_quote_size_ex(&self) -> Result<u32> {
        match self.call(&Request::GetQuoteSizeEx {
            att_key_id: Some(ECDSA_P256_QE3_KEY_ID.to_vec()),
        })? {
            Response::GetQuoteSizeEx { quote_size } => Ok(quote_size),
            _ => Err(Error::UnexpectedResponse {
                wanted: "get_quote_size_ex",
            }),
        }
    }

    /// GetQuoteEx for `report` with a `buf_size` buffer; returns the (zero-padded) quote
    /// buffer and the filled `qe_report_info` if one was sent.
    ///
    /// # Errors
    /// [`Error::Aesm`] or transport errors.
    pub fn get_quote_ex(
        &self,
        report: &[u8],
        buf_size: u32,
        qe_report_info: Option<Vec<u8>>,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        match self.call(&Request::GetQuoteEx {
            report: report.to_vec(),
            att_key_id: Some(ECDSA_P256_QE3_KEY_ID.to_vec()),
            qe_report_info,
            buf_size,
        })? {
            Response::GetQuoteEx {
                quote,
                qe_report_info,
            } => Ok((quote, qe_report_info)),
            _ => Err(Error::UnexpectedResponse {
                wanted: "get_quote_ex",
            }),
        }
    }
}

//! The AESM protocol logic: one request in, one response out, over a [`QuoteBackend`].
//!
//! Quirks implemented for real clients (see `docs/research/aesm-quote-helper.md`):
//! * InitQuoteEx ignores `buf_size` when `b_pub_key_id` is false (libsgx_dcap_ql leaves it
//!   uninitialized) and always reports `pub_key_id_size` (aesm-client's probe reads it).
//! * GetQuoteEx answers exactly `buf_size` bytes, the quote zero-padded, and fails with
//!   `AESM_PARAMETER_ERROR` if the quote does not fit; an optional 960-byte
//!   `qe_report_info` gets a QE report with REPORTDATA = SHA-256(nonce ‖ quote) ‖ 0^32; a
//!   backend that cannot make QE reports (DCAP through `libsgx_dcap_ql`) gets such a request
//!   refused with `AESM_UNABLE_TO_GENERATE_QE_REPORT` before any quote is made.
//! * Key IDs must match the production QE3 ECDSA P-256 key's 158-byte base, else
//!   `AESM_UNSUPPORTED_ATT_KEY_ID`; an absent key ID means that key.
//! * EPID, launch-token and platform-service requests get `AESM_SERVICE_UNAVAILABLE`.

use aesm::keyid::{ATT_KEY_ID_SIZE, AttKeyId, ECDSA_P256_QE3_KEY_ID};
use aesm::{AesmError, QE_REPORT_INFO_SIZE, REPORT_SIZE, Request, RequestKind, Response};
use aws_lc_rs::digest::{Context, SHA256};

use crate::QuoteBackend;

/// The largest quote buffer a client may ask for. Real clients ask for the quote size or a
/// few KiB (Gramine: 8 KiB); the bound keeps a hostile `buf_size` from costing memory.
pub const MAX_QUOTE_BUF: u32 = 512 * 1024;

/// Size of the public key ID for ECDSA (SHA-256).
pub const PUB_KEY_ID_SIZE: u64 = 32;

/// Maximum entries in an `sgx_att_key_id_list_t` (aesmd's bound).
const MAX_KEY_ID_LIST: usize = 10;

fn err(kind: RequestKind, code: AesmError) -> Response {
    Response::Error { kind, code }
}

fn key_ok(kind: RequestKind, id: Option<&[u8]>) -> Result<(), Response> {
    match AttKeyId::classify(id) {
        AttKeyId::EcdsaP256 => Ok(()),
        AttKeyId::Unsupported => Err(err(kind, AesmError::UnsupportedAttKeyId)),
    }
}

/// Answers one request.
pub fn handle(backend: &dyn QuoteBackend, req: Request) -> Response {
    let kind = req.kind();
    let res = match req {
        Request::InitQuoteEx {
            att_key_id,
            b_pub_key_id,
            buf_size,
        } => init_quote_ex(backend, att_key_id.as_deref(), b_pub_key_id, buf_size),
        Request::GetQuoteSizeEx { att_key_id } => {
            key_ok(kind, att_key_id.as_deref()).and_then(|()| {
                backend
                    .quote_size()
                    .map(|quote_size| Response::GetQuoteSizeEx { quote_size })
                    .map_err(|c| err(kind, c))
            })
        }
        Request::GetQuoteEx {
            report,
            att_key_id,
            qe_report_info,
            buf_size,
        } => get_quote_ex(
            backend,
            &report,
            att_key_id.as_deref(),
            qe_report_info,
            buf_size,
        ),
        Request::SelectAttKeyId { att_key_id_list } => select(att_key_id_list.as_deref()),
        Request::GetSupportedAttKeyIdNum => Ok(Response::GetSupportedAttKeyIdNum { num: 1 }),
        Request::GetSupportedAttKeyIds { buf_size } => {
            if usize::try_from(buf_size).is_ok_and(|b| b >= ATT_KEY_ID_SIZE) {
                Ok(Response::GetSupportedAttKeyIds {
                    att_key_ids: ECDSA_P256_QE3_KEY_ID.to_vec(),
                })
            } else {
                Err(err(kind, AesmError::Parameter))
            }
        }
        // `Request` is non-exhaustive; everything else is EPID / launch / platform services.
        other => Err(err(other.kind(), AesmError::ServiceUnavailable)),
    };
    res.unwrap_or_else(|e| e)
}

fn init_quote_ex(
    backend: &dyn QuoteBackend,
    att_key_id: Option<&[u8]>,
    b_pub_key_id: bool,
    buf_size: Option<u64>,
) -> Result<Response, Response> {
    let kind = RequestKind::InitQuoteEx;
    key_ok(kind, att_key_id)?;
    let target_info = backend.target_info().map_err(|c| err(kind, c))?.to_vec();
    let pub_key_id = if b_pub_key_id {
        // Only now is buf_size meaningful.
        if buf_size.unwrap_or(0) < PUB_KEY_ID_SIZE {
            return Err(err(kind, AesmError::Parameter));
        }
        Some(backend.pub_key_id().map_err(|c| err(kind, c))?.to_vec())
    } else {
        None
    };
    Ok(Response::InitQuoteEx {
        target_info,
        pub_key_id_size: PUB_KEY_ID_SIZE,
        pub_key_id,
    })
}

fn get_quote_ex(
    backend: &dyn QuoteBackend,
    report: &[u8],
    att_key_id: Option<&[u8]>,
    qe_report_info: Option<Vec<u8>>,
    buf_size: u32,
) -> Result<Response, Response> {
    let kind = RequestKind::GetQuoteEx;
    key_ok(kind, att_key_id)?;
    let report: &[u8; REPORT_SIZE] = report
        .try_into()
        .map_err(|_| err(kind, AesmError::Parameter))?;
    if buf_size > MAX_QUOTE_BUF {
        return Err(err(kind, AesmError::Parameter));
    }
    if qe_report_info
        .as_ref()
        .is_some_and(|q| q.len() != QE_REPORT_INFO_SIZE)
    {
        return Err(err(kind, AesmError::Parameter));
    }
    // Refuse before quoting: on hardware a quote is an enclave call the client would wait
    // for only to get this error.
    if qe_report_info.is_some() && !backend.supports_qe_report() {
        return Err(err(kind, AesmError::UnableToGenerateQeReport));
    }
    let mut quote = backend.quote(report).map_err(|c| err(kind, c))?;
    let buf = usize::try_from(buf_size).map_err(|_| err(kind, AesmError::Parameter))?;
    if quote.len() > buf {
        return Err(err(kind, AesmError::Parameter));
    }
    let qe_report_info = match qe_report_info {
        Some(mut info) => {
            let (nonce, rest) = info
                .split_at_checked(16)
                .ok_or(err(kind, AesmError::Parameter))?;
            let (target, _) = rest
                .split_first_chunk::<512>()
                .ok_or(err(kind, AesmError::Parameter))?;
            let mut ctx = Context::new(&SHA256);
            ctx.update(nonce);
            ctx.update(&quote);
            let mut report_data = [0u8; 64];
            if let Some(head) = report_data.get_mut(..32) {
                head.copy_from_slice(ctx.finish().as_ref());
            }
            let qe_report = backend
                .qe_report(target, report_data)
                .map_err(|c| err(kind, c))?;
            if let Some(slot) = info.get_mut(16 + 512..) {
                slot.copy_from_slice(&qe_report);
            }
            Some(info)
        }
        None => None,
    };
    quote.resize(buf, 0);
    Ok(Response::GetQuoteEx {
        quote,
        qe_report_info,
    })
}

fn select(list: Option<&[u8]>) -> Result<Response, Response> {
    let kind = RequestKind::SelectAttKeyId;
    let selected = || Response::SelectAttKeyId {
        selected: ECDSA_P256_QE3_KEY_ID.to_vec(),
    };
    let Some(list) = list else {
        return Ok(selected());
    };
    let bad = || err(kind, AesmError::Parameter);
    let (header, entries) = list.split_first_chunk::<8>().ok_or_else(bad)?;
    let [id0, id1, v0, v1, c0, c1, c2, c3] = *header;
    let count = usize::try_from(u32::from_le_bytes([c0, c1, c2, c3])).map_err(|_| bad())?;
    if [id0, id1, v0, v1] != [0; 4]
        || count > MAX_KEY_ID_LIST
        || Some(entries.len()) != count.checked_mul(ATT_KEY_ID_SIZE)
    {
        return Err(bad());
    }
    if entries
        .chunks_exact(ATT_KEY_ID_SIZE)
        .any(|e| AttKeyId::classify(Some(e)) == AttKeyId::EcdsaP256)
    {
        Ok(selected())
    } else {
        Err(err(kind, AesmError::UnsupportedAttKeyId))
    }
}

#[cfg(test)]
mod tests;

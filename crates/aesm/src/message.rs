//! Typed requests and responses, converted from and to the prost wire types at the boundary.

use prost::Message as _;

use crate::proto::{self, request as rq, response as rs};
use crate::{AesmError, Error, Result};

/// Size of an SGX REPORT (`sgx_report_t`); aesmd's ECDSA path rejects any other size.
pub const REPORT_SIZE: usize = 432;
/// Size of an SGX TARGETINFO (`sgx_target_info_t`).
pub const TARGET_INFO_SIZE: usize = 512;
/// Size of `sgx_ql_qe_report_info_t`: nonce 16 ‖ app target info 512 ‖ QE report 432.
pub const QE_REPORT_INFO_SIZE: usize = 16 + TARGET_INFO_SIZE + REPORT_SIZE;

/// Which request a message carries (the `Request` wrapper field), for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestKind {
    /// 1: EPID InitQuote.
    InitQuote,
    /// 2: EPID GetQuote.
    GetQuote,
    /// 3: GetLaunchToken.
    GetLaunchToken,
    /// 4: ReportAttestationError.
    ReportAttestationError,
    /// 10: GetWhiteListSize.
    GetWhiteListSize,
    /// 11: GetWhiteList.
    GetWhiteList,
    /// 12: SGXGetExtendedEpidGroupId.
    GetExtendedEpidGroupId,
    /// 13: SGXSwitchExtendedEpidGroup.
    SwitchExtendedEpidGroup,
    /// 14: SGXRegister.
    Register,
    /// 15: InitQuoteEx.
    InitQuoteEx,
    /// 16: GetQuoteSizeEx.
    GetQuoteSizeEx,
    /// 17: GetQuoteEx.
    GetQuoteEx,
    /// 18: CheckUpdateStatus.
    CheckUpdateStatus,
    /// 19: SelectAttKeyID.
    SelectAttKeyId,
    /// 21: GetSupportedAttKeyIDNum.
    GetSupportedAttKeyIdNum,
    /// 22: GetSupportedAttKeyIDs.
    GetSupportedAttKeyIds,
}

impl RequestKind {
    /// A stable label for logs and metrics.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::InitQuote => "init_quote",
            Self::GetQuote => "get_quote",
            Self::GetLaunchToken => "get_launch_token",
            Self::ReportAttestationError => "report_attestation_error",
            Self::GetWhiteListSize => "get_white_list_size",
            Self::GetWhiteList => "get_white_list",
            Self::GetExtendedEpidGroupId => "get_extended_epid_group_id",
            Self::SwitchExtendedEpidGroup => "switch_extended_epid_group",
            Self::Register => "register",
            Self::InitQuoteEx => "init_quote_ex",
            Self::GetQuoteSizeEx => "get_quote_size_ex",
            Self::GetQuoteEx => "get_quote_ex",
            Self::CheckUpdateStatus => "check_update_status",
            Self::SelectAttKeyId => "select_att_key_id",
            Self::GetSupportedAttKeyIdNum => "get_supported_att_key_id_num",
            Self::GetSupportedAttKeyIds => "get_supported_att_key_ids",
        }
    }
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// InitQuoteEx: target info of the QE, and the public key ID (or only its size).
    InitQuoteEx {
        /// Attestation key ID (`sgx_att_key_id_ext_t`); absent = default key.
        att_key_id: Option<Vec<u8>>,
        /// Whether the client wants the public key ID itself (else only its size).
        b_pub_key_id: bool,
        /// Client buffer for the public key ID; garbage when `b_pub_key_id` is false
        /// (libsgx_dcap_ql leaves it uninitialized), so it is only read when true.
        buf_size: Option<u64>,
    },
    /// GetQuoteSizeEx.
    GetQuoteSizeEx {
        /// Attestation key ID.
        att_key_id: Option<Vec<u8>>,
    },
    /// GetQuoteEx: a quote for an app REPORT.
    GetQuoteEx {
        /// The app enclave's REPORT (432 bytes when well-formed).
        report: Vec<u8>,
        /// Attestation key ID.
        att_key_id: Option<Vec<u8>>,
        /// Optional `sgx_ql_qe_report_info_t` (960 bytes) to receive a QE report.
        qe_report_info: Option<Vec<u8>>,
        /// Size of the client's quote buffer; the answer is exactly this long.
        buf_size: u32,
    },
    /// SelectAttKeyID.
    SelectAttKeyId {
        /// `sgx_att_key_id_list_t` (header + entries); absent matches every key.
        att_key_id_list: Option<Vec<u8>>,
    },
    /// GetSupportedAttKeyIDNum.
    GetSupportedAttKeyIdNum,
    /// GetSupportedAttKeyIDs.
    GetSupportedAttKeyIds {
        /// Client buffer size (must hold 256 bytes per key).
        buf_size: u32,
    },
    /// An EPID, launch-token or platform-service request, which this service does not
    /// implement (answered with [`AesmError::ServiceUnavailable`]).
    Unsupported(RequestKind),
}

impl Request {
    /// The request's kind.
    #[must_use]
    pub fn kind(&self) -> RequestKind {
        match self {
            Self::InitQuoteEx { .. } => RequestKind::InitQuoteEx,
            Self::GetQuoteSizeEx { .. } => RequestKind::GetQuoteSizeEx,
            Self::GetQuoteEx { .. } => RequestKind::GetQuoteEx,
            Self::SelectAttKeyId { .. } => RequestKind::SelectAttKeyId,
            Self::GetSupportedAttKeyIdNum => RequestKind::GetSupportedAttKeyIdNum,
            Self::GetSupportedAttKeyIds { .. } => RequestKind::GetSupportedAttKeyIds,
            Self::Unsupported(k) => *k,
        }
    }

    /// Decodes a request payload (the bytes after the length prefix).
    ///
    /// # Errors
    /// [`Error::Decode`] for invalid protobuf; [`Error::UnknownRequest`] when the wrapper
    /// holds no request or more than one.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let w = proto::Request::decode(payload).map_err(Error::Decode)?;
        let mut found: Vec<Request> = Vec::with_capacity(1);
        let legacy = [
            (w.init_quote_req.is_some(), RequestKind::InitQuote),
            (w.get_quote_req.is_some(), RequestKind::GetQuote),
            (w.get_lic_token_req.is_some(), RequestKind::GetLaunchToken),
            (
                w.report_err_req.is_some(),
                RequestKind::ReportAttestationError,
            ),
            (
                w.get_white_list_size_req.is_some(),
                RequestKind::GetWhiteListSize,
            ),
            (w.get_white_list_req.is_some(), RequestKind::GetWhiteList),
            (
                w.sgx_get_extended_epid_group_id_req.is_some(),
                RequestKind::GetExtendedEpidGroupId,
            ),
            (
                w.sgx_switch_extended_epid_group_req.is_some(),
                RequestKind::SwitchExtendedEpidGroup,
            ),
            (w.sgx_register_req.is_some(), RequestKind::Register),
            (
                w.check_update_status_req.is_some(),
                RequestKind::CheckUpdateStatus,
            ),
        ];
        for (present, kind) in legacy {
            if present {
                found.push(Self::Unsupported(kind));
            }
        }
        if let Some(r) = w.init_quote_ex_req {
            found.push(Self::InitQuoteEx {
                att_key_id: r.att_key_id,
                b_pub_key_id: r.b_pub_key_id,
                buf_size: r.buf_size,
            });
        }
        if let Some(r) = w.get_quote_size_ex_req {
            found.push(Self::GetQuoteSizeEx {
                att_key_id: r.att_key_id,
            });
        }
        if let Some(r) = w.get_quote_ex_req {
            found.push(Self::GetQuoteEx {
                report: r.report,
                att_key_id: r.att_key_id,
                qe_report_info: r.qe_report_info,
                buf_size: r.buf_size,
            });
        }
        if let Some(r) = w.select_att_key_id_req {
            found.push(Self::SelectAttKeyId {
                att_key_id_list: r.att_key_id_list,
            });
        }
        if w.get_supported_att_key_id_num_req.is_some() {
            found.push(Self::GetSupportedAttKeyIdNum);
        }
        if let Some(r) = w.get_supported_att_key_i_ds_req {
            found.push(Self::GetSupportedAttKeyIds {
                buf_size: r.buf_size,
            });
        }
        match (found.pop(), found.is_empty()) {
            (Some(req), true) => Ok(req),
            _ => Err(Error::UnknownRequest),
        }
    }

    /// Encodes the request payload (without the length prefix).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = proto::Request::default();
        match self.clone() {
            Self::InitQuoteEx {
                att_key_id,
                b_pub_key_id,
                buf_size,
            } => {
                w.init_quote_ex_req = Some(rq::InitQuoteExRequest {
                    att_key_id,
                    b_pub_key_id,
                    buf_size,
                    timeout: None,
                });
            }
            Self::GetQuoteSizeEx { att_key_id } => {
                w.get_quote_size_ex_req = Some(rq::GetQuoteSizeExRequest {
                    att_key_id,
                    timeout: None,
                });
            }
            Self::GetQuoteEx {
                report,
                att_key_id,
                qe_report_info,
                buf_size,
            } => {
                w.get_quote_ex_req = Some(rq::GetQuoteExRequest {
                    report,
                    att_key_id,
                    qe_report_info,
                    buf_size,
                    timeout: None,
                });
            }
            Self::SelectAttKeyId { att_key_id_list } => {
                w.select_att_key_id_req = Some(rq::SelectAttKeyIdRequest {
                    att_key_id_list,
                    timeout: None,
                });
            }
            Self::GetSupportedAttKeyIdNum => {
                w.get_supported_att_key_id_num_req = Some(Default::default());
            }
            Self::GetSupportedAttKeyIds { buf_size } => {
                w.get_supported_att_key_i_ds_req = Some(rq::GetSupportedAttKeyIDsRequest {
                    buf_size,
                    timeout: None,
                });
            }
            Self::Unsupported(kind) => match kind {
                RequestKind::InitQuote => w.init_quote_req = Some(Default::default()),
                RequestKind::GetQuote => w.get_quote_req = Some(Default::default()),
                RequestKind::GetLaunchToken => w.get_lic_token_req = Some(Default::default()),
                RequestKind::ReportAttestationError => {
                    w.report_err_req = Some(Default::default());
                }
                RequestKind::GetWhiteListSize => {
                    w.get_white_list_size_req = Some(Default::default());
                }
                RequestKind::GetWhiteList => w.get_white_list_req = Some(Default::default()),
                RequestKind::GetExtendedEpidGroupId => {
                    w.sgx_get_extended_epid_group_id_req = Some(Default::default());
                }
                RequestKind::SwitchExtendedEpidGroup => {
                    w.sgx_switch_extended_epid_group_req = Some(Default::default());
                }
                RequestKind::Register => w.sgx_register_req = Some(Default::default()),
                RequestKind::CheckUpdateStatus => {
                    w.check_update_status_req = Some(Default::default());
                }
                // The supported kinds never appear as `Unsupported` after decoding; encode
                // them as their bare request so the kind still round-trips.
                RequestKind::InitQuoteEx => w.init_quote_ex_req = Some(Default::default()),
                RequestKind::GetQuoteSizeEx => {
                    w.get_quote_size_ex_req = Some(Default::default());
                }
                RequestKind::GetQuoteEx => w.get_quote_ex_req = Some(Default::default()),
                RequestKind::SelectAttKeyId => {
                    w.select_att_key_id_req = Some(Default::default());
                }
                RequestKind::GetSupportedAttKeyIdNum => {
                    w.get_supported_att_key_id_num_req = Some(Default::default());
                }
                RequestKind::GetSupportedAttKeyIds => {
                    w.get_supported_att_key_i_ds_req = Some(Default::default());
                }
            },
        }
        w.encode_to_vec()
    }
}

/// A response, typed. Success variants carry the payload; [`Response::Error`] carries the
/// AESM code and is encoded as the matching response message with only `errorCode` set.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// InitQuoteEx succeeded.
    InitQuoteEx {
        /// QE target info (512 bytes).
        target_info: Vec<u8>,
        /// Size of the public key ID (32 for ECDSA).
        pub_key_id_size: u64,
        /// The public key ID (SHA-256 of the attestation key), when asked for.
        pub_key_id: Option<Vec<u8>>,
    },
    /// GetQuoteSizeEx succeeded.
    GetQuoteSizeEx {
        /// Size of a quote.
        quote_size: u32,
    },
    /// GetQuoteEx succeeded.
    GetQuoteEx {
        /// The quote, zero-padded to the request's `buf_size`.
        quote: Vec<u8>,
        /// The request's `qe_report_info` with the QE report filled in.
        qe_report_info: Option<Vec<u8>>,
    },
    /// SelectAttKeyID succeeded.
    SelectAttKeyId {
        /// The selected key ID (256 bytes).
        selected: Vec<u8>,
    },
    /// GetSupportedAttKeyIDNum succeeded.
    GetSupportedAttKeyIdNum {
        /// Number of supported key IDs.
        num: u32,
    },
    /// GetSupportedAttKeyIDs succeeded.
    GetSupportedAttKeyIds {
        /// Concatenated 256-byte key IDs.
        att_key_ids: Vec<u8>,
    },
    /// A failure for a request of `kind`.
    Error {
        /// Which request failed.
        kind: RequestKind,
        /// The AESM error code.
        code: AesmError,
    },
}

impl Response {
    /// The request kind this answers.
    #[must_use]
    pub fn kind(&self) -> RequestKind {
        match self {
            Self::InitQuoteEx { .. } => RequestKind::InitQuoteEx,
            Self::GetQuoteSizeEx { .. } => RequestKind::GetQuoteSizeEx,
            Self::GetQuoteEx { .. } => RequestKind::GetQuoteEx,
            Self::SelectAttKeyId { .. } => RequestKind::SelectAttKeyId,
            Self::GetSupportedAttKeyIdNum { .. } => RequestKind::GetSupportedAttKeyIdNum,
            Self::GetSupportedAttKeyIds { .. } => RequestKind::GetSupportedAttKeyIds,
            Self::Error { kind, .. } => *kind,
        }
    }

    /// The AESM code the response carries.
    #[must_use]
    pub fn code(&self) -> AesmError {
        match self {
            Self::Error { code, .. } => *code,
            _ => AesmError::Success,
        }
    }

    /// Encodes the response payload (without the length prefix).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        self.clone().into_wire().encode_to_vec()
    }

    /// Encodes the response as one frame (length prefix and payload) in a single buffer.
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`] for a payload over 4 GiB.
    pub fn to_frame(&self) -> Result<Vec<u8>> {
        self.clone().into_frame()
    }

    /// Like [`Response::to_frame`], consuming the response (no copy of the quote).
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`] for a payload over 4 GiB.
    pub fn into_frame(self) -> Result<Vec<u8>> {
        let wire = self.into_wire();
        let len = wire.encoded_len();
        let prefix = u32::try_from(len).map_err(|_| Error::FrameTooLarge {
            len: u32::MAX,
            max: u32::MAX,
        })?;
        let mut out = Vec::with_capacity(len.saturating_add(4));
        out.extend_from_slice(&prefix.to_le_bytes());
        wire.encode(&mut out).map_err(|_| Error::FrameTooLarge {
            len: prefix,
            max: prefix,
        })?;
        Ok(out)
    }

    fn into_wire(self) -> proto::Response {
        let mut w = proto::Response::default();
        match self {
            Self::InitQuoteEx {
                target_info,
                pub_key_id_size,
                pub_key_id,
            } => {
                w.init_quote_ex_res = Some(rs::InitQuoteExResponse {
                    error_code: 0,
                    target_info: Some(target_info),
                    pub_key_id_size: Some(pub_key_id_size),
                    pub_key_id,
                });
            }
            Self::GetQuoteSizeEx { quote_size } => {
                w.get_quote_size_ex_res = Some(rs::GetQuoteSizeExResponse {
                    error_code: 0,
                    quote_size: Some(quote_size),
                });
            }
            Self::GetQuoteEx {
                quote,
                qe_report_info,
            } => {
                w.get_quote_ex_res = Some(rs::GetQuoteExResponse {
                    error_code: 0,
                    quote: Some(quote),
                    qe_report_info,
                });
            }
            Self::SelectAttKeyId { selected } => {
                w.select_att_key_id_res = Some(rs::SelectAttKeyIdResponse {
                    error_code: 0,
                    selected_att_key_id: Some(selected),
                });
            }
            Self::GetSupportedAttKeyIdNum { num } => {
                w.get_supported_att_key_id_num_res = Some(rs::GetSupportedAttKeyIdNumResponse {
                    error_code: 0,
                    att_key_id_num: Some(num),
                });
            }
            Self::GetSupportedAttKeyIds { att_key_ids } => {
                w.get_supported_att_key_i_ds_res = Some(rs::GetSupportedAttKeyIDsResponse {
                    error_code: 0,
                    att_key_ids: Some(att_key_ids),
                });
            }
            Self::Error { kind, code } => set_error(&mut w, kind, code.code()),
        }
        w
    }

    /// Decodes the response to a request of `kind` (client side).
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::UnexpectedResponse`] when the message for `kind` is
    /// missing, [`Error::UnknownCode`] for a code Intel does not define.
    pub fn decode(payload: &[u8], kind: RequestKind) -> Result<Self> {
        let w = proto::Response::decode(payload).map_err(Error::Decode)?;
        let missing = Error::UnexpectedResponse {
            wanted: kind.label(),
        };
        let err = |code: u32| -> Result<Option<Self>> {
            match AesmError::from_code(code) {
                Some(AesmError::Success) => Ok(None),
                Some(code) => Ok(Some(Self::Error { kind, code })),
                None => Err(Error::UnknownCode(code)),
            }
        };
        let res = match kind {
            RequestKind::InitQuoteEx => {
                let r = w.init_quote_ex_res.ok_or(missing)?;
                err(r.error_code)?.unwrap_or(Self::InitQuoteEx {
                    target_info: r.target_info.unwrap_or_default(),
                    pub_key_id_size: r.pub_key_id_size.unwrap_or_default(),
                    pub_key_id: r.pub_key_id,
                })
            }
            RequestKind::GetQuoteSizeEx => {
                let r = w.get_quote_size_ex_res.ok_or(missing)?;
                err(r.error_code)?.unwrap_or(Self::GetQuoteSizeEx {
                    quote_size: r.quote_size.unwrap_or_default(),
                })
            }
            RequestKind::GetQuoteEx => {
                let r = w.get_quote_ex_res.ok_or(missing)?;
                err(r.error_code)?.unwrap_or(Self::GetQuoteEx {
                    quote: r.quote.unwrap_or_default(),
                    qe_report_info: r.qe_report_info,
                })
            }
            RequestKind::SelectAttKeyId => {
                let r = w.select_att_key_id_res.ok_or(missing)?;
                err(r.error_code)?.unwrap_or(Self::SelectAttKeyId {
                    selected: r.selected_att_key_id.unwrap_or_default(),
                })
            }
            RequestKind::GetSupportedAttKeyIdNum => {
                let r = w.get_supported_att_key_id_num_res.ok_or(missing)?;
                err(r.error_code)?.unwrap_or(Self::GetSupportedAttKeyIdNum {
                    num: r.att_key_id_num.unwrap_or_default(),
                })
            }
            RequestKind::GetSupportedAttKeyIds => {
                let r = w.get_supported_att_key_i_ds_res.ok_or(missing)?;
                err(r.error_code)?.unwrap_or(Self::GetSupportedAttKeyIds {
                    att_key_ids: r.att_key_ids.unwrap_or_default(),
                })
            }
            other => {
                let code = legacy_code(&w, other).ok_or(missing)?;
                err(code)?.unwrap_or(Self::Error {
                    kind,
                    code: AesmError::Success,
                })
            }
        };
        Ok(res)
    }
}

fn set_error(w: &mut proto::Response, kind: RequestKind, error_code: u32) {
    match kind {
        RequestKind::InitQuote => {
            w.init_quote_res = Some(rs::InitQuoteResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::GetQuote => {
            w.get_quote_res = Some(rs::GetQuoteResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::GetLaunchToken => {
            w.get_lic_token_res = Some(rs::GetLaunchTokenResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::ReportAttestationError => {
            w.report_err_res = Some(rs::ReportAttestationErrorResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::GetWhiteListSize => {
            w.get_white_list_size_res = Some(rs::GetWhiteListSizeResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::GetWhiteList => {
            w.get_white_list_res = Some(rs::GetWhiteListResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::GetExtendedEpidGroupId => {
            w.sgx_get_extended_epid_group_id_res = Some(rs::SgxGetExtendedEpidGroupIdResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::SwitchExtendedEpidGroup => {
            w.sgx_switch_extended_epid_group_res =
                Some(rs::SgxSwitchExtendedEpidGroupResponse { error_code });
        }
        RequestKind::Register => {
            w.sgx_register_res = Some(rs::SgxRegisterResponse { error_code });
        }
        RequestKind::CheckUpdateStatus => {
            w.check_update_status_res = Some(rs::CheckUpdateStatusResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::InitQuoteEx => {
            w.init_quote_ex_res = Some(rs::InitQuoteExResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::GetQuoteSizeEx => {
            w.get_quote_size_ex_res = Some(rs::GetQuoteSizeExResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::GetQuoteEx => {
            w.get_quote_ex_res = Some(rs::GetQuoteExResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::SelectAttKeyId => {
            w.select_att_key_id_res = Some(rs::SelectAttKeyIdResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::GetSupportedAttKeyIdNum => {
            w.get_supported_att_key_id_num_res = Some(rs::GetSupportedAttKeyIdNumResponse {
                error_code,
                ..Default::default()
            });
        }
        RequestKind::GetSupportedAttKeyIds => {
            w.get_supported_att_key_i_ds_res = Some(rs::GetSupportedAttKeyIDsResponse {
                error_code,
                ..Default::default()
            });
        }
    }
}

fn legacy_code(w: &proto::Response, kind: RequestKind) -> Option<u32> {
    match kind {
        RequestKind::InitQuote => w.init_quote_res.as_ref().map(|r| r.error_code),
        RequestKind::GetQuote => w.get_quote_res.as_ref().map(|r| r.error_code),
        RequestKind::GetLaunchToken => w.get_lic_token_res.as_ref().map(|r| r.error_code),
        RequestKind::ReportAttestationError => w.report_err_res.as_ref().map(|r| r.error_code),
        RequestKind::GetWhiteListSize => w.get_white_list_size_res.as_ref().map(|r| r.error_code),
        RequestKind::GetWhiteList => w.get_white_list_res.as_ref().map(|r| r.error_code),
        RequestKind::GetExtendedEpidGroupId => w
            .sgx_get_extended_epid_group_id_res
            .as_ref()
            .map(|r| r.error_code),
        RequestKind::SwitchExtendedEpidGroup => w
            .sgx_switch_extended_epid_group_res
            .as_ref()
            .map(|r| r.error_code),
        RequestKind::Register => w.sgx_register_res.as_ref().map(|r| r.error_code),
        RequestKind::CheckUpdateStatus => w.check_update_status_res.as_ref().map(|r| r.error_code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_field_numbers_match_intel() {
        // GetQuoteExRequest: report = 1, buf_size = 4, inside Request field 17.
        let req = Request::GetQuoteEx {
            report: vec![0xAA],
            att_key_id: None,
            qe_report_info: None,
            buf_size: 5,
        };
        // 17 << 3 | 2 = 0x8a 0x01; inner: 0x0a 01 aa (report), 0x20 05 (buf_size)
        assert_eq!(
            req.encode(),
            [0x8a, 0x01, 0x05, 0x0a, 0x01, 0xaa, 0x20, 0x05]
        );
        // InitQuoteExRequest: b_pub_key_id = 3 (required, so always present).
        let req = Request::InitQuoteEx {
            att_key_id: None,
            b_pub_key_id: false,
            buf_size: None,
        };
        assert_eq!(req.encode(), [0x7a, 0x02, 0x18, 0x00]);
        // The error code is always encoded, even when 0 (proto2 required).
        let res = Response::GetQuoteSizeEx { quote_size: 7 };
        assert_eq!(res.encode(), [0x82, 0x01, 0x04, 0x08, 0x00, 0x10, 0x07]);
    }

    #[test]
    fn empty_and_double_requests_are_unknown() {
        assert!(matches!(Request::decode(&[]), Err(Error::UnknownRequest)));
        let mut two = Request::GetSupportedAttKeyIdNum.encode();
        two.extend(Request::GetQuoteSizeEx { att_key_id: None }.encode());
        assert!(matches!(Request::decode(&two), Err(Error::UnknownRequest)));
        assert!(matches!(Request::decode(&[0xff]), Err(Error::Decode(_))));
    }

    #[test]
    fn legacy_requests_are_typed_unsupported_and_answered() {
        let r = Request::decode(&Request::Unsupported(RequestKind::GetLaunchToken).encode());
        assert_eq!(
            r.unwrap(),
            Request::Unsupported(RequestKind::GetLaunchToken)
        );
        let res = Response::Error {
            kind: RequestKind::GetQuote,
            code: AesmError::ServiceUnavailable,
        };
        assert_eq!(
            Response::decode(&res.encode(), RequestKind::GetQuote).unwrap(),
            res
        );
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..600);
        prop_oneof![
            (
                proptest::option::of(bytes.clone()),
                any::<bool>(),
                proptest::option::of(any::<u64>())
            )
                .prop_map(|(a, b, c)| Request::InitQuoteEx {
                    att_key_id: a,
                    b_pub_key_id: b,
                    buf_size: c
                }),
            proptest::option::of(bytes.clone())
                .prop_map(|a| Request::GetQuoteSizeEx { att_key_id: a }),
            (
                bytes.clone(),
                proptest::option::of(bytes.clone()),
                proptest::option::of(bytes.clone()),
                any::<u32>()
            )
                .prop_map(|(r, a, q, b)| Request::GetQuoteEx {
                    report: r,
                    att_key_id: a,
                    qe_report_info: q,
                    buf_size: b
                }),
            proptest::option::of(bytes)
                .prop_map(|l| Request::SelectAttKeyId { att_key_id_list: l }),
            Just(Request::GetSupportedAttKeyIdNum),
            any::<u32>().prop_map(|b| Request::GetSupportedAttKeyIds { buf_size: b }),
            Just(Request::Unsupported(RequestKind::InitQuote)),
            Just(Request::Unsupported(RequestKind::CheckUpdateStatus)),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(req in arb_request()) {
            prop_assert_eq!(Request::decode(&req.encode()).unwrap(), req);
        }

        #[test]
        fn responses_round_trip(q in proptest::collection::vec(any::<u8>(), 0..100), n in any::<u32>()) {
            for res in [
                Response::GetQuoteEx { quote: q.clone(), qe_report_info: Some(q.clone()) },
                Response::GetQuoteSizeEx { quote_size: n },
                Response::InitQuoteEx { target_info: q.clone(), pub_key_id_size: 32, pub_key_id: None },
                Response::GetSupportedAttKeyIds { att_key_ids: q.clone() },
                Response::Error { kind: RequestKind::GetQuoteEx, code: AesmError::Parameter },
            ] {
                prop_assert_eq!(Response::decode(&res.encode(), res.kind()).unwrap(), res.clone());
            let frame = res.to_frame().unwrap();
            prop_assert_eq!(crate::frame::split_frame(&frame, u32::MAX).unwrap(), &res.encode()[..]);
            }
        }
    }
}

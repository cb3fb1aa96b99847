//! Errors: the AESM result codes (`aesm_error_t`) and the protocol-layer [`Error`].

/// `aesm_error_t`, the value of every response's `errorCode`, as defined in linux-sgx
/// `psw/ae/inc/internal/aesm_error.h` (it is not an `sgx_status_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum AesmError {
    /// `AESM_SUCCESS`.
    Success = 0,
    /// `AESM_UNEXPECTED_ERROR`.
    Unexpected = 1,
    /// `AESM_NO_DEVICE_ERROR`.
    NoDevice = 2,
    /// `AESM_PARAMETER_ERROR`: a malformed or too-small argument (e.g. `buf_size`).
    Parameter = 3,
    /// `AESM_EPIDBLOB_ERROR`.
    EpidBlob = 4,
    /// `AESM_EPID_REVOKED_ERROR`.
    EpidRevoked = 5,
    /// `AESM_GET_LICENSETOKEN_ERROR`.
    GetLicenseToken = 6,
    /// `AESM_SESSION_INVALID`.
    SessionInvalid = 7,
    /// `AESM_MAX_NUM_SESSION_REACHED`.
    MaxNumSessionReached = 8,
    /// `AESM_PSDA_UNAVAILABLE`.
    PsdaUnavailable = 9,
    /// `AESM_EPH_SESSION_FAILED`.
    EphSessionFailed = 10,
    /// `AESM_LONG_TERM_PAIRING_FAILED`.
    LongTermPairingFailed = 11,
    /// `AESM_NETWORK_ERROR`.
    Network = 12,
    /// `AESM_NETWORK_BUSY_ERROR`.
    NetworkBusy = 13,
    /// `AESM_PROXY_SETTING_ASSIST`.
    ProxySettingAssist = 14,
    /// `AESM_FILE_ACCESS_ERROR`.
    FileAccess = 15,
    /// `AESM_SGX_PROVISION_FAILED`.
    SgxProvisionFailed = 16,
    /// `AESM_SERVICE_STOPPED`.
    ServiceStopped = 17,
    /// `AESM_BUSY`: the service is overloaded; clients retry.
    Busy = 18,
    /// `AESM_BACKEND_SERVER_BUSY`.
    BackendServerBusy = 19,
    /// `AESM_UPDATE_AVAILABLE`.
    UpdateAvailable = 20,
    /// `AESM_OUT_OF_MEMORY_ERROR`.
    OutOfMemory = 21,
    /// `AESM_MSG_ERROR`.
    Msg = 22,
    /// `AESM_THREAD_ERROR`.
    Thread = 23,
    /// `AESM_SGX_DEVICE_NOT_AVAILABLE`.
    SgxDeviceNotAvailable = 24,
    /// `AESM_ENABLE_SGX_DEVICE_FAILED`.
    EnableSgxDeviceFailed = 25,
    /// `AESM_PLATFORM_INFO_BLOB_INVALID_SIG`.
    PlatformInfoBlobInvalidSig = 26,
    /// `AESM_SERVICE_NOT_AVAILABLE` (27; absent from newer headers).
    ServiceNotAvailable = 27,
    /// `AESM_KDF_MISMATCH`.
    KdfMismatch = 28,
    /// `AESM_OUT_OF_EPC`.
    OutOfEpc = 29,
    /// `AESM_SERVICE_UNAVAILABLE`: what aesmd answers when a plugin is missing; confcom
    /// answers EPID and launch-token requests with it.
    ServiceUnavailable = 30,
    /// `AESM_UNRECOGNIZED_PLATFORM`.
    UnrecognizedPlatform = 31,
    /// `AESM_ECDSA_ID_MISMATCH`.
    EcdsaIdMismatch = 32,
    /// `AESM_PATHNAME_BUFFER_OVERFLOW_ERROR`.
    PathnameBufferOverflow = 33,
    /// `AESM_ERROR_STORED_KEY`.
    StoredKey = 34,
    /// `AESM_PUB_KEY_ID_MISMATCH`.
    PubKeyIdMismatch = 35,
    /// `AESM_INVALID_PCE_SIG_SCHEME`.
    InvalidPceSigScheme = 36,
    /// `AESM_ATT_KEY_BLOB_ERROR`.
    AttKeyBlob = 37,
    /// `AESM_UNSUPPORTED_ATT_KEY_ID`: the attestation key ID is not the ECDSA P-256 QE3 key.
    UnsupportedAttKeyId = 38,
    /// `AESM_UNSUPPORTED_LOADING_POLICY`.
    UnsupportedLoadingPolicy = 39,
    /// `AESM_INTERFACE_UNAVAILABLE`.
    InterfaceUnavailable = 40,
    /// `AESM_PLATFORM_LIB_UNAVAILABLE`.
    PlatformLibUnavailable = 41,
    /// `AESM_ATT_KEY_NOT_INITIALIZED`: clients redo InitQuoteEx and retry.
    AttKeyNotInitialized = 42,
    /// `AESM_ATT_KEY_CERT_DATA_INVALID`.
    AttKeyCertDataInvalid = 43,
    /// `AESM_NO_PLATFORM_CERT_DATA`.
    NoPlatformCertData = 44,
    /// `AESM_ERROR_REPORT`.
    Report = 45,
    /// `AESM_ENCLAVE_LOST`.
    EnclaveLost = 46,
    /// `AESM_INVALID_REPORT`: the app REPORT is malformed or its MAC does not check.
    InvalidReport = 47,
    /// `AESM_ENCLAVE_LOAD_ERROR`.
    EnclaveLoad = 48,
    /// `AESM_UNABLE_TO_GENERATE_QE_REPORT`.
    UnableToGenerateQeReport = 49,
    /// `AESM_KEY_CERTIFICATION_ERROR`.
    KeyCertification = 50,
    /// `AESM_CONFIG_UNSUPPORTED`.
    ConfigUnsupported = 51,
}

impl AesmError {
    /// Every code, in numeric order.
    pub const ALL: [AesmError; 52] = [
        Self::Success,
        Self::Unexpected,
        Self::NoDevice,
        Self::Parameter,
        Self::EpidBlob,
        Self::EpidRevoked,
        Self::GetLicenseToken,
        Self::SessionInvalid,
        Self::MaxNumSessionReached,
        Self::PsdaUnavailable,
        Self::EphSessionFailed,
        Self::LongTermPairingFailed,
        Self::Network,
        Self::NetworkBusy,
        Self::ProxySettingAssist,
        Self::FileAccess,
        Self::SgxProvisionFailed,
        Self::ServiceStopped,
        Self::Busy,
        Self::BackendServerBusy,
        Self::UpdateAvailable,
        Self::OutOfMemory,
        Self::Msg,
        Self::Thread,
        Self::SgxDeviceNotAvailable,
        Self::EnableSgxDeviceFailed,
        Self::PlatformInfoBlobInvalidSig,
        Self::ServiceNotAvailable,
        Self::KdfMismatch,
        Self::OutOfEpc,
        Self::ServiceUnavailable,
        Self::UnrecognizedPlatform,
        Self::EcdsaIdMismatch,
        Self::PathnameBufferOverflow,
        Self::StoredKey,
        Self::PubKeyIdMismatch,
        Self::InvalidPceSigScheme,
        Self::AttKeyBlob,
        Self::UnsupportedAttKeyId,
        Self::UnsupportedLoadingPolicy,
        Self::InterfaceUnavailable,
        Self::PlatformLibUnavailable,
        Self::AttKeyNotInitialized,
        Self::AttKeyCertDataInvalid,
        Self::NoPlatformCertData,
        Self::Report,
        Self::EnclaveLost,
        Self::InvalidReport,
        Self::EnclaveLoad,
        Self::UnableToGenerateQeReport,
        Self::KeyCertification,
        Self::ConfigUnsupported,
    ];

    /// The numeric `aesm_error_t` value.
    #[must_use]
    pub fn code(self) -> u32 {
        // Fieldless `repr(u32)` enum: the discriminant is the code.
        #[allow(clippy::as_conversions)]
        let c = self as u32;
        c
    }

    /// The code for a number, if Intel defines one.
    #[must_use]
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }

    /// A short, stable metric/log label: the snake_case name of the code (`success`,
    /// `parameter`, `unsupported_att_key_id`, `out_of_epc`, ...). Every defined code has its
    /// own; these are Prometheus label values, so existing ones never change.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Unexpected => "unexpected",
            Self::NoDevice => "no_device",
            Self::Parameter => "parameter",
            Self::EpidBlob => "epid_blob",
            Self::EpidRevoked => "epid_revoked",
            Self::GetLicenseToken => "get_license_token",
            Self::SessionInvalid => "session_invalid",
            Self::MaxNumSessionReached => "max_num_session_reached",
            Self::PsdaUnavailable => "psda_unavailable",
            Self::EphSessionFailed => "eph_session_failed",
            Self::LongTermPairingFailed => "long_term_pairing_failed",
            Self::Network => "network",
            Self::NetworkBusy => "network_busy",
            Self::ProxySettingAssist => "proxy_setting_assist",
            Self::FileAccess => "file_access",
            Self::SgxProvisionFailed => "sgx_provision_failed",
            Self::ServiceStopped => "service_stopped",
            Self::Busy => "busy",
            Self::BackendServerBusy => "backend_server_busy",
            Self::UpdateAvailable => "update_available",
            Self::OutOfMemory => "out_of_memory",
            Self::Msg => "msg",
            Self::Thread => "thread",
            Self::SgxDeviceNotAvailable => "sgx_device_not_available",
            Self::EnableSgxDeviceFailed => "enable_sgx_device_failed",
            Self::PlatformInfoBlobInvalidSig => "platform_info_blob_invalid_sig",
            Self::ServiceNotAvailable => "service_not_available",
            Self::KdfMismatch => "kdf_mismatch",
            Self::OutOfEpc => "out_of_epc",
            Self::ServiceUnavailable => "service_unavailable",
            Self::UnrecognizedPlatform => "unrecognized_platform",
            Self::EcdsaIdMismatch => "ecdsa_id_mismatch",
            Self::PathnameBufferOverflow => "pathname_buffer_overflow",
            Self::StoredKey => "stored_key",
            Self::PubKeyIdMismatch => "pub_key_id_mismatch",
            Self::InvalidPceSigScheme => "invalid_pce_sig_scheme",
            Self::AttKeyBlob => "att_key_blob",
            Self::UnsupportedAttKeyId => "unsupported_att_key_id",
            Self::UnsupportedLoadingPolicy => "unsupported_loading_policy",
            Self::InterfaceUnavailable => "interface_unavailable",
            Self::PlatformLibUnavailable => "platform_lib_unavailable",
            Self::AttKeyNotInitialized => "att_key_not_initialized",
            Self::AttKeyCertDataInvalid => "att_key_cert_data_invalid",
            Self::NoPlatformCertData => "no_platform_cert_data",
            Self::Report => "report",
            Self::EnclaveLost => "enclave_lost",
            Self::InvalidReport => "invalid_report",
            Self::EnclaveLoad => "enclave_load",
            Self::UnableToGenerateQeReport => "unable_to_generate_qe_report",
            Self::KeyCertification => "key_certification",
            Self::ConfigUnsupported => "config_unsupported",
        }
    }

    /// The label of a raw `errorCode`: [`AesmError::label`] for a code Intel defines,
    /// `other` for any other number.
    #[must_use]
    pub fn label_for_code(code: u32) -> &'static str {
        Self::from_code(code).map_or("other", Self::label)
    }
}

impl std::fmt::Display for AesmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "aesm error {} ({:?})", self.code(), self)
    }
}

/// Protocol-layer failures: framing, decoding and socket IO.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The 4-byte length prefix announces more than the bound allows.
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: u32,
        /// The bound in force.
        max: u32,
    },
    /// The frame ended inside its 4-byte length prefix.
    #[error("truncated frame: length prefix cut after {got} of 4 bytes")]
    TruncatedPrefix {
        /// Prefix bytes that arrived (0 to 3).
        got: usize,
    },
    /// The frame ended before its announced payload length.
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated {
        /// Payload bytes the length prefix announced.
        expected: usize,
        /// Payload bytes present.
        got: usize,
    },
    /// The payload is not a valid protobuf `Request`/`Response`.
    #[error("malformed protobuf message")]
    Decode(#[source] prost::DecodeError),
    /// A valid message that carries no request this protocol knows (or several).
    #[error("unknown or empty request")]
    UnknownRequest,
    /// A response that does not match the request that was sent.
    #[error("unexpected response: wanted {wanted}")]
    UnexpectedResponse {
        /// The response kind that was expected.
        wanted: &'static str,
    },
    /// The service answered with an AESM error code.
    #[error("service returned {0}")]
    Aesm(AesmError),
    /// The service answered with a code Intel does not define.
    #[error("service returned unknown aesm error code {0}")]
    UnknownCode(u32),
    /// Socket IO failed or timed out.
    #[error("socket io")]
    Io(#[source] std::io::Error),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_intel_numbers() {
        for (i, e) in AesmError::ALL.iter().enumerate() {
            assert_eq!(e.code(), u32::try_from(i).unwrap());
            assert_eq!(AesmError::from_code(e.code()), Some(*e));
        }
        assert_eq!(AesmError::ServiceUnavailable.code(), 30);
        assert_eq!(AesmError::UnsupportedAttKeyId.code(), 38);
        assert_eq!(AesmError::AttKeyNotInitialized.code(), 42);
        assert_eq!(AesmError::NoPlatformCertData.code(), 44);
        assert_eq!(AesmError::from_code(52), None);
    }

    #[test]
    fn every_defined_code_has_its_own_label_and_only_undefined_codes_are_other() {
        let mut seen = std::collections::HashMap::new();
        for e in AesmError::ALL {
            let label = e.label();
            assert_ne!(label, "other", "{e:?}");
            assert!(
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{e:?}: {label:?} is not snake_case"
            );
            let prev = seen.insert(label, e);
            assert!(
                prev.is_none(),
                "{prev:?} and {e:?} share the label {label:?}"
            );
            assert_eq!(AesmError::label_for_code(e.code()), label);
        }
        assert_eq!(seen.len(), AesmError::ALL.len());
        for undefined in [52, 53, 0xe011, u32::MAX] {
            assert_eq!(AesmError::label_for_code(undefined), "other");
        }
        // Labels that dashboards already use stay as they were.
        for (e, label) in [
            (AesmError::Success, "success"),
            (AesmError::Unexpected, "unexpected"),
            (AesmError::Parameter, "parameter"),
            (AesmError::Busy, "busy"),
            (AesmError::ServiceUnavailable, "service_unavailable"),
            (AesmError::UnsupportedAttKeyId, "unsupported_att_key_id"),
            (AesmError::AttKeyNotInitialized, "att_key_not_initialized"),
            (AesmError::NoPlatformCertData, "no_platform_cert_data"),
            (AesmError::InvalidReport, "invalid_report"),
            (
                AesmError::UnableToGenerateQeReport,
                "unable_to_generate_qe_report",
            ),
            (AesmError::SgxDeviceNotAvailable, "sgx_device_not_available"),
            (
                AesmError::PlatformLibUnavailable,
                "platform_lib_unavailable",
            ),
            (AesmError::OutOfMemory, "out_of_memory"),
            (AesmError::OutOfEpc, "out_of_epc"),
            (AesmError::EnclaveLoad, "enclave_load"),
            (AesmError::KeyCertification, "key_certification"),
        ] {
            assert_eq!(e.label(), label);
        }
    }
}

//! The verification result: TCB status, advisories and the enclave identity.

use std::fmt;

/// Seconds since the UNIX epoch (UTC). The verifier never reads the clock: callers pass the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// Greatest representable time (used as "no expiry").
    pub const MAX: UnixTime = UnixTime(u64::MAX);
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formatted = i64::try_from(self.0)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        match formatted {
            Some(s) => f.write_str(&s),
            None => write!(f, "{}s", self.0),
        }
    }
}

/// TCB status of the platform merged with the Quoting Enclave's, as Intel's QVL reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcbStatus {
    /// The platform is patched.
    UpToDate,
    /// Patched, but software mitigations for the listed advisories are needed.
    SwHardeningNeeded,
    /// Patched, but the platform configuration needs changes.
    ConfigurationNeeded,
    /// Both configuration changes and software hardening are needed.
    ConfigurationAndSwHardeningNeeded,
    /// The platform (or its Quoting Enclave) is out of date.
    OutOfDate,
    /// Out of date and configuration changes are needed.
    OutOfDateConfigurationNeeded,
    /// The TCB level is revoked.
    Revoked,
}

impl TcbStatus {
    /// All statuses, in order of increasing severity.
    pub const ALL: [TcbStatus; 7] = [
        TcbStatus::UpToDate,
        TcbStatus::SwHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSwHardeningNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::Revoked,
    ];

    /// Intel's spelling ("UpToDate", "SWHardeningNeeded", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SwHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
        }
    }

    /// Parses Intel's spelling.
    pub fn from_intel(s: &str) -> Option<TcbStatus> {
        TcbStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TcbStatus {
    type Err = UnknownTcbStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TcbStatus::from_intel(s).ok_or_else(|| UnknownTcbStatus(s.to_owned()))
    }
}

/// A TCB status string that is not one of Intel's SGX statuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown TCB status {0:?}")]
pub struct UnknownTcbStatus(pub String);

impl serde::Serialize for TcbStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TcbStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The outcome of a successful verification.
///
/// Fields are public for reading; a `Verdict` can only be built by this crate (`#[non_exhaustive]`). Each field also
/// has a getter of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verdict {
    /// Merged platform + QE TCB status.
    pub status: TcbStatus,
    /// Advisory IDs: the platform TCB level's, then the QE level's not already listed.
    pub advisory_ids: Vec<String>,
    /// Platform TCB level status alone.
    pub platform_status: TcbStatus,
    /// QE identity TCB level status alone.
    pub qe_status: TcbStatus,
    /// MRENCLAVE of the attested enclave.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER of the attested enclave.
    pub mr_signer: [u8; 32],
    /// ISVPRODID of the attested enclave.
    pub isv_prod_id: u16,
    /// ISVSVN of the attested enclave.
    pub isv_svn: u16,
    /// ATTRIBUTES of the attested enclave: flags (u64 LE) ‖ XFRM (u64 LE), report byte order.
    pub attributes: [u8; 16],
    /// Whether the enclave is a debug enclave (ATTRIBUTES.DEBUG).
    pub debug: bool,
    /// REPORTDATA of the attested enclave.
    pub report_data: [u8; 64],
    /// FMSPC of the platform (from the PCK certificate).
    pub fmspc: [u8; 6],
    /// PCE-ID of the platform (from the PCK certificate).
    pub pce_id: [u8; 2],
    /// PPID of the platform (from the PCK certificate).
    pub ppid: [u8; 16],
    /// TCB evaluation data number of the TCB info used.
    pub tcb_evaluation_data_number: u32,
    /// Earliest expiry of every certificate, CRL and signed collateral used: the verdict may be cached until then.
    pub valid_until: UnixTime,
    /// Set only when the policy turns expiry into a flag ([`crate::Policy::allow_expired_collateral`]) and some
    /// certificate, CRL or collateral item was expired or not yet valid at the verification time.
    pub collateral_expired: bool,
}

macro_rules! getters {
    ($($name:ident: $ty:ty),* $(,)?) => {
        impl Verdict {
            $(
                #[doc = concat!("The `", stringify!($name), "` field.")]
                pub fn $name(&self) -> $ty {
                    self.$name.clone()
                }
            )*
        }
    };
}

getters! {
    status: TcbStatus,
    platform_status: TcbStatus,
    qe_status: TcbStatus,
    mr_enclave: [u8; 32],
    mr_signer: [u8; 32],
    isv_prod_id: u16,
    isv_svn: u16,
    attributes: [u8; 16],
    debug: bool,
    report_data: [u8; 64],
    fmspc: [u8; 6],
    pce_id: [u8; 2],
    ppid: [u8; 16],
    tcb_evaluation_data_number: u32,
    valid_until: UnixTime,
    collateral_expired: bool,
}

impl Verdict {
    /// The advisory IDs (union of the platform and QE levels').
    pub fn advisory_ids(&self) -> &[String] {
        &self.advisory_ids
    }
}

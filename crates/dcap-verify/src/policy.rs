//! Policy: what a cryptographically valid quote must additionally satisfy. Secure by default.

use crate::verdict::TcbStatus;

/// Verification policy. The default rejects debug enclaves, a `Revoked` TCB status, expired or not-yet-valid
/// collateral, and missing CRLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub(crate) allow_debug: bool,
    pub(crate) accepted: Vec<TcbStatus>,
    pub(crate) rejected_advisories: Vec<String>,
    pub(crate) allow_expired_collateral: bool,
    pub(crate) allow_missing_crls: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_debug: false,
            accepted: TcbStatus::ALL
                .into_iter()
                .filter(|s| *s != TcbStatus::Revoked)
                .collect(),
            rejected_advisories: Vec::new(),
            allow_expired_collateral: false,
            allow_missing_crls: false,
        }
    }
}

impl Policy {
    /// The secure default (same as `Policy::default()`).
    pub fn new() -> Policy {
        Policy::default()
    }

    /// Accept (or not) debug enclaves. Default: rejected.
    #[must_use]
    pub fn allow_debug(mut self, allow: bool) -> Policy {
        self.allow_debug = allow;
        self
    }

    /// Additionally accept `status` (e.g. `Revoked`, which is rejected by default).
    #[must_use]
    pub fn accept_status(mut self, status: TcbStatus) -> Policy {
        if !self.accepted.contains(&status) {
            self.accepted.push(status);
        }
        self
    }

    /// Stop accepting `status`.
    #[must_use]
    pub fn reject_status(mut self, status: TcbStatus) -> Policy {
        self.accepted.retain(|s| *s != status);
        self
    }

    /// Accept exactly these statuses.
    #[must_use]
    pub fn accept_only(mut self, statuses: &[TcbStatus]) -> Policy {
        self.accepted = statuses.to_vec();
        self
    }

    /// Accept every status, including `Revoked` (the caller inspects [`crate::Verdict::status`] itself).
    #[must_use]
    pub fn accept_any_status(self) -> Policy {
        self.accept_only(&TcbStatus::ALL)
    }

    /// Reject quotes whose advisories include `id` (e.g. "INTEL-SA-00615").
    #[must_use]
    pub fn reject_advisory(mut self, id: impl Into<String>) -> Policy {
        self.rejected_advisories.push(id.into());
        self
    }

    /// Turn expiry (expired or not yet valid certificates, CRLs, TCB info, QE identity) into a flag on the verdict
    /// (`collateral_expired`) instead of an error, as Intel's QvE reports `collateral_expiration_status`.
    #[must_use]
    pub fn allow_expired_collateral(mut self, allow: bool) -> Policy {
        self.allow_expired_collateral = allow;
        self
    }

    /// Accept collateral without a PCK CRL and/or Root CA CRL (empty fields). Default: both are required.
    #[must_use]
    pub fn allow_missing_crls(mut self, allow: bool) -> Policy {
        self.allow_missing_crls = allow;
        self
    }

    /// Whether `status` is accepted.
    pub fn accepts(&self, status: TcbStatus) -> bool {
        self.accepted.contains(&status)
    }
}

//! Pure DCAP quote verification: collateral model, PCK chain, TCB info and QE identity evaluation. No IO, no clock.
//!
//! [`Verifier::verify`] takes the raw quote, the [`Collateral`], the time and a [`Policy`], and returns a typed
//! [`Verdict`] or a [`VerifyError`] naming the step that failed. Trust anchors are pinned Intel SGX Root CA
//! *keys* ([`TrustAnchors::intel`]): both issued Root CA certificates share the key.
//!
//! What is verified once (issuer chains, CRLs, signed TCB info and QE identity, PCK chains) is cached inside the
//! [`Verifier`] until the item's own expiry. Each PCK chain also remembers the last QE report it was found to have
//! signed: every quote made with one attestation key carries the same report and signature (the PCE signed them
//! when it certified the key), and a byte-identical pair needs no second check. A steady stream of quotes from known
//! platforms thus costs little more than one ECDSA verification per quote (the quote's, by the attestation key).
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::as_conversions,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod anchors;
mod collateral;
mod crypto;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod helper;
mod policy;
mod tcb;
mod verdict;
mod verifier;
mod x509;

pub use anchors::{INTEL_SGX_ROOT_CA_KEY, TrustAnchors};
pub use collateral::{Collateral, PcsResponses, crl_der, signed_body, split_signed_body};
pub use error::{Item, VerifyError};
pub use policy::Policy;
pub use verdict::{TcbStatus, UnixTime, UnknownTcbStatus, Verdict};
pub use verifier::Verifier;

/// Result type of this crate.
pub type Result<T, E = VerifyError> = std::result::Result<T, E>;

// The contract: one `Verifier` is shared across threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    assert_send_sync::<Collateral>();
};

//! ECDSA P-256 / SHA-256 through aws-lc-rs, with an accept-all mode for fuzzing only.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, EcdsaVerificationAlgorithm, UnparsedPublicKey,
};

use crate::error::{Item, VerifyError};

/// The signature backend.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Crypto {
    /// Accept every signature (fuzzing builds only).
    #[cfg(feature = "dangerous-fuzzing")]
    pub(crate) accept_all: bool,
}

impl Crypto {
    /// `true` in accept-all mode, else the result of the real check `f`.
    pub(crate) fn accept_all_or(&self, f: impl FnOnce() -> bool) -> bool {
        self.accept_all() || f()
    }

    fn accept_all(&self) -> bool {
        #[cfg(feature = "dangerous-fuzzing")]
        {
            self.accept_all
        }
        #[cfg(not(feature = "dangerous-fuzzing"))]
        {
            false
        }
    }

    /// Verifies an X.509-style DER ECDSA signature by `key` (uncompressed point).
    pub(crate) fn verify_der_sig(
        &self,
        key: &[u8],
        msg: &[u8],
        sig: &[u8],
        item: Item,
    ) -> Result<(), VerifyError> {
        self.verify(&ECDSA_P256_SHA256_ASN1, key, msg, sig, item)
    }

    /// Verifies a raw r‖s ECDSA signature by `key` (uncompressed point).
    pub(crate) fn verify_raw_sig(
        &self,
        key: &[u8],
        msg: &[u8],
        sig: &[u8],
        item: Item,
    ) -> Result<(), VerifyError> {
        self.verify(&ECDSA_P256_SHA256_FIXED, key, msg, sig, item)
    }

    fn verify(
        &self,
        alg: &'static EcdsaVerificationAlgorithm,
        key: &[u8],
        msg: &[u8],
        sig: &[u8],
        item: Item,
    ) -> Result<(), VerifyError> {
        if self.accept_all() {
            return Ok(());
        }
        UnparsedPublicKey::new(alg, key)
            .verify(msg, sig)
            .map_err(|_| VerifyError::SignatureInvalid { item })
    }
}

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// An uncompressed point from a raw `x ‖ y` key.
pub(crate) fn uncompressed(xy: &[u8; 64]) -> [u8; 65] {
    let mut k = [0x04; 65];
    if let Some((_, rest)) = k.split_first_mut() {
        rest.copy_from_slice(xy);
    }
    k
}

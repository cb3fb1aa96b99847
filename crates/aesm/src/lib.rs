//! The AESM wire protocol, as spoken by Intel's `aesmd` on `/var/run/aesmd/aesm.socket`.
//!
//! * [`proto`]: prost code generated from the vendored `proto/aesm/messages.proto` (Intel's
//!   package `aesm.message`, proto2, same message names and field numbers), checked in under
//!   `src/gen/` and kept fresh by `tests/bootstrap.rs`.
//! * [`frame`]: the framing (a 4-byte little-endian length, then one protobuf message; one
//!   request per connection) with a hard bound on the length prefix.
//! * [`Request`] / [`Response`]: typed messages converted from and to the wire types at the
//!   boundary, so server code never handles prost structs.
//! * [`AesmError`]: the `aesm_error_t` codes as Intel defines them.
//! * [`server`]: async (tokio) helpers to read one request and write one response;
//!   [`client`]: a small blocking client (one connection per request, as aesmd wants).
//!
//! It is not a quoting implementation: backends live in the `quote-helper` crate.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::as_conversions,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod client;
mod error;
pub mod frame;
pub mod keyid;
mod message;
pub mod server;

pub use error::{AesmError, Error, Result};
pub use keyid::{AttKeyId, ECDSA_P256_QE3_KEY_ID};
pub use message::{
    QE_REPORT_INFO_SIZE, REPORT_SIZE, Request, RequestKind, Response, TARGET_INFO_SIZE,
};

/// Generated protobuf types (`aesm.message`), exactly as `prost-build` emits them.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!("gen/aesm.message.rs");
}

/// Entry points for `cargo fuzz` targets (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    /// Runs the server's decode path over one raw frame (length prefix included) and, when a
    /// request decodes, checks that re-encoding and decoding it again gives the same request.
    pub fn request(data: &[u8]) {
        if let Ok(payload) = crate::frame::split_frame(data, crate::frame::MAX_REQUEST_LEN)
            && let Ok(req) = crate::Request::decode(payload)
        {
            let again = crate::Request::decode(&req.encode());
            assert_eq!(again.ok(), Some(req), "request did not round-trip");
        }
    }
}

//! Attestation service (MAA-compatible tokens) and PCCS-compatible collateral cache.
//!
//! - [`pccs`]: the collateral service (`confcom pccs serve|import`), Intel PCS/PCCS routes
//!   over an embedded store, LAZY or OFFLINE.
//! - [`client`]: fetches the collateral of a quote from a PCCS/PCS URL (timeouts, retries,
//!   in-memory cache expired by the collateral's own dates) or from files.
//! - [`attest`]: the attestation server (`confcom attest serve`): MAA's
//!   `POST /attest/SgxEnclave`, JWKS, OpenID metadata, declarative policy.
//! - [`attest_client`]: the `confcom attest` client.
//! - [`runtime_state`]: the attestation server's run-time policy and signer changes, shared
//!   by its replicas through a directory or a ConfigMap.
//! - [`server`]: HTTP/HTTPS serving shared by both servers.

pub mod attest;
pub mod attest_cli;
pub mod attest_client;
pub mod client;
pub mod clock;
pub mod collateral;
#[doc(hidden)]
pub mod fuzzing;
pub mod maa_policy;
pub mod pccs;
pub mod pccs_cli;
pub mod policy;
pub mod policy_jws;
mod private_file;
pub mod runtime_state;
pub mod server;
pub mod store;
pub mod token;
pub mod verify;

pub use clock::Clock;
pub use collateral::{CaType, CollateralBundle, CollateralExt};

/// The MAA-style JSON error body: `{"error":{"code":…,"message":…}}`.
pub(crate) fn json_error(
    status: axum::http::StatusCode,
    code: &str,
    message: &str,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// An HTTP client with the process-wide rustls provider (aws-lc-rs) installed.
pub(crate) fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .build()
}

/// Installs aws-lc-rs as rustls' process default (no-op if one is already installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

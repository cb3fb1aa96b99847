//! Helpers shared by the attestation integration tests: the real quote and collateral of set
//! A, policy signer keys and certificates, a policy-management router with its requests, and
//! the checks of the run-time state store's refusals.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use attestation::Clock;
use attestation::attest::{self, AttestState};
use attestation::client::CollateralSource;
use attestation::collateral::CollateralBundle;
use attestation::policy_jws::PolicySigners;
use attestation::token::KeyRing;
use attestation::verify::DcapVerifier;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Set A (INDEX.md): a time inside the collateral's window.
pub const T_A: i64 = 1_751_624_924;

/// A path under the repository's `testdata/dcap`.
pub fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dcap")
        .join(rel)
}

/// The real quote of set A.
pub fn quote_a() -> Vec<u8> {
    std::fs::read(testdata("dcap-qvl/sample/sgx_quote")).unwrap()
}

/// The collateral of set A.
pub fn bundle_a() -> CollateralBundle {
    CollateralBundle::from_json(
        &std::fs::read(testdata("dcap-qvl/sample/sgx_quote_collateral.json")).unwrap(),
    )
    .unwrap()
}

/// Asserts a 503 `RuntimeStateUnavailable` refusal; returns its message.
pub fn unavailable_message(status: StatusCode, v: &Value) -> String {
    assert_eq!(
        (status, error_code(v)),
        (StatusCode::SERVICE_UNAVAILABLE, "RuntimeStateUnavailable"),
        "{v}"
    );
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// Asserts a 503 `RuntimeStateUnavailable` refusal whose message says `says`; returns the
/// message.
pub fn assert_unavailable(status: StatusCode, v: &Value, says: &str) -> String {
    let message = unavailable_message(status, v);
    assert!(message.contains(says), "{message}");
    message
}

/// Asserts the refusal of a change whose write may have been stored: 503, saying so and not
/// claiming that nothing changed.
pub fn assert_maybe_stored(status: StatusCode, v: &Value) {
    let message = assert_unavailable(status, v, "may or may not have been stored");
    assert!(!message.contains("nothing was changed"), "{message}");
}

/// The admin token of [`policy_app`].
pub const ADMIN: &str = "s3cret";
/// The issuer of [`policy_app`].
pub const ISSUER: &str = "https://attest.test";

/// The signer set holding `signers`' certificates.
pub fn signer_set(signers: &[&Signer]) -> PolicySigners {
    let mut set = PolicySigners::none();
    for s in signers {
        set.add_pem(s.cert_pem.as_bytes()).unwrap();
    }
    set
}

/// An attestation router for policy management: no collateral, `startup_policy`, admin token
/// [`ADMIN`], issuer [`ISSUER`], and `policy_signers`.
pub fn policy_app(startup_policy: &str, policy_signers: PolicySigners) -> axum::Router {
    attest::router(
        AttestState::new(
            Arc::new(DcapVerifier::new(dcap_verify::TrustAnchors::intel())),
            CollateralSource::from_bundles(Vec::new()),
            KeyRing::ephemeral().unwrap(),
            startup_policy,
            attest::Config {
                issuer: ISSUER.into(),
                admin_token: Some(ADMIN.into()),
                policy_signers,
                ..attest::Config::default()
            },
            Clock::system(),
        )
        .unwrap(),
    )
}

/// Sends `req`; the status and the JSON body (`null` if not JSON).
pub async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let r = app.clone().oneshot(req).await.unwrap();
    let s = r.status();
    let b = r.into_body().collect().await.unwrap().to_bytes();
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// `GET uri` with the admin token.
pub async fn admin_get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    call(
        app,
        Request::get(uri)
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// `GET /metrics`: the text.
pub async fn metrics(app: &axum::Router) -> String {
    let r = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// `PUT /policies/SgxEnclave` with the admin token.
pub async fn put_policy(app: &axum::Router, body: &str) -> (StatusCode, Value) {
    call(
        app,
        Request::put("/policies/SgxEnclave?api-version=2022-08-01")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await
}

/// Verifies a `{"token": …}` response with the server's `/certs` (ES256, issuer [`ISSUER`],
/// expiry); its header and claims.
pub async fn verified_token(app: &axum::Router, response: &Value) -> (jsonwebtoken::Header, Value) {
    let token = response["token"].as_str().expect("a token response");
    let (s, jwks) = call(app, Request::get("/certs").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "nbf"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    (header, claims)
}

/// The claims of a `{"token": …}` response, read, not verified.
pub fn token_claims(response: &Value) -> Value {
    let token = response["token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The `error.code` of a JSON error body.
pub fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// `{"AttestationPolicy": "<base64url of the policy text>"}`: MAA's policy JWS payload.
pub fn policy_payload(text: &str) -> Value {
    json!({ "AttestationPolicy": URL_SAFE_NO_PAD.encode(text) })
}

/// An unsigned (`alg: none`) policy JWS: MAA's unsecured form.
pub fn unsigned_policy(text: &str) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(policy_payload(text).to_string())
    )
}

/// MAA's unsigned reset body: a JWS with an empty payload.
pub fn unsigned_reset() -> String {
    format!("{}..", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#))
}

/// `{"policyCertificate": {"kty": "RSA", "x5c": [der]}}`: the payload of a
/// `POST /certificates:add|remove` body, as Azure's SDKs build it (they write `kty: RSA`
/// whatever the key).
pub fn cert_payload(der: &[u8]) -> Value {
    json!({ "policyCertificate": { "kty": "RSA", "x5c": [STANDARD.encode(der)] } })
}

/// A policy signing key and its self-signed certificate (rcgen), signing with `jsonwebtoken`.
pub struct Signer {
    pub alg: Algorithm,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
}

impl Signer {
    /// A new key (RSA 2048 for RS256, else P-256) and certificate.
    pub fn generate(alg: Algorithm) -> Self {
        let key = match alg {
            Algorithm::RS256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
            _ => rcgen::KeyPair::generate().unwrap(),
        };
        let cert = rcgen::CertificateParams::new(vec!["policy-signer".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Self {
            alg,
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
        }
    }

    /// A compact JWS of `payload` signed with this key, presenting `x5c_der` (normally this
    /// signer's own certificate).
    pub fn sign_with_x5c(&self, payload: &Value, x5c_der: &[u8]) -> String {
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.typ = None;
        header.x5c = Some(vec![STANDARD.encode(x5c_der)]);
        let key = match self.alg {
            Algorithm::RS256 => {
                jsonwebtoken::EncodingKey::from_rsa_pem(self.key_pem.as_bytes()).unwrap()
            }
            _ => jsonwebtoken::EncodingKey::from_ec_pem(self.key_pem.as_bytes()).unwrap(),
        };
        jsonwebtoken::encode(&header, payload, &key).unwrap()
    }

    /// A compact JWS of `payload`, presenting this signer's certificate.
    pub fn sign(&self, payload: &Value) -> String {
        self.sign_with_x5c(payload, &self.cert_der)
    }

    /// A signed policy `PUT` body.
    pub fn policy(&self, text: &str) -> String {
        self.sign(&policy_payload(text))
    }

    /// This signer's `POST /certificates:add|remove` body about `cert`.
    pub fn about(&self, cert: &Signer) -> String {
        self.about_der(&cert.cert_der)
    }

    /// This signer's `POST /certificates:add|remove` body about the certificate `der`.
    pub fn about_der(&self, der: &[u8]) -> String {
        self.sign(&cert_payload(der))
    }
}

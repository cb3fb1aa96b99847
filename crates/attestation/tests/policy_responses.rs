//! MAA's response shapes of the policy API (`PUT|GET /policies/SgxEnclave`,
//! `POST /policies/SgxEnclave:reset`): a `token` (ES256, verified against `/certs`) whose
//! claims are MAA's `PolicyResult`, next to confcom's own fields.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

mod common;
use common::{
    ADMIN, Signer, admin_get, call, error_code, policy_app, put_policy, signer_set,
    unsigned_policy, unsigned_reset, verified_token,
};

/// The `--policy` text every app starts with.
const STARTUP: &str = "min_svn: 1\n";

fn app(signers: &[&Signer]) -> axum::Router {
    policy_app(STARTUP, signer_set(signers))
}

async fn get_policy(app: &axum::Router) -> (StatusCode, Value) {
    admin_get(app, "/policies/SgxEnclave?api-version=2022-08-01").await
}

async fn reset(app: &axum::Router, token: &str, body: &str) -> (StatusCode, Value) {
    call(
        app,
        Request::post("/policies/SgxEnclave:reset?api-version=2022-08-01")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "text/plain")
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await
}

/// Verifies a `{"token": …}` response with the server's `/certs` (ES256, issuer, expiry) and
/// returns its claims.
async fn claims(app: &axum::Router, response: &Value) -> Value {
    let (_, c) = verified_token(app, response).await;
    assert!(c["iat"].is_i64(), "{c}");
    c
}

/// BASE64URL(SHA256(s)).
fn sha256_b64url(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        s.as_bytes(),
    ))
}

/// The policy text in an `x-ms-policy` JWS (a `StoredAttestationPolicy` payload).
fn stored_policy_text(jws: &str) -> String {
    let payload = jws.split('.').nth(1).unwrap();
    let stored: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let text = stored["AttestationPolicy"].as_str().unwrap();
    String::from_utf8(URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
}

#[tokio::test]
async fn put_unsigned_jws_as_json_string_hashes_the_jws() {
    let app = app(&[]);
    let jws = unsigned_policy("min_svn: 2");
    // As a JSON string with a trailing newline: the hash covers the JWS only.
    let (s, v) = put_policy(&app, &format!("\"{jws}\"\n")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = claims(&app, &v).await;
    assert_eq!(c["x-ms-policy-result"], "Updated");
    assert_eq!(c["x-ms-policy-token-hash"], sha256_b64url(&jws));
    assert!(c.get("x-ms-policy-signer").is_none(), "{c}");
    // The existing fields stay, the token hash fixed alike.
    assert_eq!(v["x-ms-policy-token-hash"], sha256_b64url(&jws));
    assert_eq!(v["x-ms-policy-result"], "Updated");
    assert_eq!(v["x-confcom-policy-form"], "unsigned-jws");
    assert!(v["x-ms-policy-hash"].is_string());
}

#[tokio::test]
async fn put_signed_jws_names_the_signer() {
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        let signer = Signer::generate(alg);
        let app = app(&[&signer]);
        let jws = signer.policy("min_svn: 3");
        let (s, v) = put_policy(&app, &jws).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let c = claims(&app, &v).await;
        assert_eq!(c["x-ms-policy-result"], "Updated");
        assert_eq!(c["x-ms-policy-token-hash"], sha256_b64url(&jws));
        let jwk = &c["x-ms-policy-signer"];
        assert_eq!(jwk["x5c"][0], STANDARD.encode(&signer.cert_der), "{jwk}");
        assert_eq!(
            jwk["kty"],
            if alg == Algorithm::RS256 { "RSA" } else { "EC" }
        );
        assert_eq!(v["x-confcom-policy-form"], "signed-jws");
    }
}

#[tokio::test]
async fn put_plain_hashes_the_text() {
    let app = app(&[]);
    let text = "min_svn: 4\n";
    let (s, v) = put_policy(&app, text).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = claims(&app, &v).await;
    assert_eq!(c["x-ms-policy-result"], "Updated");
    assert_eq!(c["x-ms-policy-token-hash"], sha256_b64url(text));
    assert_eq!(v["x-ms-policy-token-hash"], sha256_b64url(text));
    assert!(c.get("x-ms-policy-signer").is_none(), "{c}");
}

#[tokio::test]
async fn get_carries_the_stored_policy() {
    let app = app(&[]);
    let (s, v) = get_policy(&app).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = claims(&app, &v).await;
    assert_eq!(
        stored_policy_text(c["x-ms-policy"].as_str().unwrap()),
        STARTUP
    );
    assert_eq!(v["policy"], STARTUP);

    let (s, _) = put_policy(&app, "min_svn: 5\n").await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = get_policy(&app).await;
    let c = claims(&app, &v).await;
    assert_eq!(
        stored_policy_text(c["x-ms-policy"].as_str().unwrap()),
        "min_svn: 5\n"
    );
    assert!(c.get("x-ms-policy-signer").is_none(), "{c}");
}

#[tokio::test]
async fn get_after_signed_put_shows_the_jws_and_signer() {
    let signer = Signer::generate(Algorithm::ES256);
    let app = app(&[&signer]);
    let jws = signer.policy("min_svn: 6");
    let (s, v) = put_policy(&app, &jws).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = get_policy(&app).await;
    let c = claims(&app, &v).await;
    assert_eq!(c["x-ms-policy"], jws.as_str());
    assert_eq!(stored_policy_text(&jws), "min_svn: 6");
    assert_eq!(
        c["x-ms-policy-signer"]["x5c"][0],
        STANDARD.encode(&signer.cert_der)
    );
}

#[tokio::test]
async fn reset_restores_the_startup_policy() {
    let app = app(&[]);
    let (s, _) = put_policy(&app, "min_svn: 7\n").await;
    assert_eq!(s, StatusCode::OK);
    let startup_hash = {
        let (_, v) = put_policy(&app, STARTUP).await;
        v["x-ms-policy-hash"].clone()
    };
    let (s, _) = put_policy(&app, "min_svn: 7\n").await;
    assert_eq!(s, StatusCode::OK);

    // Without (or with a wrong) admin token: refused, the policy unchanged.
    let (s, v) = reset(&app, "wrong", &unsigned_reset()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(get_policy(&app).await.1["policy"], "min_svn: 7\n");

    // A reset body carrying a policy document: refused.
    let with_policy = unsigned_policy("min_svn: 8");
    let (s, v) = reset(&app, ADMIN, &with_policy).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(error_code(&v), "MalformedPolicyJws");

    // As a JSON string, as Azure's SDKs send it.
    let body = unsigned_reset();
    let (s, v) = reset(&app, ADMIN, &format!("\"{body}\"")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = claims(&app, &v).await;
    assert_eq!(c["x-ms-policy-result"], "Removed");
    assert!(c.get("x-ms-policy-token-hash").is_none(), "{c}");
    assert!(c.get("x-ms-policy-signer").is_none(), "{c}");
    assert_eq!(v["x-ms-policy-result"], "Removed");
    // Like the token, the fields carry no token hash for a reset.
    assert!(v.get("x-ms-policy-token-hash").is_none(), "{v}");
    assert_eq!(v["x-ms-policy-hash"], startup_hash);

    let (_, v) = get_policy(&app).await;
    assert_eq!(v["policy"], STARTUP);
    assert_eq!(v["x-ms-policy-hash"], startup_hash);
    let c = claims(&app, &v).await;
    assert_eq!(
        stored_policy_text(c["x-ms-policy"].as_str().unwrap()),
        STARTUP
    );
}

#[tokio::test]
async fn isolated_reset_needs_a_current_signer() {
    let signer = Signer::generate(Algorithm::ES256);
    let stranger = Signer::generate(Algorithm::ES256);
    let app = app(&[&signer]);
    let (s, _) = put_policy(&app, &signer.policy("min_svn: 9")).await;
    assert_eq!(s, StatusCode::OK);

    let (s, v) = reset(&app, ADMIN, &unsigned_reset()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(error_code(&v), "PolicySignatureRequired");
    let (s, v) = reset(&app, ADMIN, &stranger.sign(&Value::Null)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(error_code(&v), "PolicySignerNotTrusted");
    // A current signer's body, but without the admin token.
    let body = signer.sign(&json!({}));
    let (s, _) = reset(&app, "wrong", &body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(get_policy(&app).await.1["policy"], "min_svn: 9");

    let (s, v) = reset(&app, ADMIN, &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = claims(&app, &v).await;
    assert_eq!(c["x-ms-policy-result"], "Removed");
    assert_eq!(
        c["x-ms-policy-signer"]["x5c"][0],
        STANDARD.encode(&signer.cert_der)
    );
    let (_, v) = get_policy(&app).await;
    assert_eq!(v["policy"], STARTUP);
    assert_eq!(v["x-confcom-policy-form"], "plain");
}

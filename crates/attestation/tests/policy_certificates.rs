//! MAA's policy management certificates API (`GET /certificates`, `POST /certificates:add`,
//! `POST /certificates:remove`) against the attestation router: requests are JWSs signed by a
//! current policy signer (rcgen certificates, `jsonwebtoken` signatures), responses are tokens
//! verified with `jsonwebtoken` against `/certs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use attestation::policy_jws::PolicySigners;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

mod common;
use common::{
    ADMIN, Signer, call, cert_payload, error_code, policy_app, policy_payload, put_policy,
    signer_set, verified_token,
};

impl Signer {
    /// The SHA-1 thumbprint of this signer's certificate (upper-case hex).
    fn sha1(&self) -> String {
        hex::encode_upper(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &self.cert_der,
        ))
    }
}

fn app(signers: &[&Signer]) -> axum::Router {
    policy_app("", signer_set(signers))
}

async fn post(app: &axum::Router, path: &str, token: &str, body: &str) -> (StatusCode, Value) {
    call(
        app,
        Request::post(format!("{path}?api-version=2022-08-01"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await
}

async fn add(app: &axum::Router, body: &str) -> (StatusCode, Value) {
    post(app, "/certificates:add", ADMIN, body).await
}

async fn remove(app: &axum::Router, body: &str) -> (StatusCode, Value) {
    post(app, "/certificates:remove", ADMIN, body).await
}

async fn get_certificates(app: &axum::Router, token: &str) -> (StatusCode, Value) {
    call(
        app,
        Request::get("/certificates?api-version=2022-08-01")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// Verifies a `{"token": …}` response with the server's `/certs` (ES256, issuer, expiry,
/// `jku`) and returns its claims.
async fn claims(app: &axum::Router, response: &Value) -> Value {
    let (header, claims) = verified_token(app, response).await;
    assert_eq!(header.jku.as_deref(), Some("https://attest.test/certs"));
    claims
}

/// The certificates (DER) of a verified `GET /certificates` response.
async fn listed(app: &axum::Router) -> Vec<Vec<u8>> {
    let (s, v) = get_certificates(app, ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = claims(app, &v).await;
    c["x-ms-policy-certificates"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| STANDARD.decode(k["x5c"][0].as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn get_lists_the_configured_signers_in_a_verifiable_token() {
    let es = Signer::generate(Algorithm::ES256);
    let rs = Signer::generate(Algorithm::RS256);
    let app = app(&[&es, &rs]);

    let (s, v) = get_certificates(&app, ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = claims(&app, &v).await;
    let keys = c["x-ms-policy-certificates"]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{c}");
    assert_eq!(
        (&keys[0]["kty"], &keys[0]["x5c"]),
        (&json!("EC"), &json!([STANDARD.encode(&es.cert_der)]))
    );
    assert_eq!(
        (&keys[1]["kty"], &keys[1]["x5c"]),
        (&json!("RSA"), &json!([STANDARD.encode(&rs.cert_der)]))
    );

    // The admin token is checked, as for GET /policies.
    let (s, v) = get_certificates(&app, "nope").await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "Unauthorized")
    );
}

#[tokio::test]
async fn a_current_signer_adds_a_certificate_that_can_then_sign_policies() {
    let es = Signer::generate(Algorithm::ES256);
    let newcomer = Signer::generate(Algorithm::RS256);
    let app = app(&[&es]);

    let (s, v) = put_policy(&app, &newcomer.policy("allow_debug: false")).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicySignerNotTrusted")
    );

    // As Azure's SDKs send it: the JWS as a JSON string.
    let (s, v) = add(&app, &format!("\"{}\"", es.about(&newcomer))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = claims(&app, &v).await;
    assert_eq!(c["x-ms-certificate-thumbprint"], newcomer.sha1().as_str());
    assert_eq!(c["x-ms-policycertificates-result"], "IsPresent");
    assert_eq!(
        listed(&app).await,
        vec![es.cert_der.clone(), newcomer.cert_der.clone()]
    );

    let (s, v) = put_policy(&app, &newcomer.policy("allow_debug: false")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["x-confcom-policy-form"], "signed-jws");

    // The new signer manages signers too; adding a present certificate changes nothing.
    let (s, v) = add(&app, &newcomer.about(&es)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        claims(&app, &v).await["x-ms-policycertificates-result"],
        "IsPresent"
    );
    assert_eq!(listed(&app).await.len(), 2);

    // The payload name of Azure's REST examples is accepted too.
    let third = Signer::generate(Algorithm::ES256);
    let legacy = json!({ "aas-policyCertificate": { "kty": "EC", "x5c": [STANDARD.encode(&third.cert_der)] } });
    let (s, v) = add(&app, &es.sign(&legacy)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        claims(&app, &v).await["x-ms-certificate-thumbprint"],
        third.sha1().as_str()
    );
    assert_eq!(listed(&app).await.len(), 3);
}

#[tokio::test]
async fn changes_signed_by_an_unknown_certificate_are_refused() {
    let es = Signer::generate(Algorithm::ES256);
    let stranger = Signer::generate(Algorithm::ES256);
    let app = app(&[&es]);

    for (path, body) in [
        ("/certificates:add", stranger.about(&stranger)),
        ("/certificates:remove", stranger.about(&es)),
    ] {
        let (s, v) = post(&app, path, ADMIN, &body).await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::UNAUTHORIZED, "PolicySignerNotTrusted"),
            "{path}: {v}"
        );
    }
    assert_eq!(listed(&app).await, vec![es.cert_der.clone()]);
}

#[tokio::test]
async fn a_removed_signer_can_no_longer_set_policies_or_manage_signers() {
    let a = Signer::generate(Algorithm::ES256);
    let b = Signer::generate(Algorithm::RS256);
    let app = app(&[&a, &b]);
    let (s, v) = put_policy(&app, &b.policy("allow_debug: false")).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let (s, v) = remove(&app, &a.about(&b)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = claims(&app, &v).await;
    assert_eq!(c["x-ms-certificate-thumbprint"], b.sha1().as_str());
    assert_eq!(c["x-ms-policycertificates-result"], "IsAbsent");
    assert_eq!(listed(&app).await, vec![a.cert_der.clone()]);

    let (s, v) = put_policy(&app, &b.policy("allow_debug: false")).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicySignerNotTrusted"),
        "{v}"
    );
    let (s, v) = add(&app, &b.about(&b)).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicySignerNotTrusted"),
        "{v}"
    );
    // Removing an absent certificate changes nothing.
    let (s, v) = remove(&app, &a.about(&b)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        claims(&app, &v).await["x-ms-policycertificates-result"],
        "IsAbsent"
    );
    // The remaining signer still sets policies.
    let (s, v) = put_policy(&app, &a.policy("allow_debug: false")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn the_last_certificate_cannot_be_removed() {
    let a = Signer::generate(Algorithm::ES256);
    let app = app(&[&a]);
    let (s, v) = remove(&app, &a.about(&a)).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "LastPolicySignerCertificate"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last policy signer certificate cannot be removed"),
        "{v}"
    );
    assert_eq!(listed(&app).await, vec![a.cert_der.clone()]);
    let (s, v) = put_policy(&app, &a.policy("allow_debug: false")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn tampered_and_unsigned_requests_are_refused() {
    let es = Signer::generate(Algorithm::ES256);
    let rs = Signer::generate(Algorithm::RS256);
    let other = Signer::generate(Algorithm::ES256);
    let app = app(&[&es, &rs]);

    // es's signature over a payload that named another certificate.
    let signed = es.about(&other);
    let mut parts: Vec<&str> = signed.split('.').collect();
    let swapped = URL_SAFE_NO_PAD.encode(cert_payload(&rs.cert_der).to_string());
    parts[1] = &swapped;
    let tampered = parts.join(".");
    // Signed by an unknown key while presenting es's certificate.
    let forged = other.sign_with_x5c(&cert_payload(&other.cert_der), &es.cert_der);
    for body in [tampered, forged] {
        for path in ["/certificates:add", "/certificates:remove"] {
            let (s, v) = post(&app, path, ADMIN, &body).await;
            assert_eq!(
                (s, error_code(&v)),
                (StatusCode::UNAUTHORIZED, "InvalidPolicySignature"),
                "{path}: {v}"
            );
        }
    }

    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
    let p = URL_SAFE_NO_PAD.encode(cert_payload(&other.cert_der).to_string());
    let (s, v) = add(&app, &format!("{h}.{p}.")).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicySignatureRequired"),
        "{v}"
    );
    assert_eq!(listed(&app).await.len(), 2);
}

#[tokio::test]
async fn malformed_requests_are_400_and_the_admin_token_comes_first() {
    let es = Signer::generate(Algorithm::ES256);
    let app = app(&[&es]);
    let not_a_cert =
        json!({ "policyCertificate": { "kty": "RSA", "x5c": [STANDARD.encode(b"nope")] } });
    let malformed = [
        "{}".to_owned(),
        "not a jws".to_owned(),
        es.sign(&json!({ "AttestationPolicy": "" })),
        es.sign(&json!({ "policyCertificate": { "kty": "RSA" } })),
        es.sign(&not_a_cert),
        format!(
            "{}.{}.AAAA",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(cert_payload(&es.cert_der).to_string())
        ),
    ];
    for body in &malformed {
        let (s, v) = add(&app, body).await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::BAD_REQUEST, "MalformedPolicyJws"),
            "{body}: {v}"
        );
    }
    let hs = format!(
        "{}.{}.AAAA",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
        URL_SAFE_NO_PAD.encode(cert_payload(&es.cert_der).to_string())
    );
    let (s, v) = remove(&app, &hs).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "UnsupportedPolicyAlgorithm"),
        "{v}"
    );

    // A valid request without the admin token is refused before the JWS is looked at.
    let other = Signer::generate(Algorithm::ES256);
    let (s, v) = post(&app, "/certificates:add", "nope", &es.about(&other)).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "Unauthorized")
    );
    assert_eq!(listed(&app).await, vec![es.cert_der.clone()]);
}

#[tokio::test]
async fn without_start_up_signers_changes_are_refused_and_the_list_is_empty() {
    let es = Signer::generate(Algorithm::ES256);
    let app = app(&[]);
    for path in ["/certificates:add", "/certificates:remove"] {
        let (s, v) = post(&app, path, ADMIN, &es.about(&es)).await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::BAD_REQUEST, "NotIsolatedMode"),
            "{path}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("only in isolated mode"),
            "{v}"
        );
    }
    assert!(listed(&app).await.is_empty());
    // Policies stay unrestricted.
    let (s, v) = put_policy(&app, "allow_debug: false").await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// A compact JWS written by hand, as Azure's .NET and Python SDKs write them: `alg` `ECDH256`
/// (ECDSA P-256 with SHA-256) and the certificate in the header's `jwk.x5c`.
fn sdk_style_jws(signer_key: &rcgen::KeyPair, signer_der: &[u8], payload: &Value) -> String {
    let header = json!({ "alg": "ECDH256", "jwk": { "x5c": [STANDARD.encode(signer_der)] } });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &signer_key.serialize_der(),
    )
    .unwrap();
    let sig = key
        .sign(
            &aws_lc_rs::rand::SystemRandom::new(),
            signing_input.as_bytes(),
        )
        .unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

#[tokio::test]
async fn azure_sdk_header_forms_are_accepted() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["sdk-signer".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut policy_signers = PolicySigners::none();
    policy_signers.add_pem(cert.pem().as_bytes()).unwrap();
    let other = Signer::generate(Algorithm::ES256);
    let app = policy_app("", policy_signers);
    // A policy and a signer change, each as a JSON string (how the SDKs send the body).
    let policy = policy_payload("min_svn: 1");
    let body = Value::String(sdk_style_jws(&key, cert.der(), &policy)).to_string();
    let (s, v) = put_policy(&app, &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["x-confcom-policy-form"], "signed-jws");
    let body = Value::String(sdk_style_jws(
        &key,
        cert.der(),
        &cert_payload(&other.cert_der),
    ))
    .to_string();
    let (s, v) = add(&app, &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(listed(&app).await.contains(&other.cert_der));
    // A tampered one still fails.
    let mut jws = sdk_style_jws(&key, cert.der(), &policy);
    jws.replace_range(jws.len() - 4.., "AAAA");
    let (s, v) = put_policy(&app, &jws).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
}

#[tokio::test]
async fn signer_certificates_whose_keys_cannot_sign_are_refused() {
    let s = Signer::generate(Algorithm::ES256);
    let app = app(&[&s]);
    for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["useless".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        // Not at start-up…
        let mut signers = PolicySigners::none();
        let err = signers.add_pem(cert.pem().as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("cannot sign") || err.to_string().contains("P-256"),
            "{err}"
        );
        // …nor at run time.
        let (st, v) = add(&app, &s.about_der(cert.der())).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert!(!listed(&app).await.contains(&cert.der().to_vec()));
    }
    // RSA 2048 and P-256 can sign.
    let mut signers = PolicySigners::none();
    signers
        .add_pem(Signer::generate(Algorithm::RS256).cert_pem.as_bytes())
        .unwrap();
    signers.add_pem(s.cert_pem.as_bytes()).unwrap();
    assert_eq!(signers.len(), 2);
}

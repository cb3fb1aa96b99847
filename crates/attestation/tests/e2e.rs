//! End-to-end tests on loopback: our PCCS (offline import of real Intel collateral, or lazy
//! from an upstream we can stop) → the attestation server with `--pccs-url` → real quotes →
//! tokens verified with `jsonwebtoken` against `/certs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use attestation::Clock;
use attestation::attest::{self, AttestState};
use attestation::attest_client::{AttestRequest, Client};
use attestation::client::{CollateralClient, CollateralSource, RetryPolicy};
use attestation::collateral::{CaType, CollateralBundle, CollateralExt, decode_chain_header};
use attestation::pccs::{self, Mode, PccsState};
use attestation::store::Store;
use attestation::token::KeyRing;
use attestation::verify::{DcapVerifier, QuoteVerifier};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt;

mod common;
use common::{
    Signer, T_A, bundle_a, error_code, policy_payload, quote_a, signer_set, testdata, token_claims,
    unsigned_policy,
};

/// A server on loopback that stops when the returned sender is dropped or fired.
struct Running {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn start_pccs(state: PccsState) -> Running {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        pccs::serve_on(l, state, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running {
        url,
        stop: Some(tx),
        task,
    }
}

async fn start_attest(state: AttestState) -> Running {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        attest::serve_on(l, state, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running {
        url,
        stop: Some(tx),
        task,
    }
}

fn offline_pccs(dir: &std::path::Path, now: i64) -> PccsState {
    let store = Store::open(dir).unwrap();
    let keys = pccs::import_paths(
        &store,
        &[testdata("dcap-qvl/sample/sgx_quote_collateral.json")],
        now,
    )
    .unwrap();
    assert_eq!(keys.len(), 4, "{keys:?}");
    PccsState::new(
        store,
        pccs::Config {
            mode: Mode::Offline,
            ..pccs::Config::default()
        },
        Clock::fixed(now),
    )
    .unwrap()
}

fn attest_state(source: CollateralSource, policy: &str, now: i64, issuer: &str) -> AttestState {
    AttestState::new(
        Arc::new(DcapVerifier::new(dcap_verify::TrustAnchors::intel())),
        source,
        KeyRing::ephemeral().unwrap(),
        policy,
        attest::Config {
            issuer: issuer.to_owned(),
            admin_token: Some("s3cret".into()),
            ..attest::Config::default()
        },
        Clock::fixed(now),
    )
    .unwrap()
}

fn http_source(pccs_url: &str, now: i64) -> CollateralSource {
    CollateralSource::Http(
        CollateralClient::new(
            &format!("{pccs_url}/sgx/certification/v4/"),
            RetryPolicy {
                timeout: Duration::from_secs(2),
                attempts: 2,
                backoff: Duration::from_millis(10),
            },
            Clock::fixed(now),
        )
        .unwrap(),
    )
}

/// The verdict of the verifier itself, for comparison with the token.
fn direct_verdict(
    quote: &[u8],
    b: &CollateralBundle,
    now: i64,
) -> attestation::verify::VerifiedQuote {
    DcapVerifier::new(dcap_verify::TrustAnchors::intel())
        .verify(
            quote,
            &attestation::collateral::PreparedCollateral::new(b.clone()),
            now,
        )
        .unwrap()
}

#[tokio::test]
async fn real_quote_end_to_end_through_offline_pccs() {
    let dir = tempfile::tempdir().unwrap();
    let pccs = start_pccs(offline_pccs(dir.path(), T_A)).await;

    let quote = quote_a();
    let expected = direct_verdict(&quote, &bundle_a(), T_A);
    assert_eq!(expected.tcb_status, "ConfigurationAndSWHardeningNeeded");
    assert_eq!(expected.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);

    // The test quote's debug bit decides the policy: the test chooses.
    let policy = format!(
        "allow_debug: {}\naccepted_tcb_statuses: [ConfigurationAndSWHardeningNeeded]",
        expected.debug
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let state = attest_state(http_source(&pccs.url, T_A), &policy, T_A, &issuer);
    let srv = start_attest(state).await;

    let client = Client::new(&srv.url, None).unwrap();
    let token = client
        .attest(&AttestRequest {
            quote: quote.clone(),
            nonce: Some("n-123".into()),
            ..AttestRequest::default()
        })
        .await
        .unwrap();

    // Verify with jsonwebtoken directly against /certs.
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{}/certs", srv.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(
        header.jku.as_deref(),
        Some(format!("{issuer}/certs").as_str())
    );
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.validate_exp = false; // the server's clock is fixed in 2025
    validation.set_issuer(&[&issuer]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .unwrap()
        .claims;

    assert_eq!(claims["x-ms-attestation-type"], "sgx");
    assert_eq!(claims["x-ms-ver"], "1.0");
    assert_eq!(claims["x-ms-sgx-is-debuggable"], expected.debug);
    assert_eq!(
        claims["x-ms-sgx-mrenclave"],
        hex::encode(expected.mr_enclave)
    );
    assert_eq!(claims["x-ms-sgx-mrsigner"], hex::encode(expected.mr_signer));
    assert_eq!(claims["x-ms-sgx-product-id"], expected.isv_prod_id);
    assert_eq!(claims["x-ms-sgx-svn"], expected.isv_svn);
    assert_eq!(
        claims["x-ms-sgx-report-data"],
        hex::encode(expected.report_data)
    );
    assert_eq!(
        claims[attest::CLAIM_TCB_STATUS],
        "ConfigurationAndSWHardeningNeeded"
    );
    assert_eq!(
        claims[attest::CLAIM_ADVISORY_IDS],
        json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(
        claims[attest::CLAIM_EAR_STATUS],
        if expected.debug {
            "contraindicated"
        } else {
            "warning"
        }
    );
    assert_eq!(claims["x-confcom-fmspc"], "00A067110000");
    assert_eq!(claims["iat"], T_A);
    assert_eq!(claims["nbf"], T_A);
    assert_eq!(claims["exp"], T_A + 8 * 3600);
    assert_eq!(claims["nonce"], "n-123");
    assert_eq!(claims["jti"].as_str().unwrap().len(), 64);
    let quotehash = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &quote,
    ));
    assert_eq!(claims["x-ms-sgx-collateral"]["quotehash"], quotehash);

    // The client's own verification agrees, and a wrong time is rejected.
    let via_client = client
        .verify(&token, T_A + 60, Some(&issuer))
        .await
        .unwrap();
    assert_eq!(via_client, claims);
    assert!(client.verify(&token, T_A + 9 * 3600, None).await.is_err());

    // The second request is served from the collateral cache.
    client
        .attest(&AttestRequest {
            quote,
            ..AttestRequest::default()
        })
        .await
        .unwrap();
    let metrics = reqwest::get(format!("{}/metrics", srv.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("confcom_attest_collateral_cache_total{outcome=\"hit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("confcom_attest_attest_requests_total{result=\"ok\"} 2"),
        "{metrics}"
    );

    srv.stop().await;
    pccs.stop().await;
}

#[tokio::test]
async fn qcnl_style_requests_get_the_imported_bodies_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let pccs = start_pccs(offline_pccs(dir.path(), T_A)).await;
    let b = bundle_a();
    // QCNL: pccs_url = "<host>/sgx/certification/v4/", then "<resource>?<query>".
    let base = format!("{}/sgx/certification/v4/", pccs.url);
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { reqwest::get(url).await.unwrap() }
    };
    let chain = |r: &reqwest::Response, h: &str| {
        decode_chain_header(r.headers()[h].to_str().unwrap()).unwrap()
    };

    let r = get("tcb?fmspc=00a067110000").await;
    assert_eq!(r.status(), 200);
    assert_eq!(chain(&r, "TCB-Info-Issuer-Chain"), b.tcb_info_issuer_chain);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), b.tcb_info_body());

    let r = get("qe/identity").await;
    assert_eq!(
        chain(&r, "SGX-Enclave-Identity-Issuer-Chain"),
        b.qe_identity_issuer_chain
    );
    assert_eq!(r.text().await.unwrap(), b.qe_identity_body());

    let r = get("pckcrl?ca=processor&encoding=der").await;
    assert_eq!(
        chain(&r, "SGX-PCK-CRL-Issuer-Chain"),
        b.pck_crl_issuer_chain
    );
    assert_eq!(r.headers()["content-type"], "application/pkix-crl");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b.pck_crl.as_slice());

    let r = get("pckcrl?ca=processor&encoding=pem").await;
    let pem_body = r.text().await.unwrap();
    assert_eq!(
        pem::parse(&pem_body).unwrap().contents(),
        b.pck_crl.as_slice()
    );

    let r = get("rootcacrl").await;
    assert_eq!(r.text().await.unwrap(), hex::encode(&b.root_ca_crl));

    let r =
        get("crl?uri=https%3A%2F%2Fcertificates.trustedservices.intel.com%2FIntelSGXRootCA.der")
            .await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b.root_ca_crl.as_slice());

    // API v3 names the TCB info chain header differently.
    let r = reqwest::get(format!(
        "{}/sgx/certification/v3/tcb?fmspc=00A067110000",
        pccs.url
    ))
    .await
    .unwrap();
    assert_eq!(
        chain(&r, "SGX-TCB-Info-Issuer-Chain"),
        b.tcb_info_issuer_chain
    );

    // Misses and bad requests.
    assert_eq!(get("pckcrl?ca=platform").await.status(), 404);
    assert_eq!(get("tcb?fmspc=00606A000000").await.status(), 404);
    assert_eq!(get("pckcrl?ca=nope").await.status(), 400);
    assert_eq!(get("tcb?fmspc=zz").await.status(), 400);
    assert_eq!(
        get("pckcert?cpusvn=00&pcesvn=0a00&pceid=0000&encrypted_ppid=00")
            .await
            .status(),
        404
    );

    // The collateral client rebuilds exactly the imported bundle.
    let c = CollateralClient::new(&pccs.url, RetryPolicy::default(), Clock::fixed(T_A)).unwrap();
    let fetched = c.fetch("00A067110000", CaType::Processor).await.unwrap();
    assert_eq!(fetched, b);
    pccs.stop().await;
}

#[tokio::test]
async fn pcs_response_directory_imports_like_the_json() {
    let b = bundle_a();
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, body: &[u8], header: Option<(&str, &str)>| {
        std::fs::write(dir.path().join(name), body).unwrap();
        if let Some((h, chain)) = header {
            let v = attestation::collateral::encode_chain_header(chain);
            std::fs::write(
                dir.path().join(format!("{name}.headers")),
                format!("HTTP/1.1 200 OK\r\n{h}: {v}\r\n"),
            )
            .unwrap();
        }
    };
    w(
        "tcb.json",
        b.tcb_info_body().as_bytes(),
        Some(("TCB-Info-Issuer-Chain", &b.tcb_info_issuer_chain)),
    );
    w(
        "qe_identity.json",
        b.qe_identity_body().as_bytes(),
        Some((
            "SGX-Enclave-Identity-Issuer-Chain",
            &b.qe_identity_issuer_chain,
        )),
    );
    w(
        "pckcrl.der",
        &b.pck_crl,
        Some(("SGX-PCK-CRL-Issuer-Chain", &b.pck_crl_issuer_chain)),
    );
    w(
        "rootcacrl.hex",
        hex::encode(&b.root_ca_crl).as_bytes(),
        None,
    );
    assert_eq!(pccs::read_pcs_dir(dir.path()).unwrap(), b);
    std::fs::remove_file(dir.path().join("pckcrl.der.headers")).unwrap();
    let err = pccs::read_pcs_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("SGX-PCK-CRL-Issuer-Chain"), "{err}");
}

#[tokio::test]
async fn lazy_pccs_with_upstream_down_cold_and_warm() {
    // Upstream: an offline PCCS with set A that we can stop.
    let up_dir = tempfile::tempdir().unwrap();
    let upstream = start_pccs(offline_pccs(up_dir.path(), T_A)).await;
    let upstream_url = format!("{}/sgx/certification/v4", upstream.url);

    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::fixed(T_A);
    let lazy = PccsState::new(
        Store::open(dir.path()).unwrap(),
        pccs::Config {
            mode: Mode::Lazy,
            upstream: Some(upstream_url.clone()),
            root_crl_url: None,
            upstream_timeout: Duration::from_secs(2),
            ..pccs::Config::default()
        },
        clock.clone(),
    )
    .unwrap();
    let app = pccs::router(lazy.clone());
    let get = |path: &'static str| {
        let app = app.clone();
        async move {
            let r = app
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = r.status();
            let warning = r
                .headers()
                .get("warning")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (status, warning, body)
        }
    };
    const TCB: &str = "/sgx/certification/v4/tcb?fmspc=00A067110000";
    let b = bundle_a();

    // Warm the cache through the upstream.
    let (s, w, body) = get(TCB).await;
    assert_eq!((s, w), (StatusCode::OK, None));
    assert_eq!(body.as_ref(), b.tcb_info_body().as_bytes());
    let (s, _, _) = get("/sgx/certification/v4/qe/identity").await;
    assert_eq!(s, StatusCode::OK);

    upstream.stop().await;

    // Warm cache, upstream down: still served.
    let (s, w, body) = get(TCB).await;
    assert_eq!((s, w), (StatusCode::OK, None));
    assert_eq!(body.as_ref(), b.tcb_info_body().as_bytes());

    // Cold entry, upstream down: a clear 503.
    let (s, _, body) = get("/sgx/certification/v4/pckcrl?ca=processor").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["error"]["code"], "UpstreamUnavailable");

    // Inside the refresh margin, refresh fails: stale but served, with a Warning.
    let tcb_next = 1_752_922_571; // 2025-07-19T10:56:11Z
    clock.set(tcb_next - 3600);
    let (s, w, body) = get(TCB).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        w.as_deref()
            .unwrap()
            .starts_with("110 - \"Response is Stale"),
        "{w:?}"
    );
    assert_eq!(body.as_ref(), b.tcb_info_body().as_bytes());
    // The background refresh step fails too, and keeps the entry.
    assert_eq!(pccs::refresh_due(&lazy).await, 0);

    // Past nextUpdate: 503 naming the expiry, and the store still holds the entry.
    clock.set(tcb_next + 1);
    let (s, _, body) = get(TCB).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["error"]["code"], "CollateralExpired");
    assert!(lazy.store().get("sgx/tcb/00A067110000").unwrap().is_some());
}

#[tokio::test]
async fn lazy_pccs_refreshes_before_next_update() {
    let up_dir = tempfile::tempdir().unwrap();
    let upstream = start_pccs(offline_pccs(up_dir.path(), T_A)).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::fixed(T_A);
    let lazy = PccsState::new(
        Store::open(dir.path()).unwrap(),
        pccs::Config {
            mode: Mode::Lazy,
            upstream: Some(format!("{}/sgx/certification/v4", upstream.url)),
            root_crl_url: None,
            ..pccs::Config::default()
        },
        clock.clone(),
    )
    .unwrap();
    let app = pccs::router(lazy.clone());
    let r = app
        .oneshot(
            Request::get("/sgx/certification/v4/qe/identity")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(pccs::refresh_due(&lazy).await, 0, "nothing due yet");
    clock.set(1_752_919_278 - 3600); // QE identity's nextUpdate - 1 h
    assert_eq!(pccs::refresh_due(&lazy).await, 1);
    let e = lazy.store().get("sgx/qe/identity").unwrap().unwrap();
    assert_eq!(e.fetched_at, 1_752_919_278 - 3600);
    upstream.stop().await;
}

async fn post(app: &axum::Router, body: Value) -> (StatusCode, Value) {
    let r = app
        .clone()
        .oneshot(
            Request::post("/attest/SgxEnclave?api-version=2022-08-01")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let s = r.status();
    // Tokens and errors alike are JSON documents.
    assert_eq!(r.headers()["content-type"], "application/json");
    let b = r.into_body().collect().await.unwrap().to_bytes();
    (s, serde_json::from_slice(&b).unwrap())
}

fn b64(d: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(d)
}

#[tokio::test]
async fn bad_requests_get_distinct_errors() {
    let quote = quote_a();
    let debug = direct_verdict(&quote, &bundle_a(), T_A).debug;
    let static_src = CollateralSource::from_bundles(vec![bundle_a()]);
    let policy = format!("allow_debug: {debug}");
    let app = attest::router(attest_state(static_src, &policy, T_A, "http://x"));

    let code = |v: &Value| v["error"]["code"].as_str().unwrap().to_owned();
    let (s, v) = post(&app, json!({"quote": "not base64!!"})).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::BAD_REQUEST, "InvalidBase64")
    );
    let (s, v) = post(&app, json!({"quotex": "AAAA"})).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::BAD_REQUEST, "InvalidRequest")
    );
    let (s, v) = post(&app, json!({"quote": b64(&quote[..600])})).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::BAD_REQUEST, "QuoteTruncated"),
        "{v}"
    );
    let tdx = std::fs::read(testdata("dcap-qvl/sample/tdx_quote")).unwrap();
    let (s, v) = post(&app, json!({"quote": b64(&tdx)})).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::BAD_REQUEST, "UnsupportedTee"),
        "{v}"
    );
    let (s, v) = post(
        &app,
        json!({"quote": b64(&quote), "runtimeData": {"data": b64(b"hello"), "dataType": "Binary"}}),
    )
    .await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::BAD_REQUEST, "RuntimeDataMismatch")
    );
    let (s, v) = post(
        &app,
        json!({"quote": b64(&quote), "runtimeData": {"data": "%%%"}}),
    )
    .await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::BAD_REQUEST, "InvalidBase64")
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("runtimeData")
    );
    // A body over the limit is a JSON error too, and the server keeps serving.
    let huge = json!({"quote": "A".repeat(attest::MAX_BODY_LEN + 1)});
    let (s, v) = post(&app, huge).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
        "{v}"
    );
    // A corrupted signature.
    let mut bad = quote.clone();
    bad[100] ^= 1;
    let (s, v) = post(&app, json!({"quote": b64(&bad)})).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::BAD_REQUEST, "QuoteVerificationFailed"),
        "{v}"
    );
    // Policy denial names the rule.
    let (s, v) = post(&app, json!({"quote": b64(&quote), "draftPolicyForAttestation": "mrsigner: [\"00\"]\nallow_debug: true"})).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::UNAUTHORIZED, "PolicyDenied")
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"mrsigner\""),
        "{v}"
    );
    // Other TEEs' endpoints.
    let r = app
        .clone()
        .oneshot(
            Request::post("/attest/TdxVm")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The valid quote passes.
    let (s, v) = post(&app, json!({"quote": b64(&quote)})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Unknown platform: collateral not found.
    let empty = attest::router(attest_state(
        CollateralSource::from_bundles(vec![]),
        &policy,
        T_A,
        "http://x",
    ));
    let (s, v) = post(&empty, json!({"quote": b64(&quote)})).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "CollateralNotFound")
    );
    // Collateral service down: a port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let down = attest::router(attest_state(
        http_source(&dead, T_A),
        &policy,
        T_A,
        "http://x",
    ));
    let (s, v) = post(&down, json!({"quote": b64(&quote)})).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::BAD_GATEWAY, "CollateralUnavailable"),
        "{v}"
    );
    assert!(
        !v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "no internals: {v}"
    );
    // Expired collateral (verification time after nextUpdate).
    let late = attest::router(attest_state(
        CollateralSource::from_bundles(vec![bundle_a()]),
        &policy,
        1_760_000_000,
        "http://x",
    ));
    let (s, v) = post(&late, json!({"quote": b64(&quote)})).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::BAD_REQUEST, "QuoteVerificationFailed"),
        "{v}"
    );
}

#[tokio::test]
async fn policy_management_needs_the_admin_token() {
    let quote = quote_a();
    let debug = direct_verdict(&quote, &bundle_a(), T_A).debug;
    let app = attest::router(attest_state(
        CollateralSource::from_bundles(vec![bundle_a()]),
        &format!("allow_debug: {debug}"),
        T_A,
        "http://x",
    ));
    let send = |req: Request<Body>| {
        let app = app.clone();
        async move {
            let r = app.oneshot(req).await.unwrap();
            let s = r.status();
            let b = r.into_body().collect().await.unwrap().to_bytes();
            (
                s,
                serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null),
            )
        }
    };
    let (s, _) = send(
        Request::get("/policies/SgxEnclave")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = send(
        Request::put("/policies/SgxEnclave")
            .header("authorization", "Bearer nope")
            .body(Body::from("min_svn: 0"))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = send(
        Request::put("/policies/SgxEnclave")
            .header("authorization", "Bearer s3cret")
            .body(Body::from("bogus: 1"))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // Tighten: only UpToDate. Set A is ConfigurationAndSWHardeningNeeded → denied.
    let text = format!("allow_debug: {debug}\naccepted_tcb_statuses: [UpToDate]\n");
    let (s, _) = send(
        Request::put("/policies/SgxEnclave")
            .header("authorization", "Bearer s3cret")
            .body(Body::from(text.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = send(
        Request::get("/policies/SgxEnclave")
            .header("authorization", "Bearer s3cret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["policy"], text);
    let (s, v) = post(&app, json!({"quote": b64(&quote)})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("accepted_tcb_statuses"),
        "{v}"
    );

    // Key rotation keeps the old key in /certs.
    let (s, _) = send(Request::get("/certs").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = send(
        Request::post("/keys:rotate")
            .header("authorization", "Bearer s3cret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, jwks) = send(Request::get("/certs").body(Body::empty()).unwrap()).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(jwks["keys"][0]["kid"], v["kid"]);
    let (s, oidc) = send(
        Request::get("/.well-known/openid-configuration")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(oidc["jwks_uri"], "http://x/certs");
}

#[tokio::test]
async fn simulated_quote_end_to_end_with_runtime_and_init_data() {
    use sgx_quote::{Attributes, ReportBody, ReportData};
    let now_dt = time::OffsetDateTime::now_utc();
    let now = now_dt.unix_timestamp();
    let sim = sgx_sim::Simulation::generate(now_dt).unwrap();
    let coll = sim.collateral(now_dt).unwrap();
    let bundle = CollateralBundle::from_json(coll.to_json().as_bytes()).unwrap();

    // Our PCCS, offline, loaded with the simulated collateral.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.import_bundle(&bundle, now).unwrap();
    let pccs_state = PccsState::new(
        store,
        pccs::Config {
            mode: Mode::Offline,
            ..pccs::Config::default()
        },
        Clock::fixed(now),
    )
    .unwrap();
    let pccs = start_pccs(pccs_state).await;

    let runtime = br#"{"keys":[{"kty":"EC","kid":"k1"}]}"#;
    let init = b"init-time configuration";
    let sha = |d: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, d);
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(sha(runtime).as_ref());
    let mut config_id = [0u8; 64];
    config_id[..32].copy_from_slice(sha(init).as_ref());
    let app = ReportBody {
        attributes: Attributes {
            flags: 0x05,
            xfrm: 0x03,
        }, // INIT | MODE64BIT, not debug
        report_data: ReportData(report_data),
        config_id,
        isv_prod_id: 7,
        isv_svn: 3,
        ..ReportBody::default()
    };
    let quote = sim.qe.quote(&app).unwrap();

    let anchors = dcap_verify::TrustAnchors::from_pem(sim.pki.root_ca_pem().as_bytes()).unwrap();
    let state = AttestState::new(
        Arc::new(DcapVerifier::new(anchors)),
        http_source(&pccs.url, now),
        KeyRing::ephemeral().unwrap(),
        "min_svn: 3\nproduct_id: [7]\naccepted_tcb_statuses: [UpToDate]",
        attest::Config::default(),
        Clock::fixed(now),
    )
    .unwrap();
    let app_router = attest::router(state);
    let (s, v) = post(
        &app_router,
        json!({
            "quote": b64(&quote),
            "runtimeData": {"data": b64(runtime), "dataType": "JSON"},
            "initTimeData": {"data": b64(init), "dataType": "Binary"},
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["token"].as_str().unwrap();
    let (_, jwks) = {
        let r = app_router
            .clone()
            .oneshot(Request::get("/certs").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (
            (),
            serde_json::from_slice::<jsonwebtoken::jwk::JwkSet>(&b).unwrap(),
        )
    };
    let claims = attestation::attest_client::verify_token(token, &jwks, now, None).unwrap();
    assert_eq!(claims[attest::CLAIM_TCB_STATUS], "UpToDate");
    assert_eq!(claims[attest::CLAIM_EAR_STATUS], "affirming");
    assert_eq!(claims["x-ms-sgx-is-debuggable"], false);
    assert_eq!(claims["x-ms-sgx-product-id"], 7);
    assert_eq!(claims["x-ms-sgx-svn"], 3);
    assert_eq!(claims["x-ms-runtime"]["keys"][0]["kid"], "k1");
    assert_eq!(claims["x-ms-sgx-report-data"], hex::encode(report_data));
    assert_eq!(claims["x-ms-sgx-config-id"], hex::encode(config_id));

    // Wrong init-time data is refused.
    let (s, v) = post(
        &app_router,
        json!({"quote": b64(&quote), "initTimeData": {"data": b64(b"other")}}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "InitTimeDataMismatch")
    );
    // The same quote against Intel's root is not trusted.
    let intel = attest::router(attest_state(
        http_source(&pccs.url, now),
        "",
        now,
        "http://x",
    ));
    let (s, v) = post(&intel, json!({"quote": b64(&quote)})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "QuoteVerificationFailed"),
        "{v}"
    );
    pccs.stop().await;
}

#[tokio::test]
async fn tls_server_and_client() {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = attestation::server::server_config(
        cert.pem().as_bytes(),
        signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let quote = quote_a();
    let debug = direct_verdict(&quote, &bundle_a(), T_A).debug;
    let state = attest_state(
        CollateralSource::from_bundles(vec![bundle_a()]),
        &format!("allow_debug: {debug}"),
        T_A,
        "https://localhost",
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(attest::serve_tls_on(l, state, tls, async {
        let _ = rx.await;
    }));
    let url = format!("https://localhost:{port}");
    // Without our root, the handshake fails.
    let untrusted = Client::new(&url, None).unwrap();
    assert!(untrusted.jwks().await.is_err());
    let client = Client::new(&url, Some(cert.pem().as_bytes())).unwrap();
    let token = client
        .attest(&AttestRequest {
            quote,
            ..AttestRequest::default()
        })
        .await
        .unwrap();
    let claims = client
        .verify(&token, T_A, Some("https://localhost"))
        .await
        .unwrap();
    assert_eq!(
        claims[attest::CLAIM_TCB_STATUS],
        "ConfigurationAndSWHardeningNeeded"
    );
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn collateral_client_cache_expires_with_the_collateral() {
    let dir = tempfile::tempdir().unwrap();
    let pccs = start_pccs(offline_pccs(dir.path(), T_A)).await;
    let clock = Clock::fixed(T_A);
    let c = CollateralClient::new(&pccs.url, RetryPolicy::default(), clock.clone()).unwrap();
    let fmspc = [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00];
    assert!(
        !c.get(&fmspc, CaType::Processor).await.unwrap().1,
        "first fetch"
    );
    assert!(
        c.get(&fmspc, CaType::Processor).await.unwrap().1,
        "then cached"
    );
    // The QE identity (earliest nextUpdate of the bundle) expires: fetch again.
    clock.set(1_752_919_278);
    assert!(
        !c.get(&fmspc, CaType::Processor).await.unwrap().1,
        "refetched after nextUpdate"
    );
    // A platform the PCCS does not know.
    let err = c
        .get(&[1, 2, 3, 4, 5, 6], CaType::Processor)
        .await
        .unwrap_err();
    assert!(
        matches!(err, attestation::client::FetchError::NotFound { .. }),
        "{err}"
    );
    pccs.stop().await;
}

/// A test CA and a `localhost` server certificate it issued (PEM): (CA, cert, key).
fn test_ca_and_server_cert() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// Issue 7, QCNL over HTTPS: `pccs_url = "https://…/sgx/certification/v4/"` gets the same
/// bodies and headers as over plain HTTP; plain HTTP on the TLS port fails cleanly and the
/// server keeps serving.
#[tokio::test]
async fn qcnl_requests_over_https_match_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let state = offline_pccs(dir.path(), T_A);
    let plain = start_pccs(state.clone()).await;
    let (ca_pem, cert_pem, key_pem) = test_ca_and_server_cert();
    let tls = attestation::server::server_config(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(pccs::serve_tls_on(l, state, tls, async {
        let _ = rx.await;
    }));

    attestation::install_crypto_provider();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let fetch = |client: &reqwest::Client, url: String| {
        let client = client.clone();
        async move {
            let r = client.get(url).send().await.unwrap();
            let status = r.status();
            let mut headers = r.headers().clone();
            headers.remove("date");
            (status, headers, r.bytes().await.unwrap())
        }
    };
    let https_base = format!("https://localhost:{port}/sgx/certification/v4/");
    let http_base = format!("{}/sgx/certification/v4/", plain.url);
    for path in [
        "tcb?fmspc=00a067110000",
        "qe/identity",
        "pckcrl?ca=processor&encoding=der",
        "pckcrl?ca=processor&encoding=pem",
        "rootcacrl",
        "pckcrl?ca=platform",
        "tcb?fmspc=zz",
    ] {
        let over_tls = fetch(&https, format!("{https_base}{path}")).await;
        let over_http = fetch(&http, format!("{http_base}{path}")).await;
        assert_eq!(over_tls, over_http, "{path}");
    }
    // The bodies are the imported ones (as in the plain-HTTP test above).
    let (s, h, body) = fetch(&https, format!("{https_base}tcb?fmspc=00a067110000")).await;
    assert_eq!(s, 200);
    assert_eq!(
        decode_chain_header(h["TCB-Info-Issuer-Chain"].to_str().unwrap()).unwrap(),
        bundle_a().tcb_info_issuer_chain
    );
    assert_eq!(body, bundle_a().tcb_info_body().as_bytes());

    // Plain HTTP to the TLS port: an error, not a hang, and the server keeps serving.
    let err = http
        .get(format!(
            "http://127.0.0.1:{port}/sgx/certification/v4/qe/identity"
        ))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err}");
    // A client that does not trust the CA fails the handshake.
    let untrusted = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(
        untrusted
            .get(format!("{https_base}qe/identity"))
            .send()
            .await
            .is_err()
    );
    let (s, _, _) = fetch(&https, format!("{https_base}qe/identity")).await;
    assert_eq!(s, 200);

    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    plain.stop().await;
}

/// The attestation router of set A with policy signers and the admin token `s3cret`.
fn app_with_signers(signers: &[&Signer], debug: bool) -> axum::Router {
    attest::router(
        AttestState::new(
            Arc::new(DcapVerifier::new(dcap_verify::TrustAnchors::intel())),
            CollateralSource::from_bundles(vec![bundle_a()]),
            KeyRing::ephemeral().unwrap(),
            &format!("allow_debug: {debug}"),
            attest::Config {
                admin_token: Some("s3cret".into()),
                policy_signers: signer_set(signers),
                ..attest::Config::default()
            },
            Clock::fixed(T_A),
        )
        .unwrap(),
    )
}

async fn put_policy(app: &axum::Router, token: &str, body: &str) -> (StatusCode, Value) {
    let r = app
        .clone()
        .oneshot(
            Request::put("/policies/SgxEnclave")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
        .unwrap();
    let s = r.status();
    let b = r.into_body().collect().await.unwrap().to_bytes();
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// `GET /policies/SgxEnclave` with the admin token.
async fn get_policy(app: &axum::Router) -> Value {
    let r = app
        .clone()
        .oneshot(
            Request::get("/policies/SgxEnclave")
                .header("authorization", "Bearer s3cret")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn unsigned_policy_jws_is_accepted_without_signers_and_takes_effect() {
    let quote = quote_a();
    let debug = direct_verdict(&quote, &bundle_a(), T_A).debug;
    let app = app_with_signers(&[], debug);
    let (s, v) = post(&app, json!({"quote": b64(&quote)})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Only UpToDate: set A (ConfigurationAndSWHardeningNeeded) is then denied.
    let text = format!("allow_debug: {debug}\naccepted_tcb_statuses: [UpToDate]\n");
    let (s, v) = put_policy(&app, "s3cret", &unsigned_policy(&text)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["x-confcom-policy-form"], "unsigned-jws");
    assert_eq!(v["x-confcom-policy-signer"], Value::Null);
    let (s, v) = post(&app, json!({"quote": b64(&quote)})).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicyDenied"),
        "{v}"
    );

    // The admin token check stays.
    let (s, v) = put_policy(&app, "nope", &unsigned_policy("")).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "Unauthorized")
    );
    // A JWS whose decoded text is not a policy goes through the parser: 400.
    let (s, v) = put_policy(&app, "s3cret", &unsigned_policy("bogus: 1")).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "InvalidRequest"),
        "{v}"
    );
    // Plain text is still accepted without signers, and restores the verdict.
    let (s, v) = put_policy(&app, "s3cret", &format!("allow_debug: {debug}")).await;
    assert_eq!(
        (s, &v["x-confcom-policy-form"]),
        (StatusCode::OK, &json!("plain"))
    );
    let (s, v) = post(&app, json!({"quote": b64(&quote)})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn signed_policy_jws_from_a_configured_signer_only() {
    use jsonwebtoken::Algorithm;
    let quote = quote_a();
    let debug = direct_verdict(&quote, &bundle_a(), T_A).debug;
    let es = Signer::generate(Algorithm::ES256);
    let rs = Signer::generate(Algorithm::RS256);
    let stranger = Signer::generate(Algorithm::ES256);
    let app = app_with_signers(&[&es, &rs], debug);
    let deny_text = format!("allow_debug: {debug}\naccepted_tcb_statuses: [UpToDate]\n");
    let allow_text = format!("allow_debug: {debug}\n");

    // ES256 by a configured signer: accepted, and it takes effect.
    let (s, v) = put_policy(&app, "s3cret", &es.policy(&deny_text)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["x-confcom-policy-form"], "signed-jws");
    let es_thumb = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &es.cert_der,
    ));
    assert_eq!(v["x-confcom-policy-signer"], es_thumb.as_str());
    let (s, v) = post(&app, json!({"quote": b64(&quote)})).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicyDenied"),
        "{v}"
    );

    // RS256 by the other configured signer: accepted; the quote passes again.
    let (s, v) = put_policy(&app, "s3cret", &rs.policy(&allow_text)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post(&app, json!({"quote": b64(&quote)})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Each refusal below leaves that policy in force.
    let refused = [
        // Signed by a key whose certificate is not configured.
        (
            stranger.policy(&deny_text),
            StatusCode::UNAUTHORIZED,
            "PolicySignerNotTrusted",
        ),
        // A stranger's signature presented with a configured certificate.
        (
            stranger.sign_with_x5c(&policy_payload(&deny_text), &es.cert_der),
            StatusCode::UNAUTHORIZED,
            "InvalidPolicySignature",
        ),
        // Tampered payload: a configured signer's signature over another policy.
        (
            {
                let good = es.policy(&allow_text);
                let other = es.policy(&deny_text);
                let p: Vec<&str> = good.split('.').collect();
                let q: Vec<&str> = other.split('.').collect();
                format!("{}.{}.{}", p[0], q[1], p[2])
            },
            StatusCode::UNAUTHORIZED,
            "InvalidPolicySignature",
        ),
        // Unsigned JWS and plain text need a signature once signers are configured.
        (
            unsigned_policy(&deny_text),
            StatusCode::UNAUTHORIZED,
            "PolicySignatureRequired",
        ),
        (
            deny_text.clone(),
            StatusCode::UNAUTHORIZED,
            "PolicySignatureRequired",
        ),
        // Malformed JWS: header not JSON, no AttestationPolicy, x5c missing.
        (
            format!(
                "Zm9v.{}.",
                URL_SAFE_NO_PAD.encode(policy_payload("").to_string())
            ),
            StatusCode::BAD_REQUEST,
            "MalformedPolicyJws",
        ),
        (
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
                URL_SAFE_NO_PAD.encode(br#"{"policy":"x"}"#)
            ),
            StatusCode::BAD_REQUEST,
            "MalformedPolicyJws",
        ),
        (
            {
                let t = es.policy(&deny_text);
                let p: Vec<&str> = t.split('.').collect();
                let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#);
                format!("{h}.{}.{}", p[1], p[2])
            },
            StatusCode::BAD_REQUEST,
            "MalformedPolicyJws",
        ),
    ];
    for (body, status, code) in refused {
        let (s, v) = put_policy(&app, "s3cret", &body).await;
        assert_eq!((s, error_code(&v)), (status, code), "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        let (s, v) = post(&app, json!({"quote": b64(&quote)})).await;
        assert_eq!(s, StatusCode::OK, "{code}: policy changed: {v}");
    }
    // The admin token is checked before the signature.
    let (s, v) = put_policy(&app, "nope", &es.policy(&deny_text)).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "Unauthorized")
    );
    // GET reports the signer of the policy in force.
    let v = get_policy(&app).await;
    assert_eq!(v["policy"], allow_text);
    assert_eq!(v["x-confcom-policy-form"], "signed-jws");
    assert_eq!(
        v["x-confcom-policy-signer"],
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &rs.cert_der
        ))
        .as_str()
    );
}

/// The collateral client (`confcom attest serve --pccs-url https://…`) trusts the system
/// roots, or the CA bundle named by `SSL_CERT_FILE`: a PCCS with a private CA works when
/// its CA is given that way. The test runs itself again in a child process with the variable
/// set (so it is set before the client loads the roots; `std::env::set_var` is banned), and the
/// child only fetches, from the parent's PCCS.
#[tokio::test]
async fn collateral_client_trusts_ssl_cert_file_for_an_https_pccs() {
    const CHILD_URL: &str = "CONFCOM_TEST_HTTPS_PCCS";
    if let Ok(url) = std::env::var(CHILD_URL) {
        let c = CollateralClient::new(&url, RetryPolicy::default(), Clock::fixed(T_A)).unwrap();
        assert_eq!(
            c.fetch("00A067110000", CaType::Processor).await.unwrap(),
            bundle_a()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert_pem, key_pem) = test_ca_and_server_cert();
    let tls = attestation::server::server_config(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}", l.local_addr().unwrap().port());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(pccs::serve_tls_on(
        l,
        offline_pccs(dir.path(), T_A),
        tls,
        async {
            let _ = rx.await;
        },
    ));
    // Without the CA, the handshake fails.
    let retry = RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    };
    let c = CollateralClient::new(&url, retry, Clock::fixed(T_A)).unwrap();
    assert!(c.fetch("00A067110000", CaType::Processor).await.is_err());
    // With SSL_CERT_FILE naming it, the child fetches the imported bundle.
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "collateral_client_trusts_ssl_cert_file_for_an_https_pccs",
            ])
            .env("SSL_CERT_FILE", ca_file)
            .env(CHILD_URL, url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn maa_claim_rule_policies_authorize_and_issue_claims() {
    let quote = quote_a();
    let debug = direct_verdict(&quote, &bundle_a(), T_A).debug;
    let app = app_with_signers(&[], debug);

    // MAA's grammar, wrapped as MAA clients send it (an unsigned JWS).
    let maa = format!(
        "version=1.0;
         authorizationrules {{
             [type==\"x-ms-sgx-is-debuggable\", value=={debug}] && [type==\"x-ms-sgx-svn\", value>=0]
                 => permit();
         }};
         issuancerules {{
             c:[type==\"x-ms-sgx-mrsigner\"] => issue(type=\"signer\", value=c.value);
             => issue(type=\"policy-name\", value=\"maa-e2e\");
         }};"
    );
    let (s, v) = put_policy(&app, "s3cret", &unsigned_policy(&maa)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["x-confcom-policy-language"], "maa-claim-rules");
    let (s, v) = post(&app, json!({"quote": b64(&quote), "nonce": "n-1"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let claims = token_claims(&v);
    assert_eq!(claims["x-ms-policy"]["signer"], claims["x-ms-sgx-mrsigner"]);
    assert_eq!(claims["x-ms-policy"]["policy-name"], "maa-e2e");
    assert_eq!(claims["nonce"], "n-1");

    // The policy API reports the language; MAA text has no parsed form.
    let got = get_policy(&app).await;
    assert_eq!(got["x-confcom-policy-language"], "maa-claim-rules");
    assert_eq!(got["policy"], maa.as_str());
    assert_eq!(got["parsed"], Value::Null);

    // A fired deny() denies, naming the rule.
    let deny = "version=1.0; authorizationrules {
        [type==\"x-ms-sgx-product-id\", value>=0] => deny();
        => permit();
    };";
    let (s, v) = put_policy(&app, "s3cret", deny).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post(&app, json!({"quote": b64(&quote)})).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicyDenied"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("authorizationrules rule 1 denied"),
        "{v}"
    );

    // The client's nonce is no incoming claim: nothing binds it to the quote.
    let by_nonce =
        "version=1.0; authorizationrules { [type==\"nonce\", value==\"let-me-in\"] => permit(); };";
    let (s, _) = put_policy(&app, "s3cret", by_nonce).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = post(&app, json!({"quote": b64(&quote), "nonce": "let-me-in"})).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicyDenied"),
        "{v}"
    );

    // Malformed claim rules: 400 with the position.
    let (s, v) = put_policy(
        &app,
        "s3cret",
        "version=1.0; authorizationrules { [type=\"x\"] => permit(); };",
    )
    .await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "InvalidRequest"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1, column"),
        "{v}"
    );

    // A draft policy may be MAA text too. Anyone may send one, so its token is unsecured
    // (as MAA's: it "cannot be validated") and names the draft, not the stored policy.
    let (s, v) = post(
        &app,
        json!({"quote": b64(&quote), "draftPolicyForAttestation": maa}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "none");
    assert!(token.ends_with('.'), "a draft token carries no signature");
    let claims = token_claims(&v);
    assert_eq!(claims["x-ms-policy-draft"], true);
    assert_eq!(claims["x-ms-policy"]["policy-name"], "maa-e2e");
    let draft_hash = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        URL_SAFE_NO_PAD.encode(maa.as_bytes()).as_bytes(),
    ));
    assert_eq!(claims["x-ms-policy-hash"], draft_hash.as_str());
    // (The stored policy is `by_nonce` here, which would have denied.) Stored, the same text
    // gives signed tokens with the same hash.
    let (s, _) = put_policy(&app, "s3cret", &maa).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = post(&app, json!({"quote": b64(&quote)})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!v["token"].as_str().unwrap().ends_with('.'));
    assert_eq!(token_claims(&v)["x-ms-policy-hash"], draft_hash.as_str());
    assert_eq!(token_claims(&v).get("x-ms-policy-draft"), None);
}

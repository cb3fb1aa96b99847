//! The ConfigMap backend of the runtime state against a mocked API server (`tower-test`, as
//! kube's own mock tests): reads with GET, writes with PUT carrying the `resourceVersion` read
//! (a 409 Conflict is checked with a GET, then retried on a fresh GET), other keys, labels and annotations kept; API
//! failures are 503 and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use attestation::Clock;
use attestation::attest::{self, AttestState, SyncOutcome};
use attestation::client::CollateralSource;
use attestation::policy_jws::PolicySigners;
use attestation::runtime_state::{BasedOn, RuntimeState, RuntimeStore, STATE_KEY, StoreError};
use attestation::token::KeyRing;
use attestation::verify::DcapVerifier;
use axum::http::StatusCode;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::client::Body;
use serde_json::{Value, json};

mod common;
use common::{ADMIN, ISSUER, admin_get, assert_unavailable, put_policy, unavailable_message};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Send = tower_test::mock::SendResponse<Response<Body>>;

const PATH: &str = "/api/v1/namespaces/confcom/configmaps/confcom-attestation-state";
const STARTUP: &str = "min_svn: 1\n";

fn config_map(rv: &str, state: Option<&str>) -> Value {
    let mut data = json!({ "other": "kept" });
    if let Some(s) = state {
        data[STATE_KEY] = json!(s);
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "confcom-attestation-state",
            "namespace": "confcom",
            "resourceVersion": rv,
            "labels": { "app.kubernetes.io/name": "confcom" },
            "annotations": { "helm.sh/resource-policy": "keep" },
        },
        "data": data,
    })
}

fn status(code: u16, reason: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": format!("injected {reason}"),
        "reason": reason,
        "code": code,
    })
}

async fn next(handle: &mut Handle) -> (Method, String, Value, Send) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("no request to the API server within 10 s")
        .expect("client dropped");
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (method, path, body, send)
}

fn respond(send: Send, code: u16, v: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(v).unwrap()))
            .unwrap(),
    );
}

/// Expects a GET of the ConfigMap and answers `v` with `code`.
async fn expect_get(handle: &mut Handle, code: u16, v: &Value) {
    let (method, path, _, send) = next(handle).await;
    assert_eq!((method, path.as_str()), (Method::GET, PATH));
    respond(send, code, v);
}

/// Expects a PUT of the ConfigMap; its body, to be answered.
async fn expect_put(handle: &mut Handle) -> (Value, Send) {
    let (method, path, body, send) = next(handle).await;
    assert_eq!((method, path.as_str()), (Method::PUT, PATH));
    (body, send)
}

/// One poll of `state`, its read answered with `code` and `v`.
async fn poll_answered(
    state: &AttestState,
    handle: &mut Handle,
    code: u16,
    v: &Value,
) -> Result<SyncOutcome, StoreError> {
    let s = state.clone();
    let sync = tokio::spawn(async move { s.sync_runtime_state().await });
    expect_get(handle, code, v).await;
    sync.await.unwrap()
}

fn replica() -> (AttestState, axum::Router, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "confcom");
    let api: kube::Api<ConfigMap> = kube::Api::default_namespaced(client);
    let store = RuntimeStore::config_map(api, "confcom-attestation-state");
    assert!(format!("{store:?}").contains("confcom/confcom-attestation-state"));
    let state = AttestState::new(
        Arc::new(DcapVerifier::new(dcap_verify::TrustAnchors::intel())),
        CollateralSource::from_bundles(Vec::new()),
        KeyRing::ephemeral().unwrap(),
        STARTUP,
        attest::Config {
            issuer: ISSUER.into(),
            admin_token: Some(ADMIN.into()),
            runtime_store: Some(store),
            ..attest::Config::default()
        },
        Clock::system(),
    )
    .unwrap();
    let app = attest::router(state.clone());
    (state, app, handle)
}

async fn policy_text(app: &axum::Router) -> String {
    let (s, v) = admin_get(app, "/policies/SgxEnclave").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["policy"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn configmap_store_reads_and_compare_and_swaps_with_the_resource_version() {
    let (state, app, mut handle) = replica();
    let based_on = BasedOn::new(STARTUP, &PolicySigners::none());

    // Start-up read: an empty ConfigMap (as the chart renders it) is no change.
    let s = state.clone();
    let sync = tokio::spawn(async move { s.sync_runtime_state().await });
    let mut empty = config_map("1", None);
    empty.as_object_mut().unwrap().remove("data");
    expect_get(&mut handle, 200, &empty).await;
    assert_eq!(sync.await.unwrap().unwrap(), SyncOutcome::Unchanged);
    assert!(state.probes().is_ready());

    // A PUT: GET, PUT with resourceVersion 1 → 409; GET (another replica wrote version 2),
    // PUT with resourceVersion 2 → accepted.
    let a = app.clone();
    let put = tokio::spawn(async move { put_policy(&a, "min_svn: 7").await });
    expect_get(&mut handle, 200, &empty).await;
    let (body, send) = expect_put(&mut handle).await;
    assert_eq!(body["metadata"]["resourceVersion"], "1");
    let doc = RuntimeState::from_json(body["data"][STATE_KEY].as_str().unwrap()).unwrap();
    assert_eq!(doc.policy.unwrap().body, "min_svn: 7");
    assert_eq!(doc.generation, 1);
    respond(send, 409, &status(409, "Conflict"));

    let mut competing = RuntimeState::empty(based_on.clone());
    competing.generation = 4;
    let competing_json = competing.to_json().unwrap();
    // A read tells whether the write was stored after all (it was not), then the change is
    // made again on the latest state.
    expect_get(&mut handle, 200, &config_map("2", Some(&competing_json))).await;
    expect_get(&mut handle, 200, &config_map("2", Some(&competing_json))).await;
    let (body, send) = expect_put(&mut handle).await;
    assert_eq!(body["metadata"]["resourceVersion"], "2");
    // The object is replaced whole: its other keys, labels and annotations stay.
    assert_eq!(body["data"]["other"], "kept");
    assert_eq!(
        body["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/name"],
        "confcom"
    );
    let doc_json = body["data"][STATE_KEY].as_str().unwrap().to_owned();
    let doc = RuntimeState::from_json(&doc_json).unwrap();
    assert_eq!((doc.generation, &doc.based_on), (5, &based_on));
    respond(send, 200, &config_map("3", Some(&doc_json)));
    let (s, v) = put.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(policy_text(&app).await, "min_svn: 7");

    // The poll step: the version written is the one in force.
    assert_eq!(
        poll_answered(&state, &mut handle, 200, &config_map("3", Some(&doc_json)))
            .await
            .unwrap(),
        SyncOutcome::Unchanged
    );

    // A reset written by another replica is applied at the next poll.
    let mut reset = doc.clone();
    reset.generation = 6;
    reset.policy = None;
    assert_eq!(
        poll_answered(
            &state,
            &mut handle,
            200,
            &config_map("4", Some(&reset.to_json().unwrap()))
        )
        .await
        .unwrap(),
        SyncOutcome::Applied
    );
    assert_eq!(policy_text(&app).await, STARTUP);
}

#[tokio::test]
async fn configmap_api_failures_are_503_and_change_nothing() {
    let (state, app, mut handle) = replica();

    // Missing ConfigMap at start-up: not ready.
    let err = poll_answered(&state, &mut handle, 404, &status(404, "NotFound"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("not found")),
        "{err}"
    );
    assert!(!state.probes().is_ready());

    // A PUT whose write is forbidden (RBAC): 503, nothing changed.
    let a = app.clone();
    let put = tokio::spawn(async move { put_policy(&a, "min_svn: 7").await });
    expect_get(&mut handle, 200, &config_map("1", None)).await;
    let (_, send) = expect_put(&mut handle).await;
    respond(send, 403, &status(403, "Forbidden"));
    // A read tells whether the write was stored after all: it was not.
    expect_get(&mut handle, 200, &config_map("1", None)).await;
    let (s, v) = put.await.unwrap();
    // A refused write is a failed write: the answer cannot tell that it was not stored.
    assert_unavailable(s, &v, "may or may not have been stored");
    assert!(!state.probes().is_ready());
    // Never read successfully: the policy in force here is not shown as the service's.
    let unknown = async |app: &axum::Router| {
        let (s, v) = admin_get(app, "/policies/SgxEnclave").await;
        unavailable_message(s, &v);
    };
    unknown(&app).await;

    // A PUT whose read fails: 503 too.
    let a = app.clone();
    let put = tokio::spawn(async move { put_policy(&a, "min_svn: 7").await });
    expect_get(&mut handle, 500, &status(500, "InternalError")).await;
    let (s, v) = put.await.unwrap();
    assert_unavailable(s, &v, "nothing was changed");
    unknown(&app).await;

    // Read at last (an empty ConfigMap): the start-up policy is the one in force.
    assert_eq!(
        poll_answered(&state, &mut handle, 200, &config_map("1", None))
            .await
            .unwrap(),
        SyncOutcome::Unchanged
    );
    assert_eq!(policy_text(&app).await, STARTUP);
}

#[tokio::test]
async fn configmap_a_committed_write_answered_409_is_recognized_by_a_read() {
    let (state, app, mut handle) = replica();
    assert_eq!(
        poll_answered(&state, &mut handle, 200, &config_map("1", None))
            .await
            .unwrap(),
        SyncOutcome::Unchanged
    );

    // The PUT is committed, but its answer is a 409 (what a client's retry of a committed
    // write gets): a read shows the write stored, so it succeeded and is not made again.
    let a = app.clone();
    let put = tokio::spawn(async move { put_policy(&a, "min_svn: 7").await });
    expect_get(&mut handle, 200, &config_map("1", None)).await;
    let (body, send) = expect_put(&mut handle).await;
    let doc_json = body["data"][STATE_KEY].as_str().unwrap().to_owned();
    respond(send, 409, &status(409, "Conflict"));
    expect_get(&mut handle, 200, &config_map("2", Some(&doc_json))).await;
    let (s, v) = put.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(policy_text(&app).await, "min_svn: 7");

    // The next poll finds it in force.
    assert_eq!(
        poll_answered(&state, &mut handle, 200, &config_map("2", Some(&doc_json)))
            .await
            .unwrap(),
        SyncOutcome::Unchanged
    );
}

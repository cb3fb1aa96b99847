//! The application without sockets (`router(...).oneshot(...)`).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use webhook::{AppState, router};

use crate::{patch_of, review_body};

async fn call(
    state: &AppState,
    method: &str,
    path: &str,
    body: impl Into<Body>,
) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn mutate(state: &AppState, body: impl Into<Body>) -> (StatusCode, String) {
    call(state, "POST", "/mutate", body).await
}

#[tokio::test]
async fn sgx_pod_gets_a_json_patch() {
    let state = AppState::new();
    let (status, body) = mutate(&state, review_body("epc-single-container")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let review: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = &review["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = patch_of(&review).unwrap();
    assert!(
        patch.as_array().unwrap().contains(&json!({
            "op": "add",
            "path": "/spec/containers/0/resources/limits/sgx.intel.com~1enclave",
            "value": "1"
        })),
        "{patch}"
    );
}

#[tokio::test]
async fn pods_without_sgx_pass_unchanged_and_bad_epc_is_denied() {
    let state = AppState::new();
    let (status, body) = mutate(&state, review_body("no-sgx-odd-quantities")).await;
    assert_eq!(status, StatusCode::OK);
    let review: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(review["response"]["allowed"], true);
    assert!(review["response"].get("patch").is_none(), "{body}");

    let (status, body) = mutate(&state, review_body("mismatch")).await;
    assert_eq!(status, StatusCode::OK);
    let review: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["code"], 403);
    let message = review["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("must equal its limit"), "{message}");

    let (status, body) = mutate(&state, review_body("provider-missing-container")).await;
    assert_eq!(status, StatusCode::OK);
    let review: Value = serde_json::from_str(&body).unwrap();
    let warnings = review["response"]["warnings"].as_array().unwrap();
    assert!(warnings[0].as_str().unwrap().contains("no-such-container"));
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_reason() {
    let state = AppState::new();
    let v1 = |request: Value| {
        json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request })
            .to_string()
    };
    let pod_request = |object: Value| {
        v1(json!({
            "uid": "u", "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "operation": "CREATE", "userInfo": {}, "object": object
        }))
    };
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "not AdmissionReview JSON"),
        ("{".into(), "not AdmissionReview JSON"),
        ("[1,2]".into(), "not AdmissionReview JSON"),
        ("\"AdmissionReview\"".into(), "not AdmissionReview JSON"),
        (
            json!({ "apiVersion": "v1", "kind": "Pod" }).to_string(),
            "expected kind \"AdmissionReview\", got \"Pod\"",
        ),
        (
            json!({ "apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {} })
                .to_string(),
            "unsupported apiVersion \"admission.k8s.io/v1beta1\"",
        ),
        (json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview" }).to_string(), "has no request"),
        (v1(json!({ "kind": { "group": "", "version": "v1", "kind": "Pod" } })), "request is malformed"),
        (v1(json!("a string")), "request is malformed"),
        (
            pod_request(json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {} })),
            "request.object is not a v1 Pod",
        ),
        (
            pod_request(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": { "containers": 7 } })),
            "request.object is not a v1 Pod",
        ),
        (
            pod_request(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": { "containers": [ {
                "name": "c", "resources": { "limits": { "sgx.intel.com/epc": [] } } } ] } })),
            "request.object is not a v1 Pod",
        ),
    ];
    for (body, want) in cases {
        let (status, text) = mutate(&state, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {text}");
        assert!(text.contains(want), "{body}: {text:?} lacks {want:?}");
    }
    // Too large: 413 from the body limit, still not a 500.
    let (status, _) = mutate(&state, vec![b' '; webhook::MAX_BODY_BYTES + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = call(&state, "GET", "/mutate", Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn unexpected_resources_are_allowed_unchanged_with_a_warning() {
    let state = AppState::new();
    let request = |kind: Value, resource: Value, sub: Option<&str>, op: &str, object: Value| {
        let mut r = json!({
            "uid": "e7e7", "kind": kind, "resource": resource, "name": "x", "namespace": "default",
            "operation": op, "userInfo": { "username": "admin" }, "object": object, "oldObject": null,
            "dryRun": false
        });
        if let Some(s) = sub {
            r["subResource"] = json!(s);
        }
        json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": r })
            .to_string()
    };
    let deployment = request(
        json!({ "group": "apps", "version": "v1", "kind": "Deployment" }),
        json!({ "group": "apps", "version": "v1", "resource": "deployments" }),
        None,
        "CREATE",
        json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "x" }, "spec": {} }),
    );
    let status_sub = request(
        json!({ "group": "", "version": "v1", "kind": "Pod" }),
        json!({ "group": "", "version": "v1", "resource": "pods" }),
        Some("status"),
        "UPDATE",
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "x" } }),
    );
    let binding = request(
        json!({ "group": "", "version": "v1", "kind": "Binding" }),
        json!({ "group": "", "version": "v1", "resource": "pods" }),
        Some("binding"),
        "CREATE",
        json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "x" }, "target": { "name": "n" } }),
    );
    let update = request(
        json!({ "group": "", "version": "v1", "kind": "Pod" }),
        json!({ "group": "", "version": "v1", "resource": "pods" }),
        None,
        "UPDATE",
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "x" } }),
    );
    for (body, what) in [
        (deployment, "CREATE apps/v1 deployments"),
        (status_sub, "UPDATE /v1 pods/status"),
        (binding, "CREATE /v1 pods/binding"),
        (update, "UPDATE /v1 pods"),
    ] {
        let (status, text) = mutate(&state, body).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let review: Value = serde_json::from_str(&text).unwrap();
        let response = &review["response"];
        assert_eq!(response["uid"], "e7e7");
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none());
        let warning = response["warnings"][0].as_str().unwrap();
        assert!(warning.contains(what), "{warning:?} lacks {what:?}");
    }
}

#[tokio::test]
async fn probes_and_metrics() {
    let state = AppState::new();
    assert_eq!(
        call(&state, "GET", "/healthz", Body::empty()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&state, "GET", "/readyz", Body::empty()).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    state.probes().set_ready(true);
    assert_eq!(
        call(&state, "GET", "/readyz", Body::empty()).await.0,
        StatusCode::OK
    );

    mutate(&state, review_body("epc-single-container")).await;
    mutate(&state, review_body("mismatch")).await;
    mutate(&state, "nope").await;
    let (status, text) = call(&state, "GET", "/metrics", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "confcom_webhook_admissions_total{outcome=\"patched\"} 1",
        "confcom_webhook_admissions_total{outcome=\"denied\"} 1",
        "confcom_webhook_admissions_total{outcome=\"bad_request\"} 1",
        "confcom_webhook_admission_duration_seconds_count 3",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

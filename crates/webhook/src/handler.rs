//! `POST /mutate`: AdmissionReview v1 decoding, dispatch to the pure rules, encoding.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Pod;
use kube_core::TypeMeta;
use kube_core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND, Operation,
};
use kube_core::gvk::{GroupVersionKind, GroupVersionResource};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::AppState;
use crate::metrics::Outcome;

/// Why a request body is not an AdmissionReview this webhook can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BadRequest {
    /// The body is not JSON of the AdmissionReview shape.
    #[error("request body is not AdmissionReview JSON: {0}")]
    Json(serde_json::Error),
    /// `kind` is not `AdmissionReview`.
    #[error("expected kind \"AdmissionReview\", got {0:?}")]
    Kind(String),
    /// `apiVersion` is not `admission.k8s.io/v1`.
    #[error(
        "unsupported apiVersion {0:?}: this webhook speaks admission.k8s.io/v1 (set admissionReviewVersions: [\"v1\"])"
    )]
    ApiVersion(String),
    /// The review carries no `request`.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// `request` lacks a field every request has, or has the wrong type.
    #[error("AdmissionReview request is malformed: {0}")]
    Request(serde_json::Error),
    /// The request is for pods but `request.object` is not a v1 Pod.
    #[error("request.object is not a v1 Pod: {0}")]
    Object(serde_json::Error),
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.to_string(),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
}

/// The part of every request that says what it is about.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
}

impl Head {
    fn is_pod(&self) -> bool {
        self.kind.group.is_empty()
            && self.kind.version == "v1"
            && self.kind.kind == "Pod"
            && self.resource.group.is_empty()
            && self.resource.resource == "pods"
            && self.sub_resource.as_deref().unwrap_or_default().is_empty()
    }
}

pub(crate) async fn mutate(State(state): State<AppState>, body: Bytes) -> Response {
    let start = Instant::now();
    let (outcome, response) = match review(&body) {
        Ok((outcome, review)) => (outcome, Json(review).into_response()),
        Err(bad) => {
            tracing::info!(error = %bad, "rejected admission request body");
            (Outcome::BadRequest, bad.into_response())
        }
    };
    state
        .metrics()
        .observe(outcome, start.elapsed().as_secs_f64());
    response
}

/// Decodes a review body and answers it.
fn review(body: &[u8]) -> Result<(Outcome, AdmissionReview<kube_core::DynamicObject>), BadRequest> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(BadRequest::Json)?;
    if envelope.kind != META_KIND {
        return Err(BadRequest::Kind(envelope.kind));
    }
    if envelope.api_version != META_API_VERSION_V1 {
        return Err(BadRequest::ApiVersion(envelope.api_version));
    }
    let raw = envelope.request.ok_or(BadRequest::NoRequest)?;
    let head: Head = serde_json::from_str(raw.get()).map_err(BadRequest::Request)?;
    let types = TypeMeta {
        api_version: envelope.api_version,
        kind: envelope.kind,
    };
    let span = tracing::debug_span!(
        "admission",
        uid = %head.uid,
        namespace = head.namespace.as_deref().unwrap_or_default(),
        name = %head.name,
        op = ?head.operation,
    );
    let _entered = span.enter();

    if !head.is_pod() || head.operation != Operation::Create {
        let what = format!(
            "{} {}/{} {}{}",
            operation_name(&head.operation),
            head.kind.group,
            head.kind.version,
            head.resource.resource,
            head.sub_resource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default(),
        );
        tracing::warn!(request = %what, "unexpected admission request; allowed unchanged (check the MutatingWebhookConfiguration rules)");
        let mut response = AdmissionResponse::from(&stub_request(head, types));
        response.warnings = Some(vec![format!(
            "confcom SGX webhook does not handle {what}; allowed unchanged"
        )]);
        return Ok((Outcome::Unexpected, response.into_review()));
    }

    let mut req: AdmissionRequest<Pod> =
        serde_json::from_str(raw.get()).map_err(BadRequest::Object)?;
    req.types = types;
    let response = sgx_k8s::review(&req);
    let outcome = if !response.allowed {
        tracing::info!(reason = %response.result.message, "denied pod");
        Outcome::Denied
    } else if response.patch.is_some() {
        tracing::debug!("patched pod");
        Outcome::Patched
    } else {
        Outcome::Unchanged
    };
    Ok((outcome, response.into_review()))
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// A request carrying only what a response needs (uid and types).
fn stub_request(head: Head, types: TypeMeta) -> AdmissionRequest<Pod> {
    AdmissionRequest {
        types,
        uid: head.uid,
        kind: head.kind,
        resource: head.resource,
        sub_resource: head.sub_resource,
        request_kind: None,
        request_resource: None,
        request_sub_resource: None,
        name: head.name,
        namespace: head.namespace,
        operation: head.operation,
        user_info: Default::default(),
        object: None,
        old_object: None,
        dry_run: false,
        options: None,
    }
}

//! Mutating admission webhook: SGX devices and quote-helper wiring for pods that request EPC.
//!
//! A thin HTTP shell around [`sgx_k8s::mutate()`]: it decodes AdmissionReview v1 bodies, hands
//! pod CREATE requests to the pure rules and encodes the answer. It serves over rustls and
//! reloads its certificate when the files change (cert-manager rotation).
//!
//! Endpoints (see [`router`]):
//! - `POST /mutate`: AdmissionReview v1 in, AdmissionReview v1 out. A body that is not an
//!   AdmissionReview v1 gets HTTP 400 with a plain-text reason (never 500); a review of any
//!   resource other than `pods` (core/v1) is allowed unchanged with a warning.
//! - `GET /healthz`, `GET /readyz`, `GET /metrics`: probes and Prometheus metrics
//!   ([`confcom_runtime::Probes`]), also on the plain-HTTP `--metrics-listen` port when set.

pub mod cli;
mod handler;
mod metrics;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use confcom_runtime::Probes;

pub use handler::BadRequest;
pub use metrics::Metrics;

/// Path of the mutating endpoint (the `clientConfig.service.path` of the registration).
pub const MUTATE_PATH: &str = "/mutate";

/// Largest accepted request body. etcd stores objects up to 1.5 MiB; the review wraps one
/// object (CREATE has no `oldObject`), so 6 MiB leaves ample room. Larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 6 << 20;

/// Shared state of the webhook: metrics and probes.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Metrics,
    probes: Probes,
}

impl AppState {
    /// Creates the metrics registry and the probes (not ready yet).
    #[must_use]
    pub fn new() -> Self {
        let mut registry = prometheus_client::registry::Registry::with_prefix("confcom_webhook");
        let metrics = Metrics::register(&mut registry);
        Self {
            inner: Arc::new(Inner {
                metrics,
                probes: Probes::new(registry),
            }),
        }
    }

    /// The webhook's metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The probe endpoint state (`/readyz` answers 200 once [`Probes::set_ready`] is called).
    #[must_use]
    pub fn probes(&self) -> &Probes {
        &self.inner.probes
    }
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}

/// The whole HTTP application: `POST /mutate` plus the probe and metrics routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(handler::mutate))
        .with_state(state.clone())
        .merge(state.probes().router())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

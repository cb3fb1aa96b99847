//! Shared service plumbing for the `confcom` daemons: tracing set-up, the shutdown signal,
//! one small HTTP endpoint for probes (`/healthz`, `/readyz`) and Prometheus `/metrics`, and
//! the TLS accept loop of the HTTPS services ([`tls::serve_tls`]).
//!
//! It holds no SGX or Kubernetes logic; each service crate builds on it.

pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::Mutex;

/// Installs the global tracing subscriber for a binary.
///
/// Filter from `RUST_LOG` (default `info`); format from `CONFCOM_LOG_FORMAT` (`json` for
/// one JSON object per line, as in a cluster; anything else for human-readable text).
/// Calling it twice is harmless (the second call does nothing).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("CONFCOM_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves when the process receives SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT, shutting down"),
        () = term => tracing::info!("received SIGTERM, shutting down"),
    }
}

/// Shared state of the probe endpoint: a readiness flag and the metrics registry.
#[derive(Clone)]
pub struct Probes {
    ready: Arc<AtomicBool>,
    registry: Arc<Mutex<Registry>>,
}

impl Probes {
    /// Creates probes around a registry; not ready until [`Probes::set_ready`] is called.
    #[must_use]
    pub fn new(registry: Registry) -> Self {
        Self {
            ready: Arc::new(AtomicBool::new(false)),
            registry: Arc::new(Mutex::new(registry)),
        }
    }

    /// Marks the service ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` currently answers 200.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The router: `GET /healthz` (always 200 while the process serves), `GET /readyz`
    /// (200 once ready, else 503) and `GET /metrics` (OpenMetrics text).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }

    /// Serves [`Probes::router`] on `addr` until `shutdown` resolves.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding the probe/metrics endpoint on {addr}: {e}"))?;
        tracing::info!(%addr, "probe and metrics endpoint listening");
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

async fn readyz(State(p): State<Probes>) -> impl IntoResponse {
    if p.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(p): State<Probes>) -> impl IntoResponse {
    let mut body = String::new();
    let registry = p.registry.lock().await;
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    async fn get(p: &Probes, path: &str) -> (StatusCode, String) {
        let resp = p
            .router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_flag_and_metrics_are_encoded() {
        let mut registry = Registry::default();
        let c: Counter = Counter::default();
        registry.register("demo_requests", "requests seen", c.clone());
        c.inc();
        let p = Probes::new(registry);
        assert_eq!(get(&p, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(&p, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        p.set_ready(true);
        assert_eq!(get(&p, "/readyz").await.0, StatusCode::OK);
        let (s, body) = get(&p, "/metrics").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("demo_requests_total 1"), "{body}");
    }
}

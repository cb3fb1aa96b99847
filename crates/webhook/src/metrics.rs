//! Prometheus metrics of the webhook.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How an admission request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    /// Allowed with a JSON Patch.
    Patched,
    /// Allowed unchanged.
    Unchanged,
    /// Denied by the rules.
    Denied,
    /// Not a pod CREATE: allowed unchanged with a warning.
    Unexpected,
    /// Not an AdmissionReview v1: HTTP 400.
    BadRequest,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Patched => "patched",
            Self::Unchanged => "unchanged",
            Self::Denied => "denied",
            Self::Unexpected => "unexpected",
            Self::BadRequest => "bad_request",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Metrics of the webhook (cheap to clone; clones share the values).
#[derive(Clone, Debug)]
pub struct Metrics {
    admissions: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    cert_reloads: Family<ResultLabels, Counter>,
    cert_not_after: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them (names get the registry's prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            admissions: Family::default(),
            // 50 µs … ~100 ms
            duration: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.000_05, 2.0, 12,
            )),
            cert_reloads: Family::default(),
            cert_not_after: Gauge::default(),
        };
        registry.register(
            "admissions",
            "Admission requests handled, by outcome",
            m.admissions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time spent handling one admission request (decode, rules, encode)",
            m.duration.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads after the files changed, by result",
            m.cert_reloads.clone(),
        );
        registry.register(
            "certificate_not_after_seconds",
            "Expiry (Unix time) of the serving certificate currently loaded",
            m.cert_not_after.clone(),
        );
        m
    }

    pub(crate) fn observe(&self, outcome: Outcome, seconds: f64) {
        self.admissions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
        self.duration.observe(seconds);
    }

    pub(crate) fn cert_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.cert_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub(crate) fn cert_not_after(&self, unix_seconds: i64) {
        self.cert_not_after.set(unix_seconds);
    }
}

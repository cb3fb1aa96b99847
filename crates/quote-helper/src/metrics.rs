//! Prometheus metrics of the quote helper.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `confcom_quote_helper_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Request type (`get_quote_ex`, ..., or `invalid` for frames that did not decode).
    pub r#type: &'static str,
    /// Result (`success`, an AESM error label, or a transport failure such as `timeout`).
    pub result: &'static str,
}

/// The service's metrics (cheap to clone; clones share the values).
#[derive(Clone)]
pub struct Metrics {
    /// Requests by type and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Successful GetQuoteEx latency (seconds, from accepting the connection to the whole
    /// response written to the socket).
    pub quote_latency: Histogram,
    /// Connections open: being served or held by the waiter.
    pub in_flight: Gauge,
    /// Connections held by the waiter (their request not complete yet, or their response not
    /// taken yet).
    pub parked: Gauge,
    /// The counter of successful GetQuoteEx requests, looked up once (the hot path).
    quotes_ok: Counter,
}

/// Labels of successful GetQuoteEx requests.
const QUOTE_OK: RequestLabels = RequestLabels {
    r#type: "get_quote_ex",
    result: "success",
};

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    #[must_use]
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let quotes_ok = requests.get_or_create(&QUOTE_OK).clone();
        let m = Self {
            quotes_ok,
            requests,
            quote_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            in_flight: Gauge::default(),
            parked: Gauge::default(),
        };
        registry.register(
            "confcom_quote_helper_requests",
            "AESM requests by type and result",
            m.requests.clone(),
        );
        registry.register(
            "confcom_quote_helper_quote_latency_seconds",
            "successful GetQuoteEx latency, from accept to the whole response written",
            m.quote_latency.clone(),
        );
        registry.register(
            "confcom_quote_helper_connections_in_flight",
            "connections open (being served or waiting for their client)",
            m.in_flight.clone(),
        );
        registry.register(
            "confcom_quote_helper_connections_waiting",
            "connections held while their client is slow to send the request or take the response",
            m.parked.clone(),
        );
        m
    }

    /// Counts one request.
    pub fn count(&self, kind: &'static str, result: &'static str) {
        if kind == QUOTE_OK.r#type && result == QUOTE_OK.result {
            self.quotes_ok.inc();
            return;
        }
        self.requests
            .get_or_create(&RequestLabels {
                r#type: kind,
                result,
            })
            .inc();
    }
}

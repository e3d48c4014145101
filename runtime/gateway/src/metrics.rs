//! Gateway metrics (Prometheus): requests by Service and code, latency to the response head
//! by Service, requests in flight. Served on the agent endpoint's `/metrics`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    service: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

/// The gateway's metric handles (registered in the node's registry, the agent's `NodeMetrics`);
/// clones share the same series.
#[derive(Clone)]
pub struct GatewayMetrics {
    requests: Family<CodeLabels, Counter>,
    latency: Family<ServiceLabels, Histogram>,
    pub(crate) in_flight: Gauge,
    /// Requests sent to another endpoint after one failed ([`crate::retry`]).
    pub(crate) retries: Counter,
    /// Access log lines dropped because stderr could not keep up.
    pub(crate) access_log_dropped: Counter,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics").finish_non_exhaustive()
    }
}

impl GatewayMetrics {
    /// Registers the gateway's metrics in `registry` (the node's, prefixed `ketch_gateway`).
    pub fn new(registry: &mut Registry) -> Self {
        let requests = Family::<CodeLabels, Counter>::default();
        let latency = Family::<ServiceLabels, Histogram>::new_with_constructor(|| {
            // 10 µs … ~5 s: an in-process Wasm call is tens of µs, a slow backend seconds.
            Histogram::new(exponential_buckets(0.00001, 2.0, 20))
        });
        let in_flight = Gauge::default();
        let access_log_dropped = Counter::default();
        let retries = Counter::default();
        registry.register(
            "retries",
            "Requests sent to another endpoint after one failed before reaching its Pod, or failed and are safe to repeat",
            retries.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because stderr could not keep up",
            access_log_dropped.clone(),
        );
        registry.register(
            "requests",
            "Requests by Service (namespace/name, `-` when unrouted) and HTTP code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response head by Service",
            latency.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being served",
            in_flight.clone(),
        );
        Self {
            requests,
            latency,
            in_flight,
            retries,
            access_log_dropped,
        }
    }

    pub fn observe(&self, service: &str, code: u16, took: Duration) {
        self.requests
            .get_or_create(&CodeLabels {
                service: service.to_string(),
                code,
            })
            .inc();
        self.latency
            .get_or_create(&ServiceLabels {
                service: service.to_string(),
            })
            .observe(took.as_secs_f64());
    }
}

/// A response body that keeps the in-flight gauge up until it is finished or dropped.
pub(crate) struct InFlightBody {
    inner: Body,
    gauge: Option<Gauge>,
}

impl InFlightBody {
    pub(crate) fn new(inner: Body, gauge: Gauge) -> Self {
        Self {
            inner,
            gauge: Some(gauge),
        }
    }

    fn done(&mut self) {
        if let Some(g) = self.gauge.take() {
            g.dec();
        }
    }
}

impl Drop for InFlightBody {
    fn drop(&mut self) {
        self.done();
    }
}

impl http_body::Body for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None | Some(Err(_)))) {
            self.done();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn in_flight_drops_when_the_body_is_done() {
        let m = GatewayMetrics::new(&mut Registry::default());
        m.in_flight.inc();
        let body = InFlightBody::new(Body::from("hi"), m.in_flight.clone());
        assert_eq!(m.in_flight.get(), 1);
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"hi");
        assert_eq!(m.in_flight.get(), 0);
    }

    #[test]
    fn requests_are_counted_by_service_and_code() {
        let mut registry = Registry::default();
        let m = GatewayMetrics::new(registry.sub_registry_with_prefix("ketch_gateway"));
        m.observe("default/hello", 200, Duration::from_micros(50));
        m.observe("default/hello", 200, Duration::from_micros(70));
        m.observe("-", 404, Duration::from_micros(5));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("ketch_gateway_requests_total{service=\"default/hello\",code=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ketch_gateway_requests_total{service=\"-\",code=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ketch_gateway_requests_in_flight 0"),
            "{text}"
        );
    }
}

//! The node's Prometheus metrics, served on the agent endpoint's `/metrics`: the gateway's
//! (`ketch_gateway_*`, [`ketch_gateway::GatewayMetrics`]) and the agent's own
//! (`ketch_agent_*`), in one registry so the exposition is one well-formed document.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use ketch_gateway::GatewayMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    runtime: String,
}

/// Every metric of the node and the registry that encodes them.
pub(crate) struct NodeMetrics {
    registry: Registry,
    pub gateway: GatewayMetrics,
    /// Agent-side start of a container: from the worker taking the start up to the workload
    /// running (Pod network, image resolution, create and start; Wasm: load + pre-instantiate).
    start: Family<RuntimeLabels, Histogram>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let gateway = GatewayMetrics::new(registry.sub_registry_with_prefix("ketch_gateway"));
        let start = Family::<RuntimeLabels, Histogram>::new_with_constructor(|| {
            // 50 µs (a cached Wasm component) … ~50 s (a slow image pull).
            Histogram::new(exponential_buckets(0.00005, 2.0, 20))
        });
        registry.sub_registry_with_prefix("ketch_agent").register(
            "container_start_duration_seconds",
            "Agent-side time to start a container (not counting image pulls' retries), by runtime",
            start.clone(),
        );
        Self {
            registry,
            gateway,
            start,
        }
    }

    pub(crate) fn observe_start(&self, runtime: &str, took: Duration) {
        self.start
            .get_or_create(&RuntimeLabels {
                runtime: runtime.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_and_gateway_metrics_share_one_exposition() {
        let m = NodeMetrics::new();
        m.observe_start("wasm", Duration::from_micros(300));
        m.gateway
            .observe("default/hello", 200, Duration::from_micros(40));
        let text = m.encode();
        assert!(
            text.contains("ketch_agent_container_start_duration_seconds_count{runtime=\"wasm\"} 1"),
            "{text}"
        );
        assert!(text.contains("ketch_gateway_requests_total"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }
}

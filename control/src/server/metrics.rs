//! Prometheus metrics of the API server and the store, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::quota::Quota;
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<VerbLabels, Histogram>,
    pub watchers: Gauge,
    raft_term: Gauge,
    raft_last_log_index: Gauge,
    raft_last_applied: Gauge,
    raft_leader: Gauge,
    store_revision: Gauge,
    store_size: Gauge,
    store_used: Gauge,
    store_quota: Gauge,
    store_quota_exceeded: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ketch");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<VerbLabels, Histogram>::new_with_constructor(|| {
            // 100 µs … ~3.3 s: writes are a fsync (~ms), lists of thousands of objects tens of ms.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0001, 2.0, 16,
            ))
        });
        let watchers = Gauge::default();
        let g = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        registry.register(
            "apiserver_requests",
            "API requests by verb and HTTP code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "API request latency by verb (watch excluded)",
            latency.clone(),
        );
        registry.register("apiserver_watchers", "Open watch streams", watchers.clone());
        let raft_term = g(&mut registry, "raft_term", "Current raft term");
        let raft_last_log_index = g(&mut registry, "raft_last_log_index", "Last raft log index");
        let raft_last_applied = g(
            &mut registry,
            "raft_last_applied_index",
            "Raft log index applied to the state machine (the commit point this server knows)",
        );
        let raft_leader = g(
            &mut registry,
            "raft_is_leader",
            "1 when this server is the raft leader",
        );
        let store_revision = g(
            &mut registry,
            "store_revision",
            "Store revision (newest resourceVersion)",
        );
        let store_size = g(
            &mut registry,
            "store_size_bytes",
            "Size of the store's redb files (raft.redb, log.redb)",
        );
        let store_used = g(
            &mut registry,
            "store_objects_bytes",
            "Bytes of the stored objects, what the quota measures (refreshed every second)",
        );
        let store_quota = g(
            &mut registry,
            "store_quota_bytes",
            "The store's quota (--quota-backend-bytes)",
        );
        let store_quota_exceeded = g(
            &mut registry,
            "store_quota_exceeded",
            "The quota alarm: 1 while the stored objects exceed the quota (creates are refused)",
        );
        Self {
            registry,
            requests,
            latency,
            watchers,
            raft_term,
            raft_last_log_index,
            raft_last_applied,
            raft_leader,
            store_revision,
            store_size,
            store_used,
            store_quota,
            store_quota_exceeded,
        }
    }

    /// Refresh the store gauges and render the Prometheus text format.
    pub fn render(&self, store: &Store, quota: &Quota) -> String {
        let s = store.stats();
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.raft_term.set(to_i64(s.term));
        self.raft_last_log_index
            .set(to_i64(s.last_log_index.unwrap_or(0)));
        self.raft_last_applied
            .set(to_i64(s.last_applied_index.unwrap_or(0)));
        self.raft_leader.set(i64::from(s.leader == Some(s.node_id)));
        self.store_revision
            .set(to_i64(store.revision().unwrap_or(0)));
        self.store_size.set(to_i64(store.db_size_bytes()));
        self.store_used.set(to_i64(quota.used()));
        self.store_quota.set(to_i64(quota.limit()));
        self.store_quota_exceeded.set(i64::from(quota.exceeded()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

//! Keeps the gateway's route table current: resumable watches of Services, EndpointSlices,
//! Ingresses and Nodes (all namespaces) feed local caches; after each burst of events the
//! table is rebuilt whole and swapped in. Rebuilding is O(objects), off the request path, and
//! bursts (a rollout touching many slices) coalesce into one rebuild.
//!
//! The TLS listener's certificates come from the same loop: a watch of the Secrets of type
//! `kubernetes.io/tls` only (a field selector: no other Secret ever reaches the node's
//! gateway), and the certificate map is rebuilt when an Ingress or one of those Secrets
//! changed in the burst, not on endpoint churn. An Ingress TLS entry whose Secret is unusable
//! is reported once per change: a warning in the node's log and a Warning Event
//! `InvalidTLSSecret` on the Ingress (from every node's gateway, each naming its node).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::stream::BoxStream;
use futures_util::{FutureExt as _, StreamExt as _};
use ketch_api::core::{Event as ApiEvent, EventSource, Node, ObjectReference, Secret, Service};
use ketch_api::discovery::EndpointSlice;
use ketch_api::meta::ObjectMeta;
use ketch_api::networking::Ingress;
use ketch_api::resource::Resource;
use ketch_client::{Client, Event, ListParams};
use tokio::sync::watch;

use super::Dispatcher;
use super::routes::{Inputs, RouteTable};
use super::tls::{self, TlsProblem};

type Key = (String, String);

/// A cache of one kind, fed by its watch.
struct Cache<K>(BTreeMap<Key, K>);

impl<K: Resource> Cache<K> {
    fn key(o: &K) -> Key {
        let m = o.metadata();
        (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        )
    }

    fn apply(&mut self, ev: Event<K>) {
        match ev {
            Event::Added(o) | Event::Modified(o) => {
                self.0.insert(Self::key(&o), o);
            }
            Event::Deleted(o) => {
                self.0.remove(&Self::key(&o));
            }
            Event::Restarted(list) => {
                self.0 = list.into_iter().map(|o| (Self::key(&o), o)).collect();
            }
        }
    }

    fn values(&self) -> Vec<&K> {
        self.0.values().collect()
    }
}

enum Change {
    Service(Event<Service>),
    Slice(Event<EndpointSlice>),
    Ingress(Event<Ingress>),
    Node(Event<Node>),
    Secret(Event<Secret>),
}

fn watch_all<K, F>(
    client: &Client,
    wrap: F,
) -> BoxStream<'static, Result<Change, ketch_client::Error>>
where
    K: Resource + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(Event<K>) -> Change + Send + 'static,
{
    watch_selected(client, ListParams::default(), wrap)
}

fn watch_selected<K, F>(
    client: &Client,
    params: ListParams,
    wrap: F,
) -> BoxStream<'static, Result<Change, ketch_client::Error>>
where
    K: Resource + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(Event<K>) -> Change + Send + 'static,
{
    client
        .api::<K>(None)
        .watcher(params, None)
        .map(move |r| r.map(&wrap))
        .boxed()
}

/// Runs until `stop`.
pub async fn run(
    client: Client,
    dispatcher: Arc<Dispatcher>,
    node: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut stream = futures_util::stream::select_all([
        watch_all(&client, Change::Service),
        watch_all(&client, Change::Slice),
        watch_all(&client, Change::Ingress),
        watch_all(&client, Change::Node),
        watch_selected(
            &client,
            ListParams {
                field_selector: Some(format!("type={}", tls::SECRET_TYPE_TLS)),
                ..ListParams::default()
            },
            Change::Secret,
        ),
    ]);
    let mut services = Cache::<Service>(BTreeMap::new());
    let mut slices = Cache::<EndpointSlice>(BTreeMap::new());
    let mut ingresses = Cache::<Ingress>(BTreeMap::new());
    let mut nodes = Cache::<Node>(BTreeMap::new());
    let mut secrets = Cache::<Secret>(BTreeMap::new());
    let mut reported: BTreeSet<TlsProblem> = BTreeSet::new();
    // Problems are reported only once both lists are in: an Ingress listed before the
    // Secrets' first list would otherwise be reported as missing its Secret at every start.
    let (mut ingresses_listed, mut secrets_listed) = (false, false);
    let provider = tls::provider();
    let domain = dispatcher.config().domain.clone();
    loop {
        let first = tokio::select! {
            () = super::stopped(&mut stop) => return,
            ev = stream.next() => ev,
        };
        let mut next = first;
        let mut certs_changed = false;
        // Apply this event and everything already queued, then rebuild once.
        loop {
            match next {
                Some(Ok(Change::Service(e))) => services.apply(e),
                Some(Ok(Change::Slice(e))) => slices.apply(e),
                Some(Ok(Change::Ingress(e))) => {
                    ingresses_listed |= matches!(e, Event::Restarted(_));
                    ingresses.apply(e);
                    certs_changed = true;
                }
                Some(Ok(Change::Node(e))) => nodes.apply(e),
                Some(Ok(Change::Secret(e))) => {
                    secrets_listed |= matches!(e, Event::Restarted(_));
                    secrets.apply(e);
                    certs_changed = true;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "gateway: watching routes (retrying)"),
                None => return,
            }
            match stream.next().now_or_never() {
                Some(ev) => next = ev,
                None => break,
            }
        }
        let inputs = Inputs {
            services: services.values(),
            slices: slices.values(),
            ingresses: ingresses.values(),
            nodes: nodes.values(),
        };
        dispatcher.publish(RouteTable::build(&inputs, &node, &domain));
        if certs_changed {
            let (map, problems) = tls::build(&inputs.ingresses, &secrets.0, &provider);
            tracing::debug!(hosts = ?map.hosts(), "gateway TLS: certificates rebuilt");
            dispatcher.certs().replace(map);
            if ingresses_listed && secrets_listed {
                let problems: BTreeSet<TlsProblem> = problems.into_iter().collect();
                for p in problems.difference(&reported) {
                    report(&client, &node, p);
                }
                reported = problems;
            }
        }
    }
}

/// Says that an Ingress TLS entry got no certificate: in this node's log, and as a Warning
/// Event on the Ingress (written in the background; a failed write is only logged, the
/// problem is still in the log).
fn report(client: &Client, node: &str, p: &TlsProblem) {
    tracing::warn!(
        namespace = %p.namespace,
        ingress = %p.ingress,
        "gateway TLS: {}",
        p.message
    );
    let now = ketch_api::time::now();
    // Kubernetes' naming (`<object>.<unique>`), the prefix cut so the name stays within the
    // 253 characters of a name whatever the Ingress's length.
    let prefix: String = p.ingress.chars().take(200).collect();
    let ev = ApiEvent {
        api_version: Some("v1".into()),
        kind: Some("Event".into()),
        metadata: ObjectMeta {
            name: Some(format!("{prefix}.{:016x}", rand::random::<u64>())),
            namespace: Some(p.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("Ingress".into()),
            namespace: Some(p.namespace.clone()),
            name: Some(p.ingress.clone()),
            uid: Some(p.uid.clone()).filter(|u| !u.is_empty()),
            api_version: Some("networking.k8s.io/v1".into()),
            ..ObjectReference::default()
        },
        reason: Some("InvalidTLSSecret".into()),
        message: Some(p.message.clone()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some("ketch-gateway".into()),
            host: Some(node.to_string()),
        }),
        reporting_component: Some("ketch-gateway".into()),
        reporting_instance: Some(node.to_string()),
        ..ApiEvent::default()
    };
    let api = client.api::<ApiEvent>(Some(&p.namespace));
    tokio::spawn(async move {
        if let Err(e) = api.create(&ev).await {
            tracing::debug!(error = %e, "gateway TLS: writing the InvalidTLSSecret Event");
        }
    });
}

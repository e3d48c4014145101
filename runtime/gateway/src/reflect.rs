//! Keeps the gateway's route table current: resumable watches of Services, EndpointSlices,
//! Ingresses and Nodes (all namespaces) feed local caches; after each burst of events the
//! table is rebuilt whole and swapped in. Rebuilding is O(objects), off the request path, and
//! bursts (a rollout touching many slices) coalesce into one rebuild.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::BoxStream;
use futures_util::{FutureExt as _, StreamExt as _};
use ketch_api::core::{Node, Service};
use ketch_api::discovery::EndpointSlice;
use ketch_api::networking::Ingress;
use ketch_api::resource::Resource;
use ketch_client::{Client, Event, ListParams};
use tokio::sync::watch;

use super::Dispatcher;
use super::routes::{Inputs, RouteTable};

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
}

fn watch_all<K, F>(
    client: &Client,
    wrap: F,
) -> BoxStream<'static, Result<Change, ketch_client::Error>>
where
    K: Resource + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(Event<K>) -> Change + Send + 'static,
{
    client
        .api::<K>(None)
        .watcher(ListParams::default(), None)
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
    ]);
    let mut services = Cache::<Service>(BTreeMap::new());
    let mut slices = Cache::<EndpointSlice>(BTreeMap::new());
    let mut ingresses = Cache::<Ingress>(BTreeMap::new());
    let mut nodes = Cache::<Node>(BTreeMap::new());
    let domain = dispatcher.config().domain.clone();
    loop {
        let first = tokio::select! {
            () = super::stopped(&mut stop) => return,
            ev = stream.next() => ev,
        };
        let mut next = first;
        // Apply this event and everything already queued, then rebuild once.
        loop {
            match next {
                Some(Ok(Change::Service(e))) => services.apply(e),
                Some(Ok(Change::Slice(e))) => slices.apply(e),
                Some(Ok(Change::Ingress(e))) => ingresses.apply(e),
                Some(Ok(Change::Node(e))) => nodes.apply(e),
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
    }
}

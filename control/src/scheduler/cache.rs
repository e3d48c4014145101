//! The scheduler's incremental view of the cluster: every node with what is requested on it,
//! kept current from pod and node changes instead of being rebuilt from all pods per batch.
//!
//! This is kube-scheduler's scheduler cache in miniature. Each pod that holds resources has
//! one entry (its uid, node and charge), and each node's `requested` is the sum of its
//! entries' charges. An entry is either *bound* (the pod cache shows `spec.nodeName`) or
//! *assumed* (the scheduler placed the pod and its binding is not visible yet). An assumed
//! pod counts against its node at once, so the next placement never double-books the
//! capacity it took. A later pod update that shows the binding turns the entry into a bound
//! one. A failed binding is [`SchedulerCache::forget`]-ed. Each entry also carries what
//! spreading needs of the pod (namespace, labels, controller owner: [`PodMeta`]), kept in the
//! snapshot's [`super::topology::PodTopology`] by node and by owner, so assumed pods spread
//! too and a forget undoes it. Every operation costs O(1) (plus the pod's request parsing),
//! apart from a re-sort of the nodes after nodes were added or removed.
//!
//! Pure: no IO, no clock. The runner feeds it informer changes and its own placements.

use std::collections::HashMap;
use std::sync::Arc;

use ketch_api::core::Pod;

use super::topology::PodMeta;
use super::{
    ClusterSnapshot, NodeInfo, Placement, Profile, Requests, Runtime, Usage, count_zone,
    place_from, pod_requests, pod_runtime,
};

/// What one pod takes from its node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub requests: Requests,
    /// The pod uses one of the node's Wasm instances.
    pub wasm: bool,
}

impl Charge {
    pub fn of(pod: &Pod) -> Charge {
        match &pod.spec {
            Some(spec) => Charge {
                requests: pod_requests(spec),
                wasm: pod_runtime(spec) == Runtime::Wasm,
            },
            None => Charge::default(),
        }
    }
}

impl Usage {
    /// Adds (`sign` 1) or removes (`sign` -1) one pod's charge.
    pub fn apply(&mut self, c: &Charge, sign: i64) {
        self.cpu_millis += sign * c.requests.cpu_millis;
        self.memory_bytes += sign * c.requests.memory_bytes;
        self.pods += sign;
        if c.wasm {
            self.wasm_instances += sign;
        }
    }

    fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// Whether a pod's charge is confirmed by the pod cache or only assumed by the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Assumed,
    Bound,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    uid: String,
    node: String,
    charge: Charge,
    state: PodState,
    meta: Arc<PodMeta>,
}

/// Nodes and the per-node totals of the pods on them; see the module docs.
///
/// Invariant: for every node, known or not, the usage (`NodeInfo::requested` for a node in the
/// snapshot, `orphans` otherwise) equals the sum of the charges of the entries naming it.
#[derive(Debug, Default)]
pub struct SchedulerCache {
    /// The nodes. While `unsorted`, `nodes` is in insertion order (the index is always right);
    /// [`SchedulerCache::snapshot`] restores the sorted order before anyone places against it.
    snapshot: ClusterSnapshot,
    unsorted: bool,
    /// Pods holding resources, by `namespace/name`.
    pods: HashMap<String, Entry>,
    /// Usage on nodes without a Node object: a pod can be bound before its node registers,
    /// or outlive it.
    orphans: HashMap<String, Usage>,
    /// Where the next [`SchedulerCache::place`] starts checking nodes (see
    /// [`super::NodesToScore`]).
    next_start: usize,
}

fn node_name(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// `Succeeded` or `Failed`: the pod no longer holds resources.
pub fn is_finished(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl SchedulerCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The nodes, sorted by name, with the current totals: what [`super::place`] takes.
    pub fn snapshot(&mut self) -> &ClusterSnapshot {
        if self.unsorted {
            let nodes = std::mem::take(&mut self.snapshot.nodes);
            let pods = std::mem::take(&mut self.snapshot.pods);
            self.snapshot = ClusterSnapshot::from_nodes(nodes);
            self.snapshot.pods = pods;
            self.unsorted = false;
        }
        &self.snapshot
    }

    /// A node with its totals (any order state).
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.snapshot.node(name)
    }

    /// What the pods on `name` request, whether or not the node is known.
    pub fn usage(&self, name: &str) -> Usage {
        match self.snapshot.node(name) {
            Some(n) => n.requested,
            None => self.orphans.get(name).copied().unwrap_or_default(),
        }
    }

    /// The number of pods holding resources (bound or assumed).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Whether the pod at `key` with `uid` is assumed (placed, binding not seen yet).
    pub fn is_assumed(&self, key: &str, uid: &str) -> bool {
        self.pods
            .get(key)
            .is_some_and(|e| e.state == PodState::Assumed && e.uid == uid)
    }

    /// The state and node of the pod at `key`, if it holds resources.
    pub fn pod(&self, key: &str) -> Option<(PodState, &str)> {
        self.pods.get(key).map(|e| (e.state, e.node.as_str()))
    }

    /// Adds or updates a node from its Node object's view (`info.requested` is ignored: the
    /// totals are the cache's). Returns whether anything placement looks at changed.
    pub fn set_node(&mut self, mut info: NodeInfo) -> bool {
        match self.snapshot.index.get(&info.name) {
            Some(&i) => {
                let node = &mut self.snapshot.nodes[i];
                info.requested = node.requested;
                if *node == info {
                    return false;
                }
                count_zone(&mut self.snapshot.zones, node, -1);
                count_zone(&mut self.snapshot.zones, &info, 1);
                *node = info;
                // A node may start or stop offering containers (containerd came up).
                self.snapshot.offers_containers = self
                    .snapshot
                    .nodes
                    .iter()
                    .any(|n| n.offers(Runtime::Container));
            }
            None => {
                info.requested = self.orphans.remove(&info.name).unwrap_or_default();
                count_zone(&mut self.snapshot.zones, &info, 1);
                let i = self.snapshot.nodes.len();
                self.snapshot.index.insert(info.name.clone(), i);
                self.snapshot.nodes.push(info);
                self.unsorted = true;
            }
        }
        true
    }

    /// Removes a node; the pods still bound to it keep counting against its name. Returns
    /// whether it was known.
    pub fn remove_node(&mut self, name: &str) -> bool {
        let Some(i) = self.snapshot.index.remove(name) else {
            return false;
        };
        let node = self.snapshot.nodes.swap_remove(i);
        count_zone(&mut self.snapshot.zones, &node, -1);
        if let Some(moved) = self.snapshot.nodes.get(i) {
            self.snapshot.index.insert(moved.name.clone(), i);
        }
        if !node.requested.is_zero() {
            self.orphans.insert(node.name, node.requested);
        }
        self.unsorted = true;
        true
    }

    /// Applies an added or updated pod from the pod cache. A pod bound to a node and not
    /// finished counts against that node; an unbound pod keeps the assumption made for it
    /// (same uid), if any; anything else holds nothing. Returns whether capacity was freed
    /// somewhere (the pod finished, moved, or shrank), so unschedulable pods deserve a retry.
    pub fn update_pod(&mut self, key: &str, pod: &Pod) -> bool {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let entry = match node_name(pod) {
            Some(node) if !is_finished(pod) => Some(Entry {
                uid: uid.to_string(),
                node: node.to_string(),
                charge: Charge::of(pod),
                state: PodState::Bound,
                meta: self.meta(key, pod),
            }),
            Some(_) => None,
            None if !is_finished(pod) && self.is_assumed(key, uid) => return false,
            None => None,
        };
        self.replace(key, entry)
    }

    /// Applies a deleted pod. Returns whether capacity was freed.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        self.replace(key, None)
    }

    /// Places the pod at `key` ([`place_from`], continuing from where the previous placement
    /// stopped) and assumes it on the chosen node at once.
    pub fn place(&mut self, key: &str, pod: &Pod, profile: Profile) -> Placement {
        let start = self.next_start;
        let snapshot = self.snapshot();
        let total = snapshot.nodes().len();
        let (placement, checked) = place_from(
            pod,
            snapshot,
            profile.scoring,
            start,
            profile.nodes_to_score.feasible_to_find(total),
        );
        self.next_start = (start + checked) % total.max(1);
        if let Placement::Bind(node) = &placement {
            self.assume(key, pod, node);
        }
        placement
    }

    /// Counts `pod` against `node` before its binding is visible. Returns false, changing
    /// nothing, when the pod already holds resources (it is bound or assumed).
    pub fn assume(&mut self, key: &str, pod: &Pod, node: &str) -> bool {
        if self.pods.contains_key(key) {
            return false;
        }
        let entry = Entry {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: node.to_string(),
            charge: Charge::of(pod),
            state: PodState::Assumed,
            meta: Arc::new(PodMeta::of(pod)),
        };
        self.replace(key, Some(entry));
        true
    }

    /// Drops the assumption for the pod at `key` with `uid`, e.g. because its binding failed.
    /// A pod the cache has meanwhile seen bound is left alone. Returns whether anything was
    /// dropped (capacity was freed).
    pub fn forget(&mut self, key: &str, uid: &str) -> bool {
        if !self.is_assumed(key, uid) {
            return false;
        }
        self.replace(key, None)
    }

    /// The entry's [`PodMeta`] for `pod`: the one already held when it still describes the
    /// pod (most updates are status changes), so an update allocates none.
    fn meta(&self, key: &str, pod: &Pod) -> Arc<PodMeta> {
        match self.pods.get(key) {
            Some(e) if e.meta.describes(pod) => e.meta.clone(),
            _ => Arc::new(PodMeta::of(pod)),
        }
    }

    /// Replaces the entry at `key`, moving the totals. Returns whether an old charge was
    /// removed from a node without an equal or larger one replacing it there.
    fn replace(&mut self, key: &str, new: Option<Entry>) -> bool {
        let old = match new {
            Some(new) => self.pods.insert(key.to_string(), new),
            None => self.pods.remove(key),
        };
        let entry = self.pods.get(key);
        let same_place = matches!((&old, entry),
            (Some(o), Some(e)) if o.node == e.node && Arc::ptr_eq(&o.meta, &e.meta));
        if !same_place {
            if let Some(o) = &old {
                self.snapshot.pods.remove(&o.node, &o.meta);
            }
            if let Some(e) = entry {
                self.snapshot.pods.add(&e.node, e.meta.clone());
            }
        }
        let new = self.pods.get(key).map(|e| (e.node.clone(), e.charge));
        if let Some(old) = &old
            && new
                .as_ref()
                .is_some_and(|(n, c)| *n == old.node && *c == old.charge)
        {
            return false;
        }
        let mut freed = false;
        if let Some(old) = old {
            self.charge(&old.node, &old.charge, -1);
            freed = match &new {
                Some((n, c)) => {
                    *n != old.node
                        || c.requests.cpu_millis < old.charge.requests.cpu_millis
                        || c.requests.memory_bytes < old.charge.requests.memory_bytes
                        || (old.charge.wasm && !c.wasm)
                }
                None => true,
            };
        }
        if let Some((node, charge)) = new {
            self.charge(&node, &charge, 1);
        }
        freed
    }

    fn charge(&mut self, node: &str, c: &Charge, sign: i64) {
        match self.snapshot.index.get(node) {
            Some(&i) => self.snapshot.nodes[i].requested.apply(c, sign),
            None => {
                let u = self.orphans.entry(node.to_string()).or_default();
                u.apply(c, sign);
                if u.is_zero() {
                    self.orphans.remove(node);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ketch_api::core::{Container, PodSpec, PodStatus, ResourceRequirements};
    use ketch_api::meta::ObjectMeta;
    use ketch_api::quantity::Quantity;

    use super::*;

    fn node(name: &str) -> NodeInfo {
        let mut n = NodeInfo {
            name: name.into(),
            ready: true,
            ..Default::default()
        };
        n.allocatable.cpu_millis = 4000;
        n.allocatable.memory_bytes = 8 << 30;
        n.set_offers(Runtime::Wasm, true);
        n
    }

    fn pod(name: &str, uid: &str, cpu: &str, image: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    resources: Some(ResourceRequirements {
                        requests: [
                            ("cpu".to_string(), Quantity::new(cpu)),
                            ("memory".to_string(), Quantity::new("1Mi")),
                        ]
                        .into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn bound(mut p: Pod, node: &str) -> Pod {
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        p
    }

    fn with_phase(mut p: Pod, phase: &str) -> Pod {
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        p
    }

    fn cpu(c: &SchedulerCache, node: &str) -> (i64, i64) {
        let u = c.usage(node);
        (u.cpu_millis, u.pods)
    }

    fn cache_with(nodes: &[&str]) -> SchedulerCache {
        let mut c = SchedulerCache::new();
        for n in nodes {
            assert!(c.set_node(node(n)));
        }
        c
    }

    #[test]
    fn bound_pods_count_against_their_node_and_updates_do_not_double_count() {
        let mut c = cache_with(&["a", "b"]);
        let p = bound(pod("p", "u1", "500m", "file:x.wasm"), "a");
        assert!(!c.update_pod("default/p", &p));
        assert!(!c.update_pod("default/p", &p));
        assert_eq!(cpu(&c, "a"), (500, 1));
        assert_eq!(c.usage("a").wasm_instances, 1);
        assert_eq!(cpu(&c, "b"), (0, 0));
        assert_eq!(c.pod("default/p"), Some((PodState::Bound, "a")));
    }

    #[test]
    fn unbound_pods_hold_nothing() {
        let mut c = cache_with(&["a"]);
        c.update_pod("default/p", &pod("p", "u1", "1", "nginx"));
        assert_eq!(c.pod_count(), 0);
        assert_eq!(cpu(&c, "a"), (0, 0));
    }

    #[test]
    fn an_assumed_pod_counts_at_once_and_becomes_bound_when_the_binding_is_seen() {
        let mut c = cache_with(&["a", "b"]);
        let p = pod("p", "u1", "1", "nginx");
        // The pod cache shows the unbound pod (created), then we place it.
        c.update_pod("default/p", &p);
        assert!(c.assume("default/p", &p, "b"));
        assert!(c.is_assumed("default/p", "u1"));
        assert_eq!(cpu(&c, "b"), (1000, 1));
        // A late update of the unbound pod (e.g. its status) keeps the assumption.
        assert!(!c.update_pod("default/p", &p));
        assert_eq!(cpu(&c, "b"), (1000, 1));
        // The binding arrives: same node, same totals, now bound.
        assert!(!c.update_pod("default/p", &bound(p.clone(), "b")));
        assert_eq!(cpu(&c, "b"), (1000, 1));
        assert_eq!(c.pod("default/p"), Some((PodState::Bound, "b")));
        assert!(!c.is_assumed("default/p", "u1"));
        // Forgetting a pod that is bound by now changes nothing.
        assert!(!c.forget("default/p", "u1"));
        assert_eq!(cpu(&c, "b"), (1000, 1));
        // Assuming a pod that already holds resources is refused.
        assert!(!c.assume("default/p", &p, "a"));
        assert_eq!(cpu(&c, "a"), (0, 0));
    }

    #[test]
    fn a_pod_bound_elsewhere_than_assumed_moves_its_charge() {
        let mut c = cache_with(&["a", "b"]);
        let p = pod("p", "u1", "1", "nginx");
        c.assume("default/p", &p, "a");
        // Someone else bound it to b first: a is freed.
        assert!(c.update_pod("default/p", &bound(p, "b")));
        assert_eq!(cpu(&c, "a"), (0, 0));
        assert_eq!(cpu(&c, "b"), (1000, 1));
    }

    #[test]
    fn a_failed_binding_is_forgotten_and_frees_the_node() {
        let mut c = cache_with(&["a"]);
        let p = pod("p", "u1", "1", "nginx");
        c.assume("default/p", &p, "a");
        // Only the assumption for this uid is dropped.
        assert!(!c.forget("default/p", "other-uid"));
        assert_eq!(cpu(&c, "a"), (1000, 1));
        assert!(c.forget("default/p", "u1"));
        assert_eq!(cpu(&c, "a"), (0, 0));
        assert_eq!(c.pod_count(), 0);
        assert!(!c.forget("default/p", "u1"));
    }

    #[test]
    fn deleted_and_finished_pods_free_their_node() {
        let mut c = cache_with(&["a"]);
        c.update_pod("default/p", &bound(pod("p", "u1", "1", "nginx"), "a"));
        c.update_pod("default/q", &bound(pod("q", "u2", "2", "nginx"), "a"));
        assert_eq!(cpu(&c, "a"), (3000, 2));
        assert!(c.remove_pod("default/p"));
        assert_eq!(cpu(&c, "a"), (2000, 1));
        assert!(!c.remove_pod("default/p"));
        let done = with_phase(bound(pod("q", "u2", "2", "nginx"), "a"), "Succeeded");
        assert!(c.update_pod("default/q", &done));
        assert_eq!(cpu(&c, "a"), (0, 0));
        // A finished pod never counts again, even when updated.
        assert!(!c.update_pod("default/q", &done));
        assert_eq!(c.pod_count(), 0);
    }

    #[test]
    fn an_assumed_pod_deleted_before_its_binding_is_seen_frees_the_node() {
        let mut c = cache_with(&["a"]);
        let p = pod("p", "u1", "1", "nginx");
        c.assume("default/p", &p, "a");
        assert!(c.remove_pod("default/p"));
        assert_eq!(cpu(&c, "a"), (0, 0));
        // The binding result arrives late and is forgotten: nothing to undo.
        assert!(!c.forget("default/p", "u1"));
    }

    #[test]
    fn a_pod_replaced_under_the_same_name_drops_the_old_assumption() {
        let mut c = cache_with(&["a"]);
        c.assume("default/p", &pod("p", "u1", "1", "nginx"), "a");
        // Recreated with a new uid, not bound yet.
        assert!(c.update_pod("default/p", &pod("p", "u2", "1", "nginx")));
        assert_eq!(cpu(&c, "a"), (0, 0));
    }

    #[test]
    fn pods_on_unknown_nodes_are_kept_until_the_node_registers() {
        let mut c = cache_with(&["a"]);
        c.update_pod("default/p", &bound(pod("p", "u1", "1", "nginx"), "late"));
        assert_eq!(cpu(&c, "late"), (1000, 1));
        assert!(c.set_node(node("late")));
        assert_eq!(c.node("late").unwrap().requested.cpu_millis, 1000);
        // The node goes away; its pods keep counting against the name.
        assert!(c.remove_node("late"));
        assert!(c.node("late").is_none());
        assert_eq!(cpu(&c, "late"), (1000, 1));
        assert!(c.remove_pod("default/p"));
        assert_eq!(cpu(&c, "late"), (0, 0));
        assert!(c.orphans.is_empty());
    }

    #[test]
    fn node_updates_keep_the_totals_and_report_only_real_changes() {
        let mut c = cache_with(&["b", "a"]);
        c.update_pod("default/p", &bound(pod("p", "u1", "1", "nginx"), "a"));
        assert!(!c.set_node(node("a")), "nothing changed");
        let mut cordoned = node("a");
        cordoned.unschedulable = true;
        assert!(c.set_node(cordoned));
        let a = c.node("a").unwrap();
        assert!(a.unschedulable);
        assert_eq!(a.requested.cpu_millis, 1000);
    }

    #[test]
    fn the_snapshot_is_sorted_by_name_after_nodes_come_and_go() {
        let mut c = cache_with(&["c", "a", "d", "b"]);
        c.remove_node("a");
        c.set_node(node("e"));
        c.update_pod("default/p", &bound(pod("p", "u1", "1", "nginx"), "d"));
        let snap = c.snapshot();
        let names: Vec<&str> = snap.nodes().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["b", "c", "d", "e"]);
        for n in snap.nodes() {
            assert_eq!(snap.node(&n.name).unwrap().name, n.name);
        }
        assert_eq!(snap.node("d").unwrap().requested.cpu_millis, 1000);
    }

    #[test]
    fn totals_match_a_rebuild_from_scratch_after_a_mixed_history() {
        let names = ["n0", "n1", "n2"];
        let mut c = cache_with(&names);
        let mut live: HashMap<String, Pod> = HashMap::new();
        for i in 0..60 {
            let key = format!("default/p{i}");
            let p = pod(&format!("p{i}"), &format!("u{i}"), "100m", "file:a.wasm");
            let node = names[i % 3];
            match i % 5 {
                // Assumed, then seen bound.
                0 | 1 => {
                    c.assume(&key, &p, node);
                    let b = bound(p, node);
                    c.update_pod(&key, &b);
                    live.insert(key, b);
                }
                // Assumed, binding failed.
                2 => {
                    c.assume(&key, &p, node);
                    c.forget(&key, &format!("u{i}"));
                }
                // Bound, then deleted.
                3 => {
                    c.update_pod(&key, &bound(p, node));
                    c.remove_pod(&key);
                }
                // Bound, then finished.
                _ => {
                    c.update_pod(&key, &bound(p.clone(), node));
                    c.update_pod(&key, &with_phase(bound(p, node), "Failed"));
                }
            }
        }
        let mut rebuilt = ClusterSnapshot::from_nodes(names.iter().map(|n| node(n)).collect());
        for p in live.values() {
            let n = p.spec.as_ref().unwrap().node_name.clone().unwrap();
            rebuilt.assume(p, &n);
        }
        for n in names {
            assert_eq!(c.usage(n), rebuilt.node(n).unwrap().requested, "{n}");
        }
        assert_eq!(c.pod_count(), live.len());
        // What spreading sees: one record per pod holding resources, on its node.
        assert_eq!(c.snapshot().pods().len(), live.len());
        for n in names {
            let mut have: Vec<_> = c.snapshot().pods().pods_on(n).cloned().collect();
            let mut want: Vec<_> = rebuilt.pods().pods_on(n).cloned().collect();
            have.sort_by(|a, b| a.labels.cmp(&b.labels));
            want.sort_by(|a, b| a.labels.cmp(&b.labels));
            assert_eq!(have, want, "{n}");
        }
    }

    #[test]
    fn placements_continue_where_the_last_stopped_and_assume_at_once() {
        let mut c = SchedulerCache::new();
        for i in 0..200 {
            c.set_node(node(&format!("n{i:03}")));
        }
        let profile = Profile {
            nodes_to_score: crate::scheduler::NodesToScore::percentage(50),
            ..Profile::default()
        };
        let mut placed = Vec::new();
        for i in 0..4 {
            let p = pod(&format!("p{i}"), &format!("u{i}"), "1", "file:/a.wasm");
            match c.place(&format!("default/p{i}"), &p, profile) {
                Placement::Bind(n) => placed.push(n),
                other => panic!("{other:?}"),
            }
        }
        // Each placement scores 100 of the 200 empty nodes, alternating halves; once a node
        // in a half holds a pod, bin-packing prefers it.
        assert_eq!(placed, ["n000", "n100", "n000", "n100"]);
        assert_eq!(cpu(&c, "n000"), (2000, 2));
        assert!(c.is_assumed("default/p2", "u2"));
    }
}

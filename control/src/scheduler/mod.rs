//! Pod placement as a pure function: filter the nodes of a [`ClusterSnapshot`] for one pod,
//! score the survivors, pick one.
//!
//! Nothing here performs IO. The scheduler loop (`crate::runner::scheduler`) keeps a
//! [`cache::SchedulerCache`] current from pod and node changes and from its own placements,
//! places each pod with [`cache::SchedulerCache::place`] ([`place_from`] against the cache's
//! snapshot), and only then writes the bindings. Each placement is
//! assumed in the cache at once, so pods placed one after another never double-book the
//! capacity one of them just took, and replicas placed back to back spread. [`schedule_batch`]
//! does the same for a plain [`ClusterSnapshot`] (with [`ClusterSnapshot::assume`] /
//! [`ClusterSnapshot::forget`]).
//!
//! Filters, in the fixed order used to attribute a failure to one reason per node:
//! node Ready, node schedulable, runtime offered, `nodeSelector` and required node affinity
//! (`affinity.rs`), `NoSchedule`/`NoExecute` taints tolerated, pod count, cpu, memory, Wasm
//! instance count, `DoNotSchedule` topology spread constraints (`topology.rs`), pod affinity,
//! pod anti-affinity and the anti-affinity of the pods already placed (`interpod.rs`).
//!
//! Scores, each normalized to 0..100 and added with kube-scheduler's default weights:
//!
//! `score = 1 · fit + 2 · spread + 2 · node affinity + 2 · pod affinity`
//!
//! - fit (NodeResourcesFit): `100 · u` with [`ScoringStrategy::MostAllocated`] (bin-packing,
//!   the default) or `100 · (1 − u)` with [`ScoringStrategy::LeastAllocated`], where `u` is
//!   the average of the cpu and memory fractions the node would have in use after placement;
//! - spread (PodTopologySpread): the pod's `ScheduleAnyway` constraints, or, for a pod without
//!   constraints that has a controller owner, the default spreading of that owner's replicas
//!   over nodes and zones (formula in `topology.rs`);
//! - node affinity: the weights of the matching preferred terms, over the largest sum;
//! - pod affinity (InterPodAffinity): preferred terms, weight times matching pods in the
//!   node's domain, min-max normalized (`interpod.rs`).
//!
//! A score equal on every node cannot change the choice, so a pod with none of the last three
//! (a bare pod, or the first replica of its owner, on a cluster without zones) is placed in one
//! pass on the fit alone, as cheaply as before spreading existed. Different apps therefore
//! still pack together: spreading only pushes a pod away from its own owner's replicas.
//! Ties go to the lexically smallest node name so a placement is reproducible. On clusters of
//! 100 nodes or more, a placement scores only the first share of nodes found to fit
//! ([`NodesToScore`]), starting where the previous one stopped.

mod affinity;
pub mod cache;
pub mod interpod;
pub mod topology;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ketch_api::core::{Container, Node, Pod, PodSpec, Taint, Toleration};
use ketch_api::quantity::Quantity;
use ketch_api::wellknown;

use affinity::NodeAffinityFacts;
use interpod::InterPod;
use topology::{PodMeta, PodTopology, Spread};

/// cpu and memory a pod asks for, summed over its containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

pub use ketch_api::runtime::{
    Runtime, RuntimeChoice, WASM_RUNTIME_CLASS, is_local_wasm_reference, placement_runtime,
    pod_runtime, pod_runtime_choice, pod_runtime_with,
};

/// A runtime's bit in a node's set of offered runtimes.
fn runtime_bit(r: Runtime) -> u8 {
    match r {
        Runtime::Wasm => 1,
        Runtime::Container => 2,
    }
}

/// How surviving nodes are ranked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScoringStrategy {
    /// Prefer the fullest node that fits: packs pods densely and leaves whole nodes free.
    #[default]
    MostAllocated,
    /// Prefer the emptiest node: spreads load.
    LeastAllocated,
}

/// The scheduler's settings (the parts of a kube-scheduler profile ketch has).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Profile {
    pub scoring: ScoringStrategy,
    pub nodes_to_score: NodesToScore,
}

/// The scheduling decision for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Bind(String),
    /// No node fits. `message` has Kubernetes' wording, e.g.
    /// `0/3 nodes are available: 2 Insufficient memory, 1 node(s) had untolerated taint {a: b}.`
    Unschedulable {
        message: String,
    },
}

/// Sum of the containers' requests, where a resource with a limit but no request requests its
/// limit (as Kubernetes defaults it). Init containers run one at a time before the others, so
/// the pod needs the larger of the app containers' sum and the largest init container.
///
/// Quantities are validated at admission; one that still fails to parse counts as zero rather
/// than making the pod unschedulable forever.
pub fn pod_requests(spec: &PodSpec) -> Requests {
    let mut sum = Requests::default();
    for c in &spec.containers {
        let r = container_requests(c);
        sum.cpu_millis = sum.cpu_millis.saturating_add(r.cpu_millis);
        sum.memory_bytes = sum.memory_bytes.saturating_add(r.memory_bytes);
    }
    for c in &spec.init_containers {
        let r = container_requests(c);
        sum.cpu_millis = sum.cpu_millis.max(r.cpu_millis);
        sum.memory_bytes = sum.memory_bytes.max(r.memory_bytes);
    }
    sum
}

fn container_requests(c: &Container) -> Requests {
    let Some(res) = &c.resources else {
        return Requests::default();
    };
    let get = |key: &str, f: fn(&Quantity) -> Option<i64>| {
        res.requests
            .get(key)
            .or_else(|| res.limits.get(key))
            .and_then(f)
            .unwrap_or(0)
            .max(0)
    };
    Requests {
        cpu_millis: get("cpu", |q| q.millis().ok()),
        memory_bytes: get("memory", |q| q.value().ok()),
    }
}

/// Whether one toleration tolerates one taint, with Kubernetes' rules: an empty effect matches
/// every effect, an empty key with `Exists` matches every key, `Equal` (the default operator)
/// compares values.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = t.key.as_deref()
        && !key.is_empty()
        && key != taint.key
    {
        return false;
    }
    match t.operator.as_deref() {
        Some("Exists") => true,
        None | Some("") | Some("Equal") => {
            t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        Some(_) => false,
    }
}

fn blocks_scheduling(taint: &Taint) -> bool {
    taint.effect == "NoSchedule" || taint.effect == "NoExecute"
}

/// What a node can hold; `None` means the node declares no limit for that count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocatable {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    /// `allocatable.pods`.
    pub pods: Option<i64>,
    /// `allocatable["ketch.dev/wasm-instances"]`.
    pub wasm_instances: Option<i64>,
}

/// What the pods bound to a node already request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub pods: i64,
    pub wasm_instances: i64,
}

/// The scheduler's view of one node: what it offers and what is already taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub allocatable: Allocatable,
    pub requested: Usage,
    pub labels: BTreeMap<String, String>,
    /// Only the taints that filter (`NoSchedule`, `NoExecute`); `PreferNoSchedule` is not
    /// scored yet.
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    runtimes: u8,
}

impl NodeInfo {
    /// Reads a Node object. Requests start at zero; see [`ClusterSnapshot::new`].
    pub fn from_node(node: &Node) -> Self {
        let status = node.status.as_ref();
        let alloc = status.map(|s| &s.allocatable);
        let quantity =
            |key: &str, f: fn(&Quantity) -> Option<i64>| alloc.and_then(|a| a.get(key)).and_then(f);
        let spec = node.spec.as_ref();
        let mut runtimes = 0;
        for h in status.map(|s| s.runtime_handlers.as_slice()).unwrap_or(&[]) {
            for rt in [Runtime::Wasm, Runtime::Container] {
                if h.name == rt.handler_name() {
                    runtimes |= runtime_bit(rt);
                }
            }
        }
        NodeInfo {
            name: node.metadata.name().to_string(),
            allocatable: Allocatable {
                cpu_millis: quantity("cpu", |q| q.millis().ok()).unwrap_or(0),
                memory_bytes: quantity("memory", |q| q.value().ok()).unwrap_or(0),
                pods: quantity("pods", |q| q.value().ok()),
                wasm_instances: quantity(wellknown::WASM_INSTANCES, |q| q.value().ok()),
            },
            requested: Usage::default(),
            labels: node.metadata.labels.clone(),
            taints: spec
                .map(|s| {
                    s.taints
                        .iter()
                        .filter(|t| blocks_scheduling(t))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            ready: status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            }),
            runtimes,
        }
    }

    /// Whether the node lists `runtime` in `status.runtimeHandlers`. A node listing none
    /// offers none: the agent must say what it can run.
    pub fn offers(&self, runtime: Runtime) -> bool {
        self.runtimes & runtime_bit(runtime) != 0
    }

    /// Marks `runtime` as offered (for snapshots built without Node objects).
    pub fn set_offers(&mut self, runtime: Runtime, offered: bool) {
        if offered {
            self.runtimes |= runtime_bit(runtime);
        } else {
            self.runtimes &= !runtime_bit(runtime);
        }
    }

    fn add(&mut self, pod: &PodFacts, sign: i64) {
        let charge = cache::Charge {
            requests: pod.requests,
            wasm: pod.runtime == Runtime::Wasm,
        };
        self.requested.apply(&charge, sign);
    }

    /// The first filter this node fails for the pod, in the documented order.
    // Inlined into the placement loop, where a call per node showed (~20 % of a placement
    // that checks every node, in the scheduler bench).
    #[inline(always)]
    fn check(&self, pod: &PodFacts) -> Result<(), Reason> {
        if !self.ready {
            return Err(Reason::NotReady);
        }
        if self.unschedulable {
            return Err(Reason::Unschedulable);
        }
        if !self.offers(pod.runtime) {
            return Err(Reason::Runtime(pod.runtime));
        }
        if !pod.matches_node_labels(self) {
            return Err(Reason::NodeSelector);
        }
        // The emptiness guard keeps the common case (no taints) cheap: this runs once per
        // node per pod.
        if !self.taints.is_empty() {
            for (i, taint) in self.taints.iter().enumerate() {
                if !pod.tolerations.iter().any(|t| tolerates(t, taint)) {
                    return Err(Reason::Taint(i));
                }
            }
        }
        let (a, u, r) = (&self.allocatable, &self.requested, &pod.requests);
        if a.pods.is_some_and(|max| u.pods + 1 > max) {
            return Err(Reason::TooManyPods);
        }
        // Like Kubernetes, a zero request fits even an overcommitted node.
        if r.cpu_millis > 0 && u.cpu_millis + r.cpu_millis > a.cpu_millis {
            return Err(Reason::Cpu);
        }
        if r.memory_bytes > 0 && u.memory_bytes + r.memory_bytes > a.memory_bytes {
            return Err(Reason::Memory);
        }
        if pod.runtime == Runtime::Wasm
            && a.wasm_instances
                .is_some_and(|max| u.wasm_instances + 1 > max)
        {
            return Err(Reason::WasmInstances);
        }
        Ok(())
    }

    /// Average fraction of cpu and memory in use once the pod is added, in `[0, 1]` for a
    /// node that fits. A resource the node has none of counts as empty.
    fn utilization_after(&self, pod: &PodFacts) -> f64 {
        fn frac(used: i64, alloc: i64) -> f64 {
            if alloc <= 0 {
                0.0
            } else {
                used as f64 / alloc as f64
            }
        }
        let cpu = frac(
            self.requested.cpu_millis + pod.requests.cpu_millis,
            self.allocatable.cpu_millis,
        );
        let mem = frac(
            self.requested.memory_bytes + pod.requests.memory_bytes,
            self.allocatable.memory_bytes,
        );
        (cpu + mem) / 2.0
    }
}

/// Why a node was filtered out; variants are in filter order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    NotReady,
    Unschedulable,
    Runtime(Runtime),
    NodeSelector,
    /// Index into the node's `taints`.
    Taint(usize),
    TooManyPods,
    Cpu,
    Memory,
    WasmInstances,
    /// A `DoNotSchedule` topology spread constraint would be violated.
    Spread,
    /// The node lacks the topology key of a `DoNotSchedule` constraint.
    SpreadMissingLabel,
    PodAffinity,
    PodAntiAffinity,
    /// A pod already placed has an anti-affinity term against this one.
    ExistingAntiAffinity,
}

impl Reason {
    fn describe(self, node: &NodeInfo) -> String {
        match self {
            Reason::NotReady => "node(s) were not ready".into(),
            Reason::Unschedulable => "node(s) were unschedulable".into(),
            Reason::Runtime(rt) => format!("node(s) didn't offer the {rt} runtime"),
            Reason::NodeSelector => "node(s) didn't match Pod's node affinity/selector".into(),
            Reason::Taint(i) => {
                let t = &node.taints[i];
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                )
            }
            Reason::TooManyPods => "Too many pods".into(),
            Reason::Cpu => "Insufficient cpu".into(),
            Reason::Memory => "Insufficient memory".into(),
            Reason::WasmInstances => format!("Insufficient {}", wellknown::WASM_INSTANCES),
            Reason::Spread => "node(s) didn't match pod topology spread constraints".into(),
            Reason::SpreadMissingLabel => {
                "node(s) didn't match pod topology spread constraints (missing required label)"
                    .into()
            }
            Reason::PodAffinity => "node(s) didn't match pod affinity rules".into(),
            Reason::PodAntiAffinity => "node(s) didn't match pod anti-affinity rules".into(),
            Reason::ExistingAntiAffinity => {
                "node(s) didn't satisfy existing pods anti-affinity rules".into()
            }
        }
    }
}

/// What `place` needs from a pod, computed once per call.
struct PodFacts<'a> {
    requests: Requests,
    runtime: Runtime,
    node_selector: &'a BTreeMap<String, String>,
    tolerations: &'a [Toleration],
    node_affinity: Option<NodeAffinityFacts>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl<'a> PodFacts<'a> {
    /// `offers_containers`: some node of the cluster offers Linux containers (decides where a
    /// Pod whose registry images are resolved by the node goes; see [`placement_runtime`]).
    fn of(pod: &'a Pod, offers_containers: bool) -> Self {
        match &pod.spec {
            Some(spec) => PodFacts {
                requests: pod_requests(spec),
                runtime: placement_runtime(pod_runtime_choice(spec), offers_containers),
                node_selector: &spec.node_selector,
                tolerations: &spec.tolerations,
                node_affinity: spec
                    .affinity
                    .as_ref()
                    .and_then(|a| a.node_affinity.as_ref())
                    .map(NodeAffinityFacts::of),
            },
            None => PodFacts {
                requests: Requests::default(),
                runtime: Runtime::Container,
                node_selector: &NO_LABELS,
                tolerations: &[],
                node_affinity: None,
            },
        }
    }

    /// The pod's `nodeSelector` and required node affinity hold on `node` (kube-scheduler's
    /// NodeAffinity filter).
    #[inline(always)]
    fn matches_node_labels(&self, node: &NodeInfo) -> bool {
        // The emptiness guards keep the common case (neither set) cheap: this runs once per
        // node per pod.
        if !self.node_selector.is_empty()
            && self
                .node_selector
                .iter()
                .any(|(k, v)| node.labels.get(k) != Some(v))
        {
            return false;
        }
        self.node_affinity
            .as_ref()
            .is_none_or(|a| a.required_match(node))
    }
}

/// All nodes with what is already requested on each, sorted by name.
///
/// Invariant: `nodes` is sorted by name and `index` maps every name to its position, so a tie
/// in score is broken by position alone, without comparing strings in the hot loop.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Some node offers the container runtime.
    offers_containers: bool,
    /// The pods counted against the nodes, for spreading.
    pods: PodTopology,
    /// How many nodes each `topology.kubernetes.io/zone` has.
    zones: BTreeMap<String, usize>,
}

impl ClusterSnapshot {
    /// Builds the snapshot from Node objects and the pods already bound (`spec.nodeName` set).
    /// Finished pods (`Succeeded`, `Failed`) free their resources; terminating pods still hold
    /// theirs until they are gone, as in Kubernetes. Pods bound to unknown nodes are ignored.
    pub fn new(nodes: &[Node], pods: &[Pod]) -> Self {
        let mut snap = Self::from_nodes(nodes.iter().map(NodeInfo::from_node).collect());
        for pod in pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            snap.assume(pod, node);
        }
        snap
    }

    /// Builds the snapshot from prepared node infos (their `requested` is kept).
    pub fn from_nodes(mut nodes: Vec<NodeInfo>) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let offers_containers = nodes.iter().any(|n| n.offers(Runtime::Container));
        let mut zones = BTreeMap::new();
        for n in &nodes {
            count_zone(&mut zones, n, 1);
        }
        ClusterSnapshot {
            nodes,
            index,
            offers_containers,
            pods: PodTopology::default(),
            zones,
        }
    }

    /// The pods counted against the nodes (by node name).
    pub fn pods(&self) -> &PodTopology {
        &self.pods
    }

    /// The nodes, sorted by name.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Counts `pod` against `node` (after a placement, before its binding is observed).
    /// Returns false, changing nothing, when the node is not in the snapshot.
    pub fn assume(&mut self, pod: &Pod, node: &str) -> bool {
        self.adjust(pod, node, 1)
    }

    /// Undoes [`ClusterSnapshot::assume`], e.g. when writing the binding failed.
    pub fn forget(&mut self, pod: &Pod, node: &str) -> bool {
        self.adjust(pod, node, -1)
    }

    fn adjust(&mut self, pod: &Pod, node: &str, sign: i64) -> bool {
        match self.index.get(node) {
            Some(&i) => {
                self.nodes[i].add(&PodFacts::of(pod, self.offers_containers), sign);
                let meta = PodMeta::of(pod);
                if sign > 0 {
                    self.pods.add(node, Arc::new(meta));
                } else {
                    self.pods.remove(node, &meta);
                }
                true
            }
            None => false,
        }
    }
}

/// Adds (`sign` 1) or removes (`sign` -1) `node` from the count of nodes in its zone.
fn count_zone(zones: &mut BTreeMap<String, usize>, node: &NodeInfo, sign: isize) {
    let Some(z) = node.labels.get(wellknown::LABEL_ZONE) else {
        return;
    };
    let n = zones.entry(z.clone()).or_default();
    *n = n.saturating_add_signed(sign);
    if *n == 0 {
        zones.remove(z);
    }
}

/// How many nodes a placement looks at: kube-scheduler's `percentageOfNodesToScore`.
///
/// On a large cluster, checking and scoring every node for every pod costs more than the
/// better choice is worth. A placement therefore stops once it has found this share of the
/// nodes feasible, starting where the previous placement stopped (see [`place_from`]), so
/// every node is still considered in turn. Clusters under [`MIN_FEASIBLE_NODES_TO_FIND`]
/// nodes are always searched whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodesToScore {
    /// 1..=100; 0 means adaptive: 50 % minus 1 % per 125 nodes, at least 5 %, which is
    /// kube-scheduler's default (10 % at 5,000 nodes).
    percentage: u8,
}

/// Below this many nodes, or feasible nodes to find, sampling never applies.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this.
const MIN_ADAPTIVE_PERCENTAGE: usize = 5;

impl NodesToScore {
    /// kube-scheduler's default: adaptive.
    pub const ADAPTIVE: NodesToScore = NodesToScore { percentage: 0 };
    /// Every node, for every pod.
    pub const ALL: NodesToScore = NodesToScore { percentage: 100 };

    /// `percentage` of the nodes (0: adaptive); values above 100 mean 100.
    pub fn percentage(percentage: u8) -> Self {
        NodesToScore {
            percentage: percentage.min(100),
        }
    }

    /// How many feasible nodes a placement among `total` nodes looks for before it stops.
    pub fn feasible_to_find(self, total: usize) -> usize {
        if total < MIN_FEASIBLE_NODES_TO_FIND || self.percentage == 100 {
            return total;
        }
        let pct = match self.percentage {
            0 => 50usize
                .saturating_sub(total / 125)
                .max(MIN_ADAPTIVE_PERCENTAGE),
            p => usize::from(p),
        };
        (total * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }
}

/// Chooses a node for `pod` among all nodes, or explains why none fits.
///
/// `spec.nodeName` is not consulted: callers pass pods that still need a node. Cost is one pass
/// over the nodes that allocates only the returned name; an unschedulable pod costs a second
/// pass that builds the message.
pub fn place(pod: &Pod, nodes: &ClusterSnapshot, strategy: ScoringStrategy) -> Placement {
    place_from(pod, nodes, strategy, 0, usize::MAX).0
}

/// Like [`place`], but checks nodes from position `start` (wrapping around) and scores only
/// the first `feasible_to_find` nodes that fit ([`NodesToScore::feasible_to_find`]). Returns
/// the placement and how many nodes were checked, which the caller adds to `start` for the
/// next pod, as kube-scheduler does. Ties in score go to the smallest node name among those
/// scored. A pod that fits nowhere was checked against every node, so its message counts all
/// of them.
pub fn place_from(
    pod: &Pod,
    nodes: &ClusterSnapshot,
    strategy: ScoringStrategy,
    start: usize,
    feasible_to_find: usize,
) -> (Placement, usize) {
    let facts = PodFacts::of(pod, nodes.offers_containers);
    let spread = Spread::prepare(pod, &facts, nodes);
    let interpod = InterPod::prepare(pod, nodes);
    let rules = Rules {
        facts: &facts,
        spread: &spread,
        interpod: &interpod,
    };
    let most = strategy == ScoringStrategy::MostAllocated;
    let total = nodes.nodes.len();
    let start = if total == 0 { 0 } else { start % total };
    // Positions start..total, then 0..start.
    let order = (start..total).chain(0..start);
    // Only a score that can differ between nodes needs the second pass, and only filters on
    // other pods need their check; a pod with neither (a bare pod, its owner's first
    // replica) takes the plain loop, which stays as tight as it was before spreading
    // existed (measured: one loop with the extra branches cost ~30 % in the scheduler bench).
    let extra = spread.scores()
        || spread.filters()
        || interpod.scores()
        || interpod.filters()
        || facts.node_affinity.as_ref().is_some_and(|a| a.scores());
    let (best, checked) = if extra {
        scan_scored(&rules, nodes, most, order, feasible_to_find)
    } else {
        scan_fit(&facts, nodes, most, order, feasible_to_find)
    };
    let placement = match nodes.nodes.get(best) {
        Some(node) => Placement::Bind(node.name.clone()),
        None => Placement::Unschedulable {
            message: unschedulable_message(&rules, nodes),
        },
    };
    (placement, checked)
}

/// One pass in `order` over the nodes, stopping once `feasible_to_find` fit, keeping the
/// fittest by the fit score alone. Returns the best position (`usize::MAX`: none) and how
/// many nodes were checked.
fn scan_fit(
    facts: &PodFacts,
    nodes: &ClusterSnapshot,
    most: bool,
    order: impl Iterator<Item = usize>,
    feasible_to_find: usize,
) -> (usize, usize) {
    let mut best = usize::MAX;
    let mut best_score = f64::NEG_INFINITY;
    let mut feasible = 0;
    let mut checked = 0;
    for i in order {
        if feasible >= feasible_to_find {
            break;
        }
        checked += 1;
        let node = &nodes.nodes[i];
        if node.check(facts).is_err() {
            continue;
        }
        feasible += 1;
        let u = node.utilization_after(facts);
        let score = if most { u } else { -u };
        // On a tie the smaller position, which is the smaller name, wins.
        if best == usize::MAX || score > best_score || (score == best_score && i < best) {
            best = i;
            best_score = score;
        }
    }
    (best, checked)
}

/// Like [`scan_fit`], with every filter, collecting the feasible nodes to score them with
/// every plugin afterwards ([`Rules::best_of`]).
fn scan_scored(
    rules: &Rules,
    nodes: &ClusterSnapshot,
    most: bool,
    order: impl Iterator<Item = usize>,
    feasible_to_find: usize,
) -> (usize, usize) {
    let mut candidates: Vec<(usize, f64)> = Vec::new();
    let mut checked = 0;
    for i in order {
        if candidates.len() >= feasible_to_find {
            break;
        }
        checked += 1;
        let node = &nodes.nodes[i];
        if rules.check(node).is_err() {
            continue;
        }
        let u = node.utilization_after(rules.facts);
        candidates.push((i, if most { u } else { 1.0 - u }));
    }
    let best = if candidates.is_empty() {
        usize::MAX
    } else {
        rules.best_of(&candidates, nodes)
    };
    (best, checked)
}

/// What one placement filters and scores by, prepared from the pod and the snapshot.
struct Rules<'r, 'a> {
    facts: &'r PodFacts<'a>,
    spread: &'r Spread<'a>,
    interpod: &'r InterPod<'a>,
}

impl Rules<'_, '_> {
    /// Every filter, in order: the node's own, the spread constraints, pod (anti-)affinity.
    fn check(&self, node: &NodeInfo) -> Result<(), Reason> {
        node.check(self.facts)?;
        self.check_pods(node)
    }

    /// The filters that look at other pods.
    fn check_pods(&self, node: &NodeInfo) -> Result<(), Reason> {
        self.spread.check(node)?;
        self.interpod.check(node)
    }
}

/// The weights of the scores added up, as kube-scheduler's default profile has them.
const FIT_WEIGHT: f64 = 1.0;
const SPREAD_WEIGHT: f64 = 2.0;
const NODE_AFFINITY_WEIGHT: f64 = 2.0;
const INTER_POD_WEIGHT: f64 = 2.0;

impl Rules<'_, '_> {
    /// The position of the best of `candidates` (position, fit in 0..1, higher better), scored
    /// with every plugin (see the module docs). Ties go to the smallest position.
    fn best_of(&self, candidates: &[(usize, f64)], nodes: &ClusterSnapshot) -> usize {
        let (facts, spread) = (self.facts, self.spread);
        let mut total: Vec<f64> = candidates
            .iter()
            .map(|&(_, fit)| FIT_WEIGHT * 100.0 * fit)
            .collect();
        if spread.scores() {
            let raw = spread.raws(candidates, nodes);
            for (t, s) in total.iter_mut().zip(topology::normalize_spread(&raw)) {
                *t += SPREAD_WEIGHT * s;
            }
        }
        if let Some(a) = facts.node_affinity.as_ref().filter(|a| a.scores()) {
            let raw: Vec<f64> = candidates
                .iter()
                .map(|&(i, _)| a.raw(&nodes.nodes[i]))
                .collect();
            for (t, s) in total.iter_mut().zip(affinity::normalize_by_max(&raw)) {
                *t += NODE_AFFINITY_WEIGHT * s;
            }
        }
        if self.interpod.scores() {
            let raw: Vec<f64> = candidates
                .iter()
                .map(|&(i, _)| self.interpod.raw(&nodes.nodes[i]))
                .collect();
            for (t, s) in total.iter_mut().zip(interpod::normalize_min_max(&raw)) {
                *t += INTER_POD_WEIGHT * s;
            }
        }
        let mut best = (usize::MAX, f64::NEG_INFINITY);
        for (&(i, _), &score) in candidates.iter().zip(&total) {
            if best.0 == usize::MAX || score > best.1 || (score == best.1 && i < best.0) {
                best = (i, score);
            }
        }
        best.0
    }
}

fn unschedulable_message(rules: &Rules, snap: &ClusterSnapshot) -> String {
    let total = snap.nodes.len();
    if total == 0 {
        return "0/0 nodes are available: no nodes available to schedule pods.".into();
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for node in &snap.nodes {
        if let Err(reason) = rules.check(node) {
            *counts.entry(reason.describe(node)).or_default() += 1;
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

/// The `namespace/name` key used in batch results.
pub fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace(), pod.metadata.name())
}

/// Places pods in order against one snapshot, assuming each placement before the next, so the
/// result never overcommits a node. The snapshot is left with all placements assumed.
pub fn schedule_batch(
    pods: &[Pod],
    snapshot: &mut ClusterSnapshot,
    strategy: ScoringStrategy,
) -> Vec<(String, Placement)> {
    pods.iter()
        .map(|pod| {
            let placement = place(pod, snapshot, strategy);
            if let Placement::Bind(node) = &placement {
                snapshot.assume(pod, node);
            }
            (pod_key(pod), placement)
        })
        .collect()
}

#[cfg(test)]
mod spread_tests;
#[cfg(test)]
mod tests {
    use super::*;
    use ketch_api::core::{
        NodeCondition, NodeRuntimeHandler, NodeSpec, NodeStatus, ResourceRequirements,
    };
    use ketch_api::meta::ObjectMeta;

    pub(super) fn node(name: &str, cpu: &str, mem: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: [
                    ("cpu".to_string(), Quantity::new(cpu)),
                    ("memory".to_string(), Quantity::new(mem)),
                ]
                .into(),
                conditions: vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                runtime_handlers: vec![
                    NodeRuntimeHandler {
                        name: "wasm".into(),
                        features: None,
                    },
                    NodeRuntimeHandler {
                        name: "container".into(),
                        features: None,
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_taint(mut n: Node, key: &str, value: &str, effect: &str) -> Node {
        n.spec.as_mut().unwrap().taints.push(Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        });
        n
    }

    fn container(image: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), Quantity::new(*v)))
                .collect()
        };
        Container {
            name: "c".into(),
            image: Some(image.into()),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
            }),
            ..Default::default()
        }
    }

    pub(super) fn pod(name: &str, cpu: &str, mem: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container("nginx", &[("cpu", cpu), ("memory", mem)], &[])],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(super) fn bound(mut p: Pod, node: &str) -> Pod {
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        p
    }

    pub(super) fn bind(p: Placement) -> String {
        match p {
            Placement::Bind(n) => n,
            other => panic!("expected a binding, got {other:?}"),
        }
    }

    pub(super) fn message(p: Placement) -> String {
        match p {
            Placement::Unschedulable { message } => message,
            other => panic!("expected unschedulable, got {other:?}"),
        }
    }

    #[test]
    fn requests_sum_containers_and_fall_back_to_limits() {
        let spec = PodSpec {
            containers: vec![
                container("a", &[("cpu", "250m"), ("memory", "64Mi")], &[]),
                container("b", &[], &[("cpu", "1"), ("memory", "1Gi")]),
                container("c", &[("cpu", "100m")], &[("cpu", "2"), ("memory", "1Mi")]),
            ],
            ..Default::default()
        };
        assert_eq!(
            pod_requests(&spec),
            Requests {
                cpu_millis: 1350,
                memory_bytes: (64 << 20) + (1 << 30) + (1 << 20),
            }
        );
    }

    #[test]
    fn an_init_container_larger_than_the_app_containers_sets_the_request() {
        let spec = PodSpec {
            containers: vec![container("a", &[("cpu", "100m")], &[])],
            init_containers: vec![container("i", &[("cpu", "2"), ("memory", "1Ki")], &[])],
            ..Default::default()
        };
        assert_eq!(
            pod_requests(&spec),
            Requests {
                cpu_millis: 2000,
                memory_bytes: 1024,
            }
        );
    }

    #[test]
    fn runtime_is_wasm_for_the_runtime_class_or_when_every_image_is_a_local_module() {
        let mut spec = PodSpec {
            containers: vec![
                container("file:./app.wasm", &[], &[]),
                container("/opt/x.wasm", &[], &[]),
            ],
            ..Default::default()
        };
        assert_eq!(pod_runtime(&spec), Runtime::Wasm);
        spec.containers.push(container("nginx:1.27", &[], &[]));
        assert_eq!(pod_runtime(&spec), Runtime::Container);
        spec.runtime_class_name = Some("wasm".into());
        assert_eq!(pod_runtime(&spec), Runtime::Wasm);
        assert_eq!(pod_runtime(&PodSpec::default()), Runtime::Container);
        let registry = PodSpec {
            containers: vec![container("ghcr.io/x/app:1", &[], &[])],
            ..Default::default()
        };
        assert_eq!(
            pod_runtime_with(&registry, |i| i.starts_with("ghcr.io/")),
            Runtime::Wasm
        );
    }

    #[test]
    fn tolerations_follow_kubernetes_matching() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let t = |key: Option<&str>, op: Option<&str>, value: Option<&str>, effect: Option<&str>| {
            Toleration {
                key: key.map(Into::into),
                operator: op.map(Into::into),
                value: value.map(Into::into),
                effect: effect.map(Into::into),
                toleration_seconds: None,
            }
        };
        assert!(tolerates(
            &t(Some("dedicated"), None, Some("gpu"), None),
            &taint
        ));
        assert!(tolerates(
            &t(
                Some("dedicated"),
                Some("Equal"),
                Some("gpu"),
                Some("NoSchedule")
            ),
            &taint
        ));
        assert!(!tolerates(
            &t(Some("dedicated"), None, Some("cpu"), None),
            &taint
        ));
        assert!(tolerates(
            &t(Some("dedicated"), Some("Exists"), None, None),
            &taint
        ));
        assert!(tolerates(&t(None, Some("Exists"), None, None), &taint));
        assert!(!tolerates(
            &t(None, Some("Exists"), None, Some("NoExecute")),
            &taint
        ));
        assert!(!tolerates(
            &t(Some("other"), Some("Exists"), None, None),
            &taint
        ));
    }

    #[test]
    fn most_allocated_packs_onto_the_fullest_node_that_fits() {
        let nodes = [
            node("a", "4", "8Gi"),
            node("b", "4", "8Gi"),
            node("c", "4", "8Gi"),
        ];
        let pods = [bound(pod("p0", "2", "4Gi"), "b")];
        let snap = ClusterSnapshot::new(&nodes, &pods);
        let p = pod("new", "1", "1Gi");
        assert_eq!(bind(place(&p, &snap, ScoringStrategy::MostAllocated)), "b");
        assert_eq!(bind(place(&p, &snap, ScoringStrategy::LeastAllocated)), "a");
    }

    #[test]
    fn ties_go_to_the_smallest_node_name() {
        let nodes = [
            node("n2", "4", "8Gi"),
            node("n1", "4", "8Gi"),
            node("n3", "4", "8Gi"),
        ];
        let snap = ClusterSnapshot::new(&nodes, &[]);
        let p = pod("p", "1", "1Gi");
        assert_eq!(bind(place(&p, &snap, ScoringStrategy::MostAllocated)), "n1");
        assert_eq!(
            bind(place(&p, &snap, ScoringStrategy::LeastAllocated)),
            "n1"
        );
    }

    #[test]
    fn the_unschedulable_message_counts_each_node_once_by_its_first_failing_filter() {
        let nodes = [
            node("a", "8", "1Gi"),
            node("b", "8", "1Gi"),
            // Fails both the taint and memory: counted once, for the taint.
            with_taint(node("c", "8", "1Gi"), "key", "value", "NoSchedule"),
        ];
        let snap = ClusterSnapshot::new(&nodes, &[]);
        let msg = message(place(
            &pod("p", "1", "2Gi"),
            &snap,
            ScoringStrategy::default(),
        ));
        assert_eq!(
            msg,
            "0/3 nodes are available: 2 Insufficient memory, \
             1 node(s) had untolerated taint {key: value}."
        );
    }

    #[test]
    fn not_ready_cordoned_selector_and_runtime_filters_each_have_a_reason() {
        let mut not_ready = node("a", "8", "8Gi");
        not_ready.status.as_mut().unwrap().conditions[0].status = "False".into();
        let mut cordoned = node("b", "8", "8Gi");
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let mut container_only = node("c", "8", "8Gi");
        container_only
            .status
            .as_mut()
            .unwrap()
            .runtime_handlers
            .remove(0);
        let mut labelled = node("d", "8", "8Gi");
        labelled.metadata.labels.insert("disk".into(), "hdd".into());
        let mut prefer = with_taint(node("e", "1", "8Gi"), "soft", "", "PreferNoSchedule");
        prefer.metadata.labels.insert("disk".into(), "ssd".into());
        let snap = ClusterSnapshot::new(
            &[not_ready, cordoned, container_only, labelled, prefer],
            &[],
        );
        let mut p = pod("p", "2", "1Gi");
        let spec = p.spec.as_mut().unwrap();
        spec.runtime_class_name = Some("wasm".into());
        spec.node_selector.insert("disk".into(), "ssd".into());
        assert_eq!(
            message(place(&p, &snap, ScoringStrategy::default())),
            "0/5 nodes are available: 1 Insufficient cpu, \
             1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) didn't offer the wasm runtime, 1 node(s) were not ready, \
             1 node(s) were unschedulable."
        );
    }

    #[test]
    fn registry_image_pods_go_to_container_nodes_unless_the_cluster_has_none() {
        let wasm_only = |name: &str| {
            let mut n = node(name, "8", "8Gi");
            n.status.as_mut().unwrap().runtime_handlers.truncate(1);
            n
        };
        // `pod()` names the registry image "nginx": the node resolves what it is.
        let p = pod("p", "1", "1Gi");
        let mixed = ClusterSnapshot::new(&[wasm_only("a"), node("b", "8", "8Gi")], &[]);
        assert_eq!(bind(place(&p, &mixed, ScoringStrategy::default())), "b");
        let full = ClusterSnapshot::new(&[wasm_only("a"), node("b", "1", "8Gi")], &[]);
        let big = pod("p", "2", "1Gi");
        assert_eq!(
            message(place(&big, &full, ScoringStrategy::default())),
            "0/2 nodes are available: 1 Insufficient cpu, \
             1 node(s) didn't offer the container runtime."
        );
        let wasm_cluster = ClusterSnapshot::new(&[wasm_only("a"), wasm_only("c")], &[]);
        assert_eq!(
            bind(place(&p, &wasm_cluster, ScoringStrategy::default())),
            "a"
        );
    }

    #[test]
    fn tolerated_taints_and_matching_selectors_admit_the_pod() {
        let mut n = with_taint(node("gpu", "8", "8Gi"), "dedicated", "gpu", "NoExecute");
        n.metadata.labels.insert("accel".into(), "gpu".into());
        let snap = ClusterSnapshot::new(&[n, node("plain", "8", "8Gi")], &[]);
        let mut p = pod("p", "1", "1Gi");
        let spec = p.spec.as_mut().unwrap();
        spec.node_selector.insert("accel".into(), "gpu".into());
        spec.tolerations.push(Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        });
        assert_eq!(bind(place(&p, &snap, ScoringStrategy::default())), "gpu");
    }

    #[test]
    fn wasm_pods_are_limited_by_the_instance_count_and_pods_by_the_pod_count() {
        let mut n = node("w", "64", "64Gi");
        let alloc = &mut n.status.as_mut().unwrap().allocatable;
        alloc.insert(wellknown::WASM_INSTANCES.into(), Quantity::new("2"));
        alloc.insert("pods".into(), Quantity::new("3"));
        let mut snap = ClusterSnapshot::new(&[n], &[]);
        let wasm = |name: &str| {
            let mut p = pod(name, "100m", "1Mi");
            p.spec.as_mut().unwrap().containers[0].image = Some("file:app.wasm".into());
            p
        };
        let results = schedule_batch(
            &[
                wasm("a"),
                wasm("b"),
                wasm("c"),
                pod("d", "1", "1Mi"),
                pod("e", "1", "1Mi"),
            ],
            &mut snap,
            ScoringStrategy::default(),
        );
        let outcome: Vec<String> = results
            .into_iter()
            .map(|(k, p)| match p {
                Placement::Bind(n) => format!("{k}->{n}"),
                Placement::Unschedulable { message } => format!("{k}: {message}"),
            })
            .collect();
        assert_eq!(
            outcome,
            [
                "default/a->w",
                "default/b->w",
                "default/c: 0/1 nodes are available: 1 Insufficient ketch.dev/wasm-instances.",
                "default/d->w",
                "default/e: 0/1 nodes are available: 1 Too many pods.",
            ]
        );
    }

    #[test]
    fn finished_pods_free_their_resources_and_forget_undoes_assume() {
        let mut done = bound(pod("done", "4", "1Gi"), "a");
        done.status = Some(ketch_api::core::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let running = bound(pod("run", "1", "1Gi"), "a");
        let mut snap = ClusterSnapshot::new(&[node("a", "4", "8Gi")], &[done, running]);
        assert_eq!(snap.node("a").unwrap().requested.cpu_millis, 1000);
        let p = pod("p", "3", "1Gi");
        assert!(snap.assume(&p, "a"));
        assert_eq!(snap.node("a").unwrap().requested.cpu_millis, 4000);
        assert!(matches!(
            place(&p, &snap, ScoringStrategy::default()),
            Placement::Unschedulable { .. }
        ));
        assert!(snap.forget(&p, "a"));
        assert_eq!(snap.node("a").unwrap().requested.cpu_millis, 1000);
        assert!(!snap.assume(&p, "missing"));
    }

    #[test]
    fn an_empty_cluster_says_so() {
        let snap = ClusterSnapshot::new(&[], &[]);
        assert_eq!(
            message(place(
                &pod("p", "1", "1"),
                &snap,
                ScoringStrategy::default()
            )),
            "0/0 nodes are available: no nodes available to schedule pods."
        );
    }

    #[test]
    fn fifty_thousand_pods_schedule_onto_five_thousand_nodes_within_allocatable() {
        let nodes: Vec<Node> = (0..5_000)
            .map(|i| node(&format!("node-{i:05}"), "8", "16Gi"))
            .collect();
        let sizes = [
            ("100m", "128Mi"),
            ("250m", "256Mi"),
            ("500m", "1Gi"),
            ("700m", "512Mi"),
        ];
        let pods: Vec<Pod> = (0..50_000)
            .map(|i| {
                let (cpu, mem) = sizes[i % sizes.len()];
                pod(&format!("p-{i}"), cpu, mem)
            })
            .collect();
        let mut snap = ClusterSnapshot::new(&nodes, &[]);
        let results = schedule_batch(&pods, &mut snap, ScoringStrategy::MostAllocated);
        assert_eq!(results.len(), pods.len());
        // Recompute usage from the results, independently of the snapshot's bookkeeping.
        let mut used: HashMap<String, Requests> = HashMap::new();
        for ((key, placement), p) in results.iter().zip(&pods) {
            let node = bind(placement.clone());
            assert_eq!(key, &pod_key(p));
            let r = pod_requests(p.spec.as_ref().unwrap());
            let u = used.entry(node).or_default();
            u.cpu_millis += r.cpu_millis;
            u.memory_bytes += r.memory_bytes;
        }
        for n in snap.nodes() {
            let u = used.get(&n.name).copied().unwrap_or_default();
            assert_eq!(u.cpu_millis, n.requested.cpu_millis);
            assert_eq!(u.memory_bytes, n.requested.memory_bytes);
            assert!(u.cpu_millis <= n.allocatable.cpu_millis, "{}", n.name);
            assert!(u.memory_bytes <= n.allocatable.memory_bytes, "{}", n.name);
        }
    }

    #[test]
    fn nodes_to_score_follows_kube_schedulers_numbers() {
        let cases = [
            // (setting, nodes, feasible to find)
            (NodesToScore::ADAPTIVE, 0, 0),
            (NodesToScore::ADAPTIVE, 99, 99),
            (NodesToScore::ADAPTIVE, 100, 100),
            (NodesToScore::ADAPTIVE, 1_000, 420),
            (NodesToScore::ADAPTIVE, 5_000, 500),
            (NodesToScore::ADAPTIVE, 20_000, 1_000),
            (NodesToScore::percentage(30), 1_000, 300),
            (NodesToScore::percentage(10), 200, 100),
            (NodesToScore::percentage(200), 5_000, 5_000),
            (NodesToScore::ALL, 5_000, 5_000),
        ];
        for (setting, total, want) in cases {
            assert_eq!(
                setting.feasible_to_find(total),
                want,
                "{setting:?} of {total}"
            );
        }
    }

    #[test]
    fn a_sampled_placement_starts_where_the_last_stopped_and_wraps() {
        let nodes: Vec<Node> = (0..300)
            .map(|i| {
                // Every tenth node is too small for the pod.
                let cpu = if i % 10 == 9 { "100m" } else { "4" };
                node(&format!("n{i:03}"), cpu, "8Gi")
            })
            .collect();
        let snap = ClusterSnapshot::new(&nodes, &[]);
        let p = pod("p", "1", "1Gi");
        // 50 fitting nodes are found among the first 55, starting at n100; ties go to the
        // smallest name scored.
        let (placement, checked) = place_from(&p, &snap, ScoringStrategy::MostAllocated, 100, 50);
        assert_eq!((bind(placement), checked), ("n100".to_string(), 55));
        // From n280 the search wraps to n000, which wins the tie.
        let (placement, checked) = place_from(&p, &snap, ScoringStrategy::MostAllocated, 280, 50);
        assert_eq!((bind(placement), checked), ("n000".to_string(), 55));
        // A fuller node in the sample wins over emptier ones outside it.
        let snap = ClusterSnapshot::new(&nodes, &[bound(pod("q", "2", "1Gi"), "n120")]);
        let (placement, _) = place_from(&p, &snap, ScoringStrategy::MostAllocated, 100, 50);
        assert_eq!(bind(placement), "n120");
        let (placement, _) = place_from(&p, &snap, ScoringStrategy::MostAllocated, 200, 50);
        assert_eq!(bind(placement), "n200");
    }

    #[test]
    fn a_pod_that_fits_nowhere_is_checked_against_every_node() {
        let nodes: Vec<Node> = (0..150)
            .map(|i| node(&format!("n{i:03}"), "1", "1Gi"))
            .collect();
        let snap = ClusterSnapshot::new(&nodes, &[]);
        let (placement, checked) = place_from(
            &pod("big", "2", "1Mi"),
            &snap,
            ScoringStrategy::MostAllocated,
            70,
            100,
        );
        assert_eq!(checked, 150);
        assert_eq!(
            message(placement),
            "0/150 nodes are available: 150 Insufficient cpu."
        );
    }
}

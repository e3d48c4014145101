//! Tests of spreading, node affinity and pod (anti-)affinity in placement (`topology.rs`,
//! `affinity.rs`, `interpod.rs`), against
//! plain snapshots and through the incremental cache.

use std::collections::BTreeMap;

use ketch_api::core::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodAffinity,
    PodAffinityTerm, PreferredSchedulingTerm, TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use ketch_api::meta::OwnerReference;
use ketch_api::selector::LabelSelector;
use ketch_api::validation::{DO_NOT_SCHEDULE, SCHEDULE_ANYWAY};
use ketch_api::wellknown::{LABEL_HOSTNAME, LABEL_ZONE};

use super::cache::SchedulerCache;
use super::tests::{bind, bound, message, node, pod};
use super::*;

fn owned(mut p: Pod, owner: &str) -> Pod {
    p.metadata.owner_references.push(OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: owner.into(),
        uid: format!("uid-{owner}"),
        controller: Some(true),
        ..Default::default()
    });
    p
}

fn labelled(mut n: Node, key: &str, value: &str) -> Node {
    n.metadata.labels.insert(key.into(), value.into());
    n
}

fn with_labels(mut p: Pod, labels: &[(&str, &str)]) -> Pod {
    for (k, v) in labels {
        p.metadata.labels.insert(k.to_string(), v.to_string());
    }
    p
}

/// Places `pods` in order with [`schedule_batch`] and returns the node of each.
fn placed(pods: &[Pod], snap: &mut ClusterSnapshot) -> Vec<String> {
    schedule_batch(pods, snap, ScoringStrategy::MostAllocated)
        .into_iter()
        .map(|(_, p)| bind(p))
        .collect()
}

fn per_node(names: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.as_str()).or_default() += 1;
    }
    m
}

fn three_nodes() -> Vec<Node> {
    vec![
        node("n1", "4", "8Gi"),
        node("n2", "4", "8Gi"),
        node("n3", "4", "8Gi"),
    ]
}

#[test]
fn six_replicas_of_one_deployment_spread_two_per_node_over_three_equal_nodes() {
    let replicas: Vec<Pod> = (0..6)
        .map(|i| owned(pod(&format!("web-{i}"), "100m", "128Mi"), "web"))
        .collect();
    let mut snap = ClusterSnapshot::new(&three_nodes(), &[]);
    let nodes = placed(&replicas, &mut snap);
    assert_eq!(nodes, ["n1", "n2", "n3", "n1", "n2", "n3"]);

    // The same through the scheduler's cache, where each placement is assumed at once.
    let mut cache = SchedulerCache::new();
    for n in three_nodes() {
        cache.set_node(NodeInfo::from_node(&n));
    }
    let mut through_cache = Vec::new();
    for (i, p) in replicas.iter().enumerate() {
        let mut p = p.clone();
        p.metadata.uid = Some(format!("u{i}"));
        through_cache.push(bind(cache.place(&pod_key(&p), &p, Profile::default())));
    }
    assert_eq!(
        per_node(&through_cache),
        BTreeMap::from([("n1", 2), ("n2", 2), ("n3", 2)])
    );
}

#[test]
fn different_apps_and_bare_pods_still_bin_pack() {
    // Each app's first replica, and bare pods, go to the fullest node that fits.
    let pods = [
        owned(pod("a-0", "1", "1Gi"), "a"),
        owned(pod("b-0", "1", "1Gi"), "b"),
        owned(pod("c-0", "1", "1Gi"), "c"),
        pod("bare-0", "100m", "1Gi"),
        pod("bare-1", "100m", "1Gi"),
    ];
    let mut snap = ClusterSnapshot::new(&three_nodes(), &[]);
    assert_eq!(placed(&pods, &mut snap), ["n1", "n1", "n1", "n1", "n1"]);
    // A second replica of `a` leaves n1 for the fullest other node.
    let mut snap = ClusterSnapshot::new(
        &three_nodes(),
        &[
            bound(owned(pod("a-0", "1", "1Gi"), "a"), "n1"),
            bound(pod("bare", "2", "1Gi"), "n3"),
        ],
    );
    assert_eq!(
        placed(&[owned(pod("a-1", "1", "1Gi"), "a")], &mut snap),
        ["n3"]
    );
}

#[test]
fn replicas_spread_over_zones_before_nodes_of_the_same_zone() {
    let nodes = [
        labelled(node("a1", "4", "8Gi"), LABEL_ZONE, "a"),
        labelled(node("a2", "4", "8Gi"), LABEL_ZONE, "a"),
        labelled(node("b1", "4", "8Gi"), LABEL_ZONE, "b"),
    ];
    let mut snap = ClusterSnapshot::new(&nodes, &[]);
    let replicas: Vec<Pod> = (0..3)
        .map(|i| owned(pod(&format!("w-{i}"), "100m", "128Mi"), "w"))
        .collect();
    // a2 is as empty as b1 but shares a1's zone.
    assert_eq!(placed(&replicas, &mut snap), ["a1", "b1", "a2"]);
}

#[test]
fn a_forgotten_replica_no_longer_repels_the_next() {
    let mut cache = SchedulerCache::new();
    for n in three_nodes() {
        cache.set_node(NodeInfo::from_node(&n));
    }
    let mut first = owned(pod("w-0", "100m", "128Mi"), "w");
    first.metadata.uid = Some("u0".into());
    assert_eq!(
        bind(cache.place("default/w-0", &first, Profile::default())),
        "n1"
    );
    let mut second = owned(pod("w-1", "100m", "128Mi"), "w");
    second.metadata.uid = Some("u1".into());
    let snap = cache.snapshot().clone();
    assert_eq!(
        bind(place(&second, &snap, ScoringStrategy::MostAllocated)),
        "n2"
    );
    assert!(cache.forget("default/w-0", "u0"));
    assert_eq!(cache.snapshot().pods().len(), 0);
    assert_eq!(
        bind(cache.place("default/w-1", &second, Profile::default())),
        "n1"
    );
}

fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn with_node_affinity(mut p: Pod, a: NodeAffinity) -> Pod {
    p.spec.as_mut().unwrap().affinity = Some(Affinity {
        node_affinity: Some(a),
        ..Default::default()
    });
    p
}

fn required(terms: Vec<NodeSelectorTerm>) -> NodeAffinity {
    NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: terms,
        }),
        ..Default::default()
    }
}

fn term(exprs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: exprs,
        ..Default::default()
    }
}

#[test]
fn required_node_affinity_filters_with_every_operator_and_terms_are_ored() {
    let nodes = [
        labelled(
            labelled(node("a", "4", "8Gi"), "disk", "ssd"),
            "cores",
            "16",
        ),
        labelled(labelled(node("b", "4", "8Gi"), "disk", "hdd"), "cores", "4"),
        labelled(node("c", "4", "8Gi"), "gpu", "yes"),
    ];
    let snap = ClusterSnapshot::new(&nodes, &[]);
    let only = |a: NodeAffinity| -> Vec<String> {
        let p = with_node_affinity(pod("p", "100m", "1Mi"), a);
        nodes
            .iter()
            .map(|n| n.metadata.name().to_string())
            .filter(|name| {
                let single = ClusterSnapshot::new(
                    &nodes
                        .iter()
                        .filter(|n| n.metadata.name() == name)
                        .cloned()
                        .collect::<Vec<_>>(),
                    &[],
                );
                matches!(
                    place(&p, &single, ScoringStrategy::default()),
                    Placement::Bind(_)
                )
            })
            .collect()
    };
    assert_eq!(
        only(required(vec![term(vec![req("disk", "In", &["ssd"])])])),
        ["a"]
    );
    assert_eq!(
        only(required(vec![term(vec![req("disk", "NotIn", &["ssd"])])])),
        ["b", "c"]
    );
    assert_eq!(
        only(required(vec![term(vec![req("gpu", "Exists", &[])])])),
        ["c"]
    );
    assert_eq!(
        only(required(vec![term(vec![req("gpu", "DoesNotExist", &[])])])),
        ["a", "b"]
    );
    assert_eq!(
        only(required(vec![term(vec![req("cores", "Gt", &["8"])])])),
        ["a"]
    );
    assert_eq!(
        only(required(vec![term(vec![req("cores", "Lt", &["8"])])])),
        ["b"]
    );
    // Requirements of a term are ANDed, terms ORed.
    assert_eq!(
        only(required(vec![
            term(vec![
                req("disk", "In", &["ssd", "hdd"]),
                req("cores", "Lt", &["8"])
            ]),
            term(vec![req("gpu", "Exists", &[])]),
        ])),
        ["b", "c"]
    );
    // matchFields on the node's name.
    assert_eq!(
        only(required(vec![NodeSelectorTerm {
            match_fields: vec![req("metadata.name", "NotIn", &["a", "c"])],
            ..Default::default()
        }])),
        ["b"]
    );
    // A term without requirements matches no node.
    assert!(only(required(vec![NodeSelectorTerm::default()])).is_empty());

    let p = with_node_affinity(
        pod("p", "100m", "1Mi"),
        required(vec![term(vec![req("zone", "In", &["x"])])]),
    );
    assert_eq!(
        message(place(&p, &snap, ScoringStrategy::default())),
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );
}

#[test]
fn preferred_node_affinity_outweighs_bin_packing_by_its_weights() {
    let nodes = [
        labelled(node("a", "4", "8Gi"), "disk", "hdd"),
        labelled(node("b", "4", "8Gi"), "disk", "ssd"),
        labelled(
            labelled(node("c", "4", "8Gi"), "disk", "ssd"),
            "fast",
            "yes",
        ),
    ];
    // `a` is the fullest: bin-packing alone would choose it.
    let snap = ClusterSnapshot::new(&nodes, &[bound(pod("q", "2", "4Gi"), "a")]);
    let prefer = |terms: &[(i32, NodeSelectorRequirement)]| {
        with_node_affinity(
            pod("p", "100m", "1Mi"),
            NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: terms
                    .iter()
                    .map(|(w, r)| PreferredSchedulingTerm {
                        weight: *w,
                        preference: term(vec![r.clone()]),
                    })
                    .collect(),
                ..Default::default()
            },
        )
    };
    let p = prefer(&[(50, req("disk", "In", &["ssd"]))]);
    assert_eq!(bind(place(&p, &snap, ScoringStrategy::MostAllocated)), "b");
    let p = prefer(&[
        (50, req("disk", "In", &["ssd"])),
        (10, req("fast", "Exists", &[])),
    ]);
    assert_eq!(bind(place(&p, &snap, ScoringStrategy::MostAllocated)), "c");
    // No node matches: the preference scores nothing and bin-packing decides.
    let p = prefer(&[(100, req("disk", "In", &["nvme"]))]);
    assert_eq!(bind(place(&p, &snap, ScoringStrategy::MostAllocated)), "a");
}

fn spread(key: &str, skew: i32, when: &str, app: &str) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: skew,
        topology_key: key.into(),
        when_unsatisfiable: when.into(),
        label_selector: Some(LabelSelector {
            match_labels: [("app".to_string(), app.to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_spread(mut p: Pod, cs: Vec<TopologySpreadConstraint>) -> Pod {
    p.spec.as_mut().unwrap().topology_spread_constraints = cs;
    p
}

fn zoned_nodes() -> Vec<Node> {
    vec![
        labelled(node("a1", "4", "8Gi"), LABEL_ZONE, "a"),
        labelled(node("a2", "4", "8Gi"), LABEL_ZONE, "a"),
        labelled(node("b1", "4", "8Gi"), LABEL_ZONE, "b"),
        // No zone: fails a zone constraint for its missing label.
        node("x1", "4", "8Gi"),
    ]
}

#[test]
fn do_not_schedule_keeps_the_skew_and_names_the_reason() {
    let web = |name: &str| with_labels(pod(name, "100m", "1Mi"), &[("app", "web")]);
    let existing = [bound(web("w0"), "a1"), bound(web("w1"), "a2")];
    let snap = ClusterSnapshot::new(&zoned_nodes(), &existing);
    let p = with_spread(
        web("new"),
        vec![spread(LABEL_ZONE, 1, DO_NOT_SCHEDULE, "web")],
    );
    // Zone a has 2, zone b 0: only b keeps the skew at most 1.
    assert_eq!(bind(place(&p, &snap, ScoringStrategy::MostAllocated)), "b1");

    // Zone b full: nothing keeps the skew.
    let mut full_b = zoned_nodes();
    full_b[2] = labelled(node("b1", "50m", "8Gi"), LABEL_ZONE, "b");
    let snap = ClusterSnapshot::new(&full_b, &existing);
    assert_eq!(
        message(place(&p, &snap, ScoringStrategy::MostAllocated)),
        "0/4 nodes are available: 1 Insufficient cpu, \
         2 node(s) didn't match pod topology spread constraints, \
         1 node(s) didn't match pod topology spread constraints (missing required label)."
    );

    // Pods in another namespace or with other labels do not count.
    let mut other_ns = web("o");
    other_ns.metadata.namespace = Some("other".into());
    let others = [
        bound(other_ns, "b1"),
        bound(
            with_labels(pod("api", "100m", "1Mi"), &[("app", "api")]),
            "b1",
        ),
    ];
    let snap = ClusterSnapshot::new(&zoned_nodes(), &others);
    assert_eq!(bind(place(&p, &snap, ScoringStrategy::MostAllocated)), "b1");
}

#[test]
fn min_domains_counts_missing_domains_as_empty() {
    let web = |name: &str| with_labels(pod(name, "100m", "1Mi"), &[("app", "web")]);
    let snap = ClusterSnapshot::new(
        &zoned_nodes(),
        &[bound(web("w0"), "a1"), bound(web("w1"), "b1")],
    );
    let mut c = spread(LABEL_ZONE, 1, DO_NOT_SCHEDULE, "web");
    // Two zones have one each: without minDomains a third pod fits either.
    let p = with_spread(web("new"), vec![c.clone()]);
    assert!(matches!(
        place(&p, &snap, ScoringStrategy::MostAllocated),
        Placement::Bind(_)
    ));
    // With three domains required and two present, the minimum is 0: skew 2 > 1.
    c.min_domains = Some(3);
    let p = with_spread(web("new"), vec![c]);
    assert_eq!(
        message(place(&p, &snap, ScoringStrategy::MostAllocated)),
        "0/4 nodes are available: \
         3 node(s) didn't match pod topology spread constraints, \
         1 node(s) didn't match pod topology spread constraints (missing required label)."
    );
}

#[test]
fn schedule_anyway_scores_and_own_constraints_replace_the_default_spreading() {
    let web = |name: &str| with_labels(pod(name, "100m", "1Mi"), &[("app", "web")]);
    let nodes = three_nodes();
    // n1 holds two web pods and is the fullest.
    let existing = [bound(web("w0"), "n1"), bound(web("w1"), "n1")];
    let snap = ClusterSnapshot::new(&nodes, &existing);
    let soft = spread(LABEL_HOSTNAME, 1, SCHEDULE_ANYWAY, "web");
    let p = with_spread(web("new"), vec![soft.clone()]);
    assert_eq!(bind(place(&p, &snap, ScoringStrategy::MostAllocated)), "n2");

    // Own constraints on other pods' labels: the owner's replicas no longer repel.
    let snap = ClusterSnapshot::new(&nodes, &[bound(owned(pod("r0", "1", "1Gi"), "r"), "n1")]);
    let p = with_spread(
        owned(pod("r1", "1", "1Gi"), "r"),
        vec![spread(LABEL_HOSTNAME, 1, SCHEDULE_ANYWAY, "nothing")],
    );
    assert_eq!(bind(place(&p, &snap, ScoringStrategy::MostAllocated)), "n1");
    let p = owned(pod("r1", "1", "1Gi"), "r");
    assert_eq!(bind(place(&p, &snap, ScoringStrategy::MostAllocated)), "n2");
}

#[test]
fn the_cache_keeps_spreading_counts_through_updates_and_deletes() {
    let mut cache = SchedulerCache::new();
    for n in three_nodes() {
        cache.set_node(NodeInfo::from_node(&n));
    }
    let mut p = owned(pod("w-0", "100m", "1Mi"), "w");
    p.metadata.uid = Some("u0".into());
    // Bound on n1, then its labels change (same node), then it is deleted.
    cache.update_pod("default/w-0", &bound(p.clone(), "n1"));
    let relabelled = with_labels(bound(p.clone(), "n1"), &[("tier", "fe")]);
    cache.update_pod("default/w-0", &relabelled);
    let on_n1: Vec<_> = cache.snapshot().pods().pods_on("n1").cloned().collect();
    assert_eq!(on_n1.len(), 1);
    assert_eq!(on_n1[0].labels["tier"], "fe");
    assert_eq!(on_n1[0].owner.as_deref(), Some("uid-w"));
    assert_eq!(
        cache
            .snapshot()
            .pods()
            .owner_nodes("uid-w")
            .collect::<Vec<_>>(),
        [("n1", 1)]
    );
    let next = owned(pod("w-1", "100m", "1Mi"), "w");
    let snap = cache.snapshot().clone();
    assert_eq!(
        bind(place(&next, &snap, ScoringStrategy::MostAllocated)),
        "n2"
    );
    cache.remove_pod("default/w-0");
    assert_eq!(cache.snapshot().pods().len(), 0);
    assert_eq!(cache.snapshot().pods().owner_nodes("uid-w").count(), 0);
}

fn term_for(app: &str, key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: [("app".to_string(), app.to_string())].into(),
            ..Default::default()
        }),
        topology_key: key.into(),
        ..Default::default()
    }
}

fn with_pod_affinity(mut p: Pod, affinity: Option<PodAffinity>, anti: Option<PodAffinity>) -> Pod {
    p.spec.as_mut().unwrap().affinity = Some(Affinity {
        pod_affinity: affinity,
        pod_anti_affinity: anti,
        ..Default::default()
    });
    p
}

fn required_terms(terms: Vec<PodAffinityTerm>) -> Option<PodAffinity> {
    Some(PodAffinity {
        required_during_scheduling_ignored_during_execution: terms,
        ..Default::default()
    })
}

fn preferred_terms(terms: Vec<(i32, PodAffinityTerm)>) -> Option<PodAffinity> {
    Some(PodAffinity {
        preferred_during_scheduling_ignored_during_execution: terms
            .into_iter()
            .map(|(weight, pod_affinity_term)| WeightedPodAffinityTerm {
                weight,
                pod_affinity_term,
            })
            .collect(),
        ..Default::default()
    })
}

#[test]
fn required_anti_affinity_puts_each_replica_on_its_own_node_and_says_why_when_none_is_left() {
    // Bare pods: without the anti-affinity, bin-packing would stack them on n1.
    let web = |name: &str| {
        with_pod_affinity(
            with_labels(pod(name, "100m", "1Mi"), &[("app", "web")]),
            None,
            required_terms(vec![term_for("web", LABEL_HOSTNAME)]),
        )
    };
    let mut snap = ClusterSnapshot::new(&three_nodes(), &[]);
    assert_eq!(
        placed(&[web("w0"), web("w1"), web("w2")], &mut snap),
        ["n1", "n2", "n3"]
    );
    assert_eq!(
        message(place(&web("w3"), &snap, ScoringStrategy::MostAllocated)),
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );
}

#[test]
fn an_existing_pods_anti_affinity_bars_the_incoming_pod_from_its_domain() {
    let guard = with_pod_affinity(
        with_labels(pod("guard", "1", "1Gi"), &[("app", "guard")]),
        None,
        required_terms(vec![term_for("web", LABEL_ZONE)]),
    );
    let web = with_labels(pod("w", "100m", "1Mi"), &[("app", "web")]);
    let nodes = zoned_nodes();
    // The guard's zone (a) is barred to web pods; bin-packing alone would choose a1.
    let snap = ClusterSnapshot::new(&nodes, &[bound(guard.clone(), "a1")]);
    assert_eq!(
        bind(place(&web, &snap, ScoringStrategy::MostAllocated)),
        "b1"
    );
    let snap = ClusterSnapshot::new(&nodes[..2], &[bound(guard.clone(), "a1")]);
    assert_eq!(
        message(place(&web, &snap, ScoringStrategy::MostAllocated)),
        "0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules."
    );
    // Through the cache: a forgotten guard bars nothing.
    let mut cache = SchedulerCache::new();
    for n in &nodes[..2] {
        cache.set_node(NodeInfo::from_node(n));
    }
    let mut g = guard;
    g.metadata.uid = Some("g".into());
    assert!(cache.assume("default/guard", &g, "a1"));
    let snap = cache.snapshot().clone();
    assert!(matches!(
        place(&web, &snap, ScoringStrategy::MostAllocated),
        Placement::Unschedulable { .. }
    ));
    assert!(cache.forget("default/guard", "g"));
    let snap = cache.snapshot().clone();
    assert_eq!(
        bind(place(&web, &snap, ScoringStrategy::MostAllocated)),
        "a1"
    );
}

#[test]
fn required_affinity_follows_the_matching_pods_domain_and_lets_a_group_start() {
    let nodes = zoned_nodes();
    let db = with_labels(pod("db", "100m", "1Mi"), &[("app", "db")]);
    let snap = ClusterSnapshot::new(&nodes, &[bound(db, "b1")]);
    let near_db = |name: &str, ns: &[&str]| {
        let mut t = term_for("db", LABEL_ZONE);
        t.namespaces = ns.iter().map(|n| n.to_string()).collect();
        with_pod_affinity(
            with_labels(pod(name, "100m", "1Mi"), &[("app", "web")]),
            required_terms(vec![t]),
            None,
        )
    };
    assert_eq!(
        bind(place(
            &near_db("w", &[]),
            &snap,
            ScoringStrategy::MostAllocated
        )),
        "b1"
    );
    // The db pod is in `default`; a term naming other namespaces finds none.
    assert_eq!(
        message(place(
            &near_db("w", &["other"]),
            &snap,
            ScoringStrategy::MostAllocated
        )),
        "0/4 nodes are available: 4 node(s) didn't match pod affinity rules."
    );
    // The first pod of a group with affinity to itself may start where the key exists.
    let empty = ClusterSnapshot::new(&nodes, &[]);
    let cache_pod = with_pod_affinity(
        with_labels(pod("c0", "100m", "1Mi"), &[("app", "cache")]),
        required_terms(vec![term_for("cache", LABEL_ZONE)]),
        None,
    );
    assert_eq!(
        bind(place(&cache_pod, &empty, ScoringStrategy::MostAllocated)),
        "a1"
    );
}

#[test]
fn preferred_pod_affinity_and_anti_affinity_score_by_weight() {
    let nodes = three_nodes();
    let existing = [
        bound(with_labels(pod("big", "2", "4Gi"), &[("app", "web")]), "n1"),
        bound(
            with_labels(pod("db", "100m", "1Mi"), &[("app", "db")]),
            "n3",
        ),
    ];
    let snap = ClusterSnapshot::new(&nodes, &existing);
    let p = |affinity, anti| with_pod_affinity(pod("p", "100m", "1Mi"), affinity, anti);
    // Bin-packing alone: n1, the fullest.
    assert_eq!(
        bind(place(&p(None, None), &snap, ScoringStrategy::MostAllocated)),
        "n1"
    );
    let near_db = preferred_terms(vec![(10, term_for("db", LABEL_HOSTNAME))]);
    assert_eq!(
        bind(place(
            &p(near_db, None),
            &snap,
            ScoringStrategy::MostAllocated
        )),
        "n3"
    );
    let away_from_web = preferred_terms(vec![(10, term_for("web", LABEL_HOSTNAME))]);
    assert_eq!(
        bind(place(
            &p(None, away_from_web),
            &snap,
            ScoringStrategy::MostAllocated
        )),
        "n3"
    );
}

#[test]
fn default_spreading_holds_in_a_sampled_placement_that_wraps_around() {
    let nodes: Vec<Node> = (0..150)
        .map(|i| node(&format!("n{i:03}"), "4", "8Gi"))
        .collect();
    // The owner's replicas on n145 and n000, the fullest nodes of the sample either side of
    // the wrap; a bare pod makes n001 fuller than the other empty nodes.
    let snap = ClusterSnapshot::new(
        &nodes,
        &[
            bound(owned(pod("w-0", "1", "1Gi"), "w"), "n145"),
            bound(owned(pod("w-1", "1", "1Gi"), "w"), "n000"),
            bound(pod("bare", "100m", "1Mi"), "n001"),
        ],
    );
    let next = owned(pod("w-2", "1", "1Gi"), "w");
    // Checks n140..n149, then n000..n039: 50 candidates.
    let (placement, checked) = place_from(&next, &snap, ScoringStrategy::MostAllocated, 140, 50);
    assert_eq!((bind(placement), checked), ("n001".to_string(), 50));
    // Without the wrap, the same: the replicas' nodes lose.
    let (placement, _) = place_from(&next, &snap, ScoringStrategy::MostAllocated, 0, 150);
    assert_eq!(bind(placement), "n001");
}

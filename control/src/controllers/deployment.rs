//! The Deployment controller: roll a pod template out through ReplicaSets.
//!
//! Each distinct template gets a ReplicaSet named `<deployment>-<pod-template-hash>`; a
//! rollout moves replicas from the old ReplicaSets to the new one, either all at once
//! (`Recreate`) or within the `maxSurge`/`maxUnavailable` budget (`RollingUpdate`). The logic
//! follows Kubernetes' deployment controller (`rolling.go`, `recreate.go`, `progress.go`,
//! `sync.go`) step for step, so rollouts behave as Kubernetes users expect.
//!
//! Availability is read from each ReplicaSet's `status.availableReplicas` (kept by the
//! ReplicaSet controller), never from pods directly; pods are only consulted by `Recreate` to
//! wait until the old ones are gone.

use std::collections::BTreeMap;
use std::time::Duration;

use ketch_api::time;

use chrono::{DateTime, Utc};
use ketch_api::apps::{
    Deployment, DeploymentCondition, DeploymentStatus, PodTemplateSpec, ReplicaSet, ReplicaSetSpec,
};
use ketch_api::core::{IntOrString, Pod};
use ketch_api::meta::ObjectMeta;
use ketch_api::selector::Selector;

use super::{
    Action, ObjectKey, Plan, Propagation, claim, controller_owner_ref, is_controlled_by, pod_phase,
};

/// Annotation holding the rollout revision on ReplicaSets and the Deployment.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Label distinguishing the pods (and ReplicaSets) of one template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

/// Alphabet of Kubernetes' `SafeEncodeString`: no vowels (no words) and no look-alikes.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The `pod-template-hash` of a template: FNV-1a 64 over its canonical JSON (struct fields in
/// declaration order, maps sorted, absent optionals omitted — so adding an optional API field
/// does not change existing hashes), mixed with `collisionCount`, written as 10 characters of
/// the safe alphabet (~47 bits). Any `pod-template-hash` label in the template is ignored.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let json = serde_json::to_vec(&without_hash(template)).unwrap_or_default();
    let mut h = OFFSET;
    let count = collision_count.map(|c| c.to_le_bytes());
    for b in json.iter().chain(count.iter().flatten()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    let base = SAFE_ALPHABET.len() as u64;
    (0..10)
        .map(|_| {
            let c = SAFE_ALPHABET[(h % base) as usize] as char;
            h /= base;
            c
        })
        .collect()
}

fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(m) = &mut t.metadata {
        m.labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    t
}

/// Where a rollout stands, as `kubectl rollout status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    Progressing(String),
    Complete,
    Failed(String),
}

/// kubectl's reading of a Deployment's status (`DeploymentStatusViewer`).
pub fn rollout_status(d: &Deployment) -> RolloutStatus {
    let name = d.metadata.name();
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if generation > status.observed_generation.unwrap_or(0) {
        return RolloutStatus::Progressing(
            "Waiting for deployment spec update to be observed...".into(),
        );
    }
    if find_condition(&status.conditions, "Progressing")
        .is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
    {
        return RolloutStatus::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < replicas {
        return RolloutStatus::Progressing(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {replicas} new replicas have been updated..."
        ));
    }
    if total > updated {
        return RolloutStatus::Progressing(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            total - updated
        ));
    }
    if available < updated {
        return RolloutStatus::Progressing(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    RolloutStatus::Complete
}

impl RolloutStatus {
    /// The line kubectl prints for this state.
    pub fn message(&self, deployment_name: &str) -> String {
        match self {
            RolloutStatus::Progressing(m) | RolloutStatus::Failed(m) => m.clone(),
            RolloutStatus::Complete => {
                format!("deployment {deployment_name:?} successfully rolled out")
            }
        }
    }
}

/// `maxSurge` and `maxUnavailable` resolved against `replicas`: surge rounds up, unavailable
/// rounds down, and if both come out zero unavailable becomes 1 so a rollout can move.
/// Recreate has neither.
pub fn resolve_fenceposts(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1).max(0);
    let strategy = spec.and_then(|s| s.strategy.as_ref());
    if is_recreate(d) {
        return (0, 0);
    }
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let pct25 = IntOrString::String("25%".into());
    let surge = ru
        .and_then(|r| r.max_surge.as_ref())
        .unwrap_or(&pct25)
        .scaled(replicas, true);
    let unavailable = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&pct25)
        .scaled(replicas, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// A ReplicaSet as the rollout sees it; `replicas` is the desired count being planned.
#[derive(Debug, Clone)]
struct Rs<'a> {
    obj: Option<&'a ReplicaSet>,
    key: ObjectKey,
    replicas: i32,
    observed: i32,
    ready: i32,
    available: i32,
    created: Option<DateTime<Utc>>,
    revision: i64,
}

impl<'a> Rs<'a> {
    fn of(rs: &'a ReplicaSet) -> Self {
        let st = rs.status.clone().unwrap_or_default();
        Rs {
            obj: Some(rs),
            key: ObjectKey::replica_set(&rs.metadata),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            observed: st.replicas,
            ready: st.ready_replicas.unwrap_or(0),
            available: st.available_replicas.unwrap_or(0),
            created: rs
                .metadata
                .creation_timestamp
                .as_deref()
                .and_then(time::parse),
            revision: revision(&rs.metadata),
        }
    }

    fn original_replicas(&self) -> Option<i32> {
        self.obj
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
    }
}

fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_total(rss: &[Rs]) -> i32 {
    rss.iter().map(|r| r.replicas).sum()
}

/// Plans one sync of `d` given the ReplicaSets and pods of its namespace.
///
/// A Deployment being deleted or paused only gets its status refreshed. Returns nothing when the
/// spec is missing or the selector is invalid or empty.
pub fn plan(d: &Deployment, replicasets: &[ReplicaSet], pods: &[Pod], now: &str) -> Plan {
    let Some(spec) = &d.spec else {
        return Vec::new();
    };
    let selector = match Selector::from_label_selector(&spec.selector) {
        Ok(s) if !s.is_empty() => s,
        _ => return Vec::new(),
    };
    let ns = d.metadata.namespace();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let paused = spec.paused == Some(true);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let old_status = d.status.clone().unwrap_or_default();
    let mut actions = Vec::new();

    // Claim ReplicaSets: adopt matching orphans, release owned ones that stopped matching.
    let mut owned: Vec<&ReplicaSet> = claim(
        replicasets.iter().filter(|r| r.metadata.namespace() == ns),
        |r: &ReplicaSet| &r.metadata,
        ObjectKey::replica_set,
        &selector,
        &controller_owner_ref("apps/v1", "Deployment", &d.metadata),
        deleting,
        &mut actions,
    );
    owned.sort_by(|a, b| {
        let t = |r: &ReplicaSet| {
            r.metadata
                .creation_timestamp
                .as_deref()
                .and_then(time::parse)
        };
        t(a).cmp(&t(b))
            .then_with(|| a.metadata.name().cmp(b.metadata.name()))
    });

    // The new ReplicaSet is the oldest one whose template is the Deployment's (ignoring the
    // hash label), so a rollback re-uses the old ReplicaSet instead of creating a twin.
    let wanted = without_hash(&spec.template);
    let new_pos = owned.iter().position(|rs| {
        rs.spec
            .as_ref()
            .is_some_and(|s| without_hash(&s.template) == wanted)
    });
    let mut rss: Vec<Rs> = Vec::with_capacity(owned.len() + 1);
    let mut new_idx = None;
    if let Some(p) = new_pos {
        rss.push(Rs::of(owned[p]));
        new_idx = Some(0);
    }
    for (i, rs) in owned.iter().enumerate() {
        if Some(i) != new_pos {
            rss.push(Rs::of(rs));
        }
    }
    let old_range = usize::from(new_idx.is_some())..;
    let max_old_revision = rss[old_range.clone()]
        .iter()
        .map(|r| r.revision)
        .max()
        .unwrap_or(0);
    let new_revision = max_old_revision + 1;

    let mut ctx = Ctx {
        d,
        now,
        status: old_status.clone(),
        created_new: false,
    };

    if deleting || paused {
        return finish(ctx, actions, &rss, new_idx, None);
    }

    if let Some(i) = new_idx
        && rss[i].revision < new_revision
    {
        actions.push(Action::SetAnnotations {
            object: rss[i].key.clone(),
            annotations: [(REVISION_ANNOTATION.to_string(), new_revision.to_string())].into(),
        });
        rss[i].revision = new_revision;
    }

    let (max_surge, max_unavailable) = resolve_fenceposts(d);
    let recreate = is_recreate(d);

    // Creating the new ReplicaSet (deferred to the end, with its final replica count).
    let create_new = |rss: &mut Vec<Rs>, initial: i32, ctx: &mut Ctx| -> Option<usize> {
        let hash = pod_template_hash(&spec.template, old_status.collision_count);
        let name = format!("{}-{hash}", d.metadata.name());
        if replicasets
            .iter()
            .any(|r| r.metadata.namespace() == ns && r.metadata.name() == name)
        {
            // Same name, different template (or not ours): hash again with a new salt.
            ctx.status.collision_count = Some(old_status.collision_count.unwrap_or(0) + 1);
            return None;
        }
        rss.insert(
            0,
            Rs {
                obj: None,
                key: ObjectKey {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    namespace: ns.into(),
                    name,
                    uid: String::new(),
                },
                replicas: initial,
                observed: 0,
                ready: 0,
                available: 0,
                created: None,
                revision: new_revision,
            },
        );
        ctx.created_new = true;
        Some(0)
    };

    let mut scaled = false;
    if recreate {
        for r in rss.iter_mut().skip(usize::from(new_idx.is_some())) {
            if r.replicas > 0 {
                r.replicas = 0;
                scaled = true;
            }
        }
        let old_uids: Vec<&str> = rss[usize::from(new_idx.is_some())..]
            .iter()
            .map(|r| r.key.uid.as_str())
            .collect();
        let old_pods_running = rss[usize::from(new_idx.is_some())..]
            .iter()
            .any(|r| r.observed > 0)
            || pods.iter().any(|p| {
                p.metadata.namespace() == ns
                    && old_uids.iter().any(|u| is_controlled_by(&p.metadata, u))
                    && !matches!(pod_phase(p), "Succeeded" | "Failed")
            });
        if !scaled && !old_pods_running {
            match new_idx {
                None => new_idx = create_new(&mut rss, replicas, &mut ctx),
                Some(i) if rss[i].replicas != replicas => {
                    rss[i].replicas = replicas;
                    scaled = true;
                }
                Some(_) => {}
            }
        }
    } else {
        if new_idx.is_none() {
            let current = spec_total(&rss);
            let initial = (replicas + max_surge - current).clamp(0, replicas);
            new_idx = create_new(&mut rss, initial, &mut ctx);
        }
        if let Some(n) = new_idx {
            scaled = reconcile_new(&mut rss, n, replicas, max_surge);
            if !scaled {
                scaled = reconcile_old(&mut rss, n, replicas, max_unavailable);
            }
        }
    }

    // Emit the ReplicaSet writes.
    if ctx.created_new
        && let Some(n) = new_idx
    {
        actions.push(Action::CreateReplicaSet(Box::new(new_replica_set(
            d,
            &rss[n],
            old_status.collision_count,
        ))));
    }
    for r in &rss {
        if let Some(orig) = r.original_replicas()
            && orig != r.replicas
        {
            actions.push(Action::ScaleReplicaSet {
                replica_set: r.key.clone(),
                replicas: r.replicas,
            });
        }
    }

    finish(ctx, actions, &rss, new_idx, Some((scaled, replicas)))
}

/// Shared tail: revision history cleanup (when settled), status, requeue.
struct Ctx<'a> {
    d: &'a Deployment,
    now: &'a str,
    status: DeploymentStatus,
    created_new: bool,
}

fn finish(
    mut ctx: Ctx,
    mut actions: Plan,
    rss: &[Rs],
    new_idx: Option<usize>,
    rollout: Option<(bool, i32)>,
) -> Plan {
    let d = ctx.d;
    let spec = d.spec.as_ref().expect("checked by plan");
    let paused = spec.paused == Some(true);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let old_status = d.status.clone().unwrap_or_default();
    let new_rs = new_idx.map(|i| &rss[i]);

    // Status (calculateStatus).
    let available: i32 = rss.iter().map(|r| r.available).sum();
    let st = &mut ctx.status;
    st.observed_generation = d.metadata.generation.or(old_status.observed_generation);
    st.replicas = Some(rss.iter().map(|r| r.observed).sum());
    st.updated_replicas = Some(new_rs.map_or(0, |r| r.observed));
    st.ready_replicas = Some(rss.iter().map(|r| r.ready).sum());
    st.available_replicas = Some(available);
    st.unavailable_replicas = Some((spec_total(rss) - available).max(0));
    let (_, max_unavailable) = resolve_fenceposts(d);
    if available >= replicas - max_unavailable {
        set_condition(
            st,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            ctx.now,
            false,
        );
    } else {
        set_condition(
            st,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            ctx.now,
            false,
        );
    }

    // Progressing (syncRolloutStatus / checkPausedConditions).
    let deadline = spec
        .progress_deadline_seconds
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    let new_name = new_rs.map(|r| r.key.name.clone()).unwrap_or_default();
    let was_paused = find_condition(&old_status.conditions, "Progressing")
        .is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
    if paused {
        if !was_paused {
            set_condition(
                st,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                ctx.now,
                false,
            );
        }
    } else if was_paused {
        set_condition(
            st,
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".into(),
            ctx.now,
            false,
        );
    }
    if ctx.created_new {
        set_condition(
            st,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set {new_name:?}"),
            ctx.now,
            false,
        );
    }
    let complete = is_complete(d, st);
    let mut requeue = None;
    if !paused && rollout.is_some() {
        let cur = find_condition(&st.conditions, "Progressing").cloned();
        let already_complete = st.replicas == st.updated_replicas
            && cur
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
        if !already_complete {
            if complete {
                set_condition(
                    st,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet {new_name:?} has successfully progressed."),
                    ctx.now,
                    false,
                );
            } else if is_progressing(&old_status, st) {
                let msg = if new_rs.is_some() {
                    format!("ReplicaSet {new_name:?} is progressing.")
                } else {
                    format!("Deployment {:?} is progressing.", d.metadata.name())
                };
                set_condition(
                    st,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    msg,
                    ctx.now,
                    true,
                );
            } else if new_rs.is_some()
                && let Some(c) = &cur
                && timed_out(c, deadline, ctx.now)
            {
                set_condition(
                    st,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet {new_name:?} has timed out progressing."),
                    ctx.now,
                    false,
                );
            }
        }
        // A stuck rollout produces no event when its deadline passes: come back then.
        if !complete
            && let Some(c) = find_condition(&st.conditions, "Progressing")
            && c.status == "True"
            && let (Some(updated), Some(now)) = (
                c.last_update_time.as_deref().and_then(time::parse),
                time::parse(ctx.now),
            )
        {
            let left = updated + chrono::Duration::seconds(i64::from(deadline)) - now;
            requeue = Some(
                left.to_std()
                    .unwrap_or_default()
                    .max(Duration::from_secs(1)),
            );
        }
    }

    // Revision history: once settled, delete the oldest scaled-down ReplicaSets over the limit.
    if let Some((false, _)) = rollout
        && complete
    {
        let limit = spec
            .revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
            .max(0) as usize;
        let mut cleanable: Vec<&Rs> = rss
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                Some(*i) != new_idx
                    && r.obj
                        .is_some_and(|o| o.metadata.deletion_timestamp.is_none())
            })
            .map(|(_, r)| r)
            .collect();
        if cleanable.len() > limit {
            let diff = cleanable.len() - limit;
            cleanable.sort_by(|a, b| a.revision.cmp(&b.revision).then(a.created.cmp(&b.created)));
            for r in cleanable
                .into_iter()
                .filter(|r| {
                    let o = r.obj.expect("filtered above");
                    r.replicas == 0
                        && r.observed == 0
                        && o.metadata.generation.unwrap_or(0)
                            <= o.status
                                .as_ref()
                                .and_then(|s| s.observed_generation)
                                .unwrap_or(0)
                })
                .take(diff)
            {
                actions.push(Action::Delete {
                    object: r.key.clone(),
                    propagation: Propagation::Background,
                });
            }
        }
    }

    // The Deployment carries the revision of its new ReplicaSet (`kubectl rollout history`).
    if let Some(r) = new_rs
        && !paused
        && d.metadata.deletion_timestamp.is_none()
        && revision(&d.metadata) != r.revision
    {
        actions.push(Action::SetAnnotations {
            object: ObjectKey::deployment(&d.metadata),
            annotations: [(REVISION_ANNOTATION.to_string(), r.revision.to_string())].into(),
        });
    }

    if ctx.status != old_status {
        actions.push(Action::UpdateDeploymentStatus {
            deployment: ObjectKey::deployment(&d.metadata),
            status: Box::new(ctx.status),
        });
    }
    if let Some(r) = requeue {
        actions.push(Action::RequeueAfter(r));
    }
    actions
}

/// Scales the new ReplicaSet toward `replicas` within the surge budget (`NewRSNewReplicas`).
fn reconcile_new(rss: &mut [Rs], n: usize, replicas: i32, max_surge: i32) -> bool {
    let new = rss[n].replicas;
    if new == replicas {
        return false;
    }
    if new > replicas {
        rss[n].replicas = replicas;
        return true;
    }
    let current = spec_total(rss);
    let max_total = replicas + max_surge;
    if current >= max_total {
        return false;
    }
    let up = (max_total - current).min(replicas - new);
    rss[n].replicas = new + up;
    up > 0
}

/// Scales old ReplicaSets down while keeping `replicas - maxUnavailable` available: unhealthy
/// replicas first, then oldest ReplicaSets first (`reconcileOldReplicaSets`).
fn reconcile_old(rss: &mut [Rs], n: usize, replicas: i32, max_unavailable: i32) -> bool {
    let old_total: i32 = rss
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != n)
        .map(|(_, r)| r.replicas)
        .sum();
    if old_total == 0 {
        return false;
    }
    let min_available = replicas - max_unavailable;
    let new_unavailable = (rss[n].replicas - rss[n].available).max(0);
    let max_scaled_down = spec_total(rss) - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    // Old indices, oldest first (rss keeps creation order after the new one).
    let olds: Vec<usize> = (0..rss.len()).filter(|&i| i != n).collect();

    // Unhealthy replicas cost no availability: remove them first.
    let mut cleaned = 0;
    for &i in &olds {
        if cleaned >= max_scaled_down {
            break;
        }
        let r = &mut rss[i];
        let unhealthy = (r.replicas - r.available).max(0);
        if r.replicas == 0 || unhealthy == 0 {
            continue;
        }
        let down = unhealthy.min(max_scaled_down - cleaned);
        r.replicas -= down;
        cleaned += down;
    }

    // Then healthy ones, as far as availability allows.
    let available: i32 = rss.iter().map(|r| r.available.min(r.replicas)).sum();
    let mut scaled = 0;
    if available > min_available {
        let budget = available - min_available;
        for &i in &olds {
            if scaled >= budget {
                break;
            }
            let r = &mut rss[i];
            if r.replicas == 0 {
                continue;
            }
            let down = r.replicas.min(budget - scaled);
            r.replicas -= down;
            scaled += down;
        }
    }
    cleaned + scaled > 0
}

fn new_replica_set(d: &Deployment, new: &Rs, collision_count: Option<i32>) -> ReplicaSet {
    let spec = d.spec.as_ref().expect("checked by plan");
    let hash = pod_template_hash(&spec.template, collision_count);
    let mut template = spec.template.clone();
    let tmeta = template.metadata.get_or_insert_with(Default::default);
    tmeta
        .labels
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let labels = tmeta.labels.clone();
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash);
    ReplicaSet {
        api_version: Some("apps/v1".into()),
        kind: Some("ReplicaSet".into()),
        metadata: ObjectMeta {
            name: Some(new.key.name.clone()),
            namespace: d.metadata.namespace.clone(),
            labels,
            annotations: BTreeMap::from([(
                REVISION_ANNOTATION.to_string(),
                new.revision.to_string(),
            )]),
            owner_references: vec![controller_owner_ref("apps/v1", "Deployment", &d.metadata)],
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(new.replicas),
            selector,
            template,
            min_ready_seconds: spec.min_ready_seconds,
        }),
        status: None,
    }
}

fn find_condition<'a>(
    conds: &'a [DeploymentCondition],
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Sets a condition. An unchanged status and reason is left alone (timestamps included)
/// unless `refresh`, which bumps `lastUpdateTime` (used to record progress); the transition
/// time only moves when the status changes.
fn set_condition(
    st: &mut DeploymentStatus,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &str,
    refresh: bool,
) {
    let existing = st.conditions.iter().position(|c| c.type_ == type_);
    let mut transition = Some(now.to_string());
    if let Some(i) = existing {
        let c = &st.conditions[i];
        if c.status == status && c.reason.as_deref() == Some(reason) && !refresh {
            return;
        }
        if c.status == status {
            transition = c.last_transition_time.clone();
        }
    }
    let cond = DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.into()),
        last_transition_time: transition,
    };
    match existing {
        Some(i) => st.conditions[i] = cond,
        None => st.conditions.push(cond),
    }
}

/// `DeploymentComplete`: every replica updated and available, and the spec observed.
fn is_complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0);
    st.updated_replicas == Some(replicas)
        && st.replicas == Some(replicas)
        && st.available_replicas == Some(replicas)
        && st.observed_generation >= d.metadata.generation
}

/// `DeploymentProgressing`: more updated, ready or available replicas, or fewer old ones.
fn is_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

fn timed_out(cond: &DeploymentCondition, deadline: i32, now: &str) -> bool {
    if cond.reason.as_deref() == Some("ProgressDeadlineExceeded") {
        return true;
    }
    match (
        cond.last_update_time.as_deref().and_then(time::parse),
        time::parse(now),
    ) {
        (Some(t), Some(now)) => t + chrono::Duration::seconds(i64::from(deadline)) < now,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use ketch_api::apps::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };
    use ketch_api::selector::LabelSelector;

    use super::super::testing::*;
    use super::super::{is_controlled_by, replicaset};
    use super::*;

    const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn at(secs: i64) -> String {
        ketch_api::time::format(
            DateTime::from_timestamp(T0 + secs, 0).unwrap(),
            chrono::SecondsFormat::Secs,
        )
    }

    fn deployment(replicas: i32, image: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(1),
                ..meta("web", "d-uid")
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: labels(&[("app", "web")]),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: labels(&[("app", "web")]),
                        ..Default::default()
                    }),
                    spec: Some(pod_spec(image)),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rolling(mut d: Deployment, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        });
        d
    }

    fn recreate(mut d: Deployment) -> Deployment {
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        d
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    /// A tiny cluster: the Deployment and ReplicaSet controllers plus instant kubelets.
    struct Sim {
        d: Deployment,
        rss: Vec<ReplicaSet>,
        pods: Vec<Pod>,
        clock: i64,
        next: u64,
    }

    impl Sim {
        fn new(d: Deployment) -> Self {
            Sim {
                d,
                rss: Vec::new(),
                pods: Vec::new(),
                clock: 0,
                next: 0,
            }
        }

        fn now(&self) -> String {
            at(self.clock)
        }

        fn uid(&mut self) -> String {
            self.next += 1;
            format!("uid-{}", self.next)
        }

        fn apply(&mut self, plan: Plan) {
            for action in plan {
                match action {
                    Action::CreateReplicaSet(rs) => {
                        let mut rs = *rs;
                        assert!(
                            !self.rss.iter().any(|r| r.metadata.name == rs.metadata.name),
                            "duplicate ReplicaSet name"
                        );
                        rs.metadata.uid = Some(self.uid());
                        rs.metadata.creation_timestamp = Some(self.now());
                        rs.metadata.generation = Some(1);
                        self.rss.push(rs);
                    }
                    Action::ScaleReplicaSet {
                        replica_set,
                        replicas,
                    } => {
                        let rs = self.rs_mut(&replica_set.uid);
                        rs.spec.as_mut().unwrap().replicas = Some(replicas);
                        rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(1) + 1);
                    }
                    Action::SetAnnotations {
                        object,
                        annotations,
                    } => {
                        let meta = if object.kind == "Deployment" {
                            &mut self.d.metadata
                        } else {
                            &mut self.rs_mut(&object.uid).metadata
                        };
                        meta.annotations.extend(annotations);
                    }
                    Action::SetOwnerReferences {
                        object,
                        owner_references,
                    } => {
                        let meta = if object.kind == "Pod" {
                            &mut self.pod_mut(&object.uid).metadata
                        } else {
                            &mut self.rs_mut(&object.uid).metadata
                        };
                        meta.owner_references = owner_references;
                    }
                    Action::Delete { object, .. } => {
                        if object.kind == "Pod" {
                            self.pods
                                .retain(|p| p.metadata.uid != Some(object.uid.clone()));
                        } else {
                            // The garbage collector takes the pods along.
                            self.rss
                                .retain(|r| r.metadata.uid != Some(object.uid.clone()));
                            self.pods
                                .retain(|p| !is_controlled_by(&p.metadata, &object.uid));
                        }
                    }
                    Action::CreatePod(p) => {
                        let mut p = *p;
                        let uid = self.uid();
                        p.metadata.name = Some(format!(
                            "{}{}",
                            p.metadata.generate_name.as_deref().unwrap(),
                            self.next
                        ));
                        p.metadata.uid = Some(uid);
                        p.metadata.creation_timestamp = Some(self.now());
                        p.status = Some(ketch_api::core::PodStatus {
                            phase: Some("Pending".into()),
                            ..Default::default()
                        });
                        self.pods.push(p);
                    }
                    Action::UpdateReplicaSetStatus {
                        replica_set,
                        status,
                    } => self.rs_mut(&replica_set.uid).status = Some(status),
                    Action::UpdateDeploymentStatus { status, .. } => self.d.status = Some(*status),
                    Action::RequeueAfter(_) | Action::RemoveFinalizer { .. } => {}
                    Action::CreateEndpointSlice(_) | Action::UpdateEndpointSlice { .. } => {
                        panic!("a Deployment plan never touches EndpointSlices: {action:?}")
                    }
                }
            }
        }

        fn rs_mut(&mut self, uid: &str) -> &mut ReplicaSet {
            self.rss
                .iter_mut()
                .find(|r| r.metadata.uid.as_deref() == Some(uid))
                .expect("ReplicaSet exists")
        }

        fn pod_mut(&mut self, uid: &str) -> &mut Pod {
            self.pods
                .iter_mut()
                .find(|p| p.metadata.uid.as_deref() == Some(uid))
                .expect("pod exists")
        }

        fn sync_replica_sets(&mut self) {
            let uids: Vec<String> = self
                .rss
                .iter()
                .filter_map(|r| r.metadata.uid.clone())
                .collect();
            for uid in uids {
                let Some(rs) = self
                    .rss
                    .iter()
                    .find(|r| r.metadata.uid.as_deref() == Some(&uid))
                else {
                    continue;
                };
                let plan = replicaset::plan(rs, &self.pods, &self.now());
                self.apply(plan);
            }
        }

        /// Both controllers act once; pods they create are not ready yet.
        fn act(&mut self) {
            let plan = plan(&self.d, &self.rss, &self.pods, &self.now());
            self.apply(plan);
            self.sync_replica_sets();
        }

        /// Kubelets start every pod, a second passes, ReplicaSets report.
        fn settle(&mut self) {
            let now = self.now();
            for p in &mut self.pods {
                if super::super::pod_ready_since(p).is_none() {
                    set_ready(p, &now);
                }
            }
            self.clock += 1;
            self.sync_replica_sets();
        }

        fn active_pods(&self) -> usize {
            self.pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count()
        }

        fn ready_pods(&self) -> usize {
            self.pods
                .iter()
                .filter(|p| super::super::pod_ready_since(p).is_some())
                .count()
        }

        fn template_hash_of(&self, p: &Pod) -> String {
            p.metadata.labels[POD_TEMPLATE_HASH_LABEL].clone()
        }

        /// (new ReplicaSet's spec replicas, sum of the others') where "new" has `image`.
        fn split(&self, image: &str) -> (i32, i32) {
            let mut out = (0, 0);
            for rs in &self.rss {
                let spec = rs.spec.as_ref().unwrap();
                let n = spec.replicas.unwrap();
                let img = spec.template.spec.as_ref().unwrap().containers[0]
                    .image
                    .as_deref();
                if img == Some(image) {
                    out.0 += n;
                } else {
                    out.1 += n;
                }
            }
            out
        }

        fn done(&self) -> bool {
            let replicas = self.d.spec.as_ref().unwrap().replicas.unwrap() as usize;
            rollout_status(&self.d) == RolloutStatus::Complete
                && self.active_pods() == replicas
                && self.ready_pods() == replicas
        }

        /// Runs until the rollout completes, calling `check` after every `act`.
        fn run(&mut self, mut check: impl FnMut(&Sim)) -> usize {
            for step in 0..200 {
                self.act();
                check(self);
                if self.done() {
                    return step;
                }
                self.settle();
            }
            panic!("rollout did not finish: {:#?}", self.d.status);
        }

        fn update_image(&mut self, image: &str) {
            let spec = self.d.spec.as_mut().unwrap();
            spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
            self.d.metadata.generation = Some(self.d.metadata.generation.unwrap() + 1);
        }
    }

    fn rollout_with_invariants(d: Deployment) -> Vec<(i32, i32)> {
        let replicas = d.spec.as_ref().unwrap().replicas.unwrap();
        let (surge, unavailable) = resolve_fenceposts(&d);
        let mut sim = Sim::new(d);
        sim.run(|_| {});
        sim.update_image("nginx:2");
        let mut steps: Vec<(i32, i32)> = Vec::new();
        sim.run(|s| {
            let (new, old) = s.split("nginx:2");
            assert!(new + old <= replicas + surge, "spec total {new}+{old}");
            assert!(
                s.active_pods() as i32 <= replicas + surge,
                "{} pods exceed {replicas}+{surge}",
                s.active_pods()
            );
            assert!(
                s.ready_pods() as i32 >= replicas - unavailable,
                "{} ready pods below {replicas}-{unavailable}",
                s.ready_pods()
            );
            if steps.last() != Some(&(new, old)) {
                steps.push((new, old));
            }
        });
        // Everything runs the new template, in one ReplicaSet with revision 2.
        let hashes: std::collections::BTreeSet<String> =
            sim.pods.iter().map(|p| sim.template_hash_of(p)).collect();
        assert_eq!(hashes.len(), 1);
        let new = sim
            .rss
            .iter()
            .find(|r| r.spec.as_ref().unwrap().replicas == Some(replicas))
            .unwrap();
        assert_eq!(new.metadata.annotations[REVISION_ANNOTATION], "2");
        assert_eq!(sim.d.metadata.annotations[REVISION_ANNOTATION], "2");
        assert_eq!(
            rollout_status(&sim.d).message("web"),
            "deployment \"web\" successfully rolled out"
        );
        steps
    }

    #[test]
    fn rolling_update_with_surge_one_and_no_unavailability_moves_one_pod_at_a_time() {
        let d = rolling(
            deployment(3, "nginx:1"),
            IntOrString::Int(1),
            IntOrString::Int(0),
        );
        assert_eq!(
            rollout_with_invariants(d),
            [(1, 3), (1, 2), (2, 2), (2, 1), (3, 1), (3, 0)]
        );
    }

    #[test]
    fn rolling_update_with_25_percent_surge_and_unavailability_keeps_its_budget() {
        // 10 replicas: surge rounds 2.5 up to 3, unavailable rounds 2.5 down to 2.
        let d = rolling(deployment(10, "nginx:1"), pct("25%"), pct("25%"));
        assert_eq!(resolve_fenceposts(&d), (3, 2));
        let steps = rollout_with_invariants(d);
        assert_eq!(steps.first(), Some(&(3, 8)));
        assert_eq!(steps.last(), Some(&(10, 0)));
        // The default strategy is the same 25%/25%.
        assert_eq!(resolve_fenceposts(&deployment(10, "x")), (3, 2));
        let steps4 =
            rollout_with_invariants(rolling(deployment(4, "nginx:1"), pct("25%"), pct("25%")));
        assert_eq!(steps4, [(1, 3), (2, 3), (2, 1), (4, 1), (4, 0)]);
    }

    #[test]
    fn both_fenceposts_zero_still_allow_one_unavailable() {
        let d = rolling(deployment(3, "x"), IntOrString::Int(0), pct("0%"));
        assert_eq!(resolve_fenceposts(&d), (0, 1));
    }

    #[test]
    fn recreate_removes_every_old_pod_before_creating_new_ones() {
        let mut sim = Sim::new(recreate(deployment(3, "nginx:1")));
        sim.run(|_| {});
        sim.update_image("nginx:2");
        let mut saw_empty = false;
        sim.run(|s| {
            let hashes: std::collections::BTreeSet<String> =
                s.pods.iter().map(|p| s.template_hash_of(p)).collect();
            assert!(hashes.len() <= 1, "old and new pods coexist");
            saw_empty |= s.pods.is_empty();
        });
        assert!(saw_empty);
        assert_eq!(sim.split("nginx:2"), (3, 0));
    }

    #[test]
    fn recreate_waits_while_old_pods_are_still_terminating() {
        let d = recreate(deployment(2, "nginx:2"));
        let mut old = ReplicaSet {
            metadata: ObjectMeta {
                labels: labels(&[("app", "web"), (POD_TEMPLATE_HASH_LABEL, "old")]),
                owner_references: vec![controller_owner_ref("apps/v1", "Deployment", &d.metadata)],
                annotations: [(REVISION_ANNOTATION.to_string(), "1".to_string())].into(),
                ..meta("web-old", "old-uid")
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(pod_spec("nginx:1")),
                },
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus::default()),
            ..Default::default()
        };
        let mut pod = owned_by(
            ready_pod("web-old-1", "p1", &[("app", "web")]),
            controller_owner_ref("apps/v1", "ReplicaSet", &old.metadata),
        );
        pod.metadata.deletion_timestamp = Some(at(0));
        let plan1 = plan(&d, std::slice::from_ref(&old), &[pod], &at(1));
        assert!(
            !plan1
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_))),
            "{plan1:#?}"
        );
        // Once the pod is gone, the new ReplicaSet is created at full size.
        old.status = Some(ReplicaSetStatus::default());
        let plan2 = plan(&d, &[old], &[], &at(2));
        let created = plan2
            .iter()
            .find_map(|a| match a {
                Action::CreateReplicaSet(rs) => Some(rs),
                _ => None,
            })
            .expect("new ReplicaSet");
        assert_eq!(created.spec.as_ref().unwrap().replicas, Some(2));
        assert_eq!(created.metadata.annotations[REVISION_ANNOTATION], "2");
    }

    #[test]
    fn the_new_replica_set_is_named_by_the_template_hash_and_carries_it_in_its_selector() {
        let d = deployment(2, "nginx:1");
        let plan = plan(&d, &[], &[], &at(0));
        let Some(Action::CreateReplicaSet(rs)) = plan.first() else {
            panic!("{plan:#?}");
        };
        let hash = pod_template_hash(&d.spec.as_ref().unwrap().template, None);
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!(spec.selector.match_labels[POD_TEMPLATE_HASH_LABEL], hash);
        assert_eq!(
            spec.template.metadata.as_ref().unwrap().labels[POD_TEMPLATE_HASH_LABEL],
            hash
        );
        assert_eq!(rs.metadata.labels[POD_TEMPLATE_HASH_LABEL], hash);
        assert_eq!(rs.metadata.owner_references[0].uid, "d-uid");
        assert_eq!(rs.metadata.owner_references[0].controller, Some(true));
        assert_eq!(spec.replicas, Some(2));
    }

    #[test]
    fn the_template_hash_is_stable_short_safe_and_ignores_its_own_label() {
        let t = deployment(1, "nginx:1").spec.unwrap().template;
        let h = pod_template_hash(&t, None);
        assert_eq!(h.len(), 10);
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{h}");
        assert_eq!(h, pod_template_hash(&t.clone(), None));
        let mut labelled = t.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .insert(POD_TEMPLATE_HASH_LABEL.into(), h.clone());
        assert_eq!(pod_template_hash(&labelled, None), h);
        let other = deployment(1, "nginx:2").spec.unwrap().template;
        assert_ne!(pod_template_hash(&other, None), h);
        assert_ne!(pod_template_hash(&t, Some(1)), h);
    }

    #[test]
    fn a_name_collision_bumps_the_collision_count_instead_of_creating() {
        let d = deployment(1, "nginx:1");
        let hash = pod_template_hash(&d.spec.as_ref().unwrap().template, None);
        let squatter = ReplicaSet {
            metadata: meta(&format!("web-{hash}"), "squat"),
            ..Default::default()
        };
        let plan = plan(&d, &[squatter], &[], &at(0));
        assert!(
            !plan
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_)))
        );
        let status = plan
            .iter()
            .find_map(|a| match a {
                Action::UpdateDeploymentStatus { status, .. } => Some(status),
                _ => None,
            })
            .unwrap();
        assert_eq!(status.collision_count, Some(1));
    }

    #[test]
    fn a_matching_orphan_replica_set_is_adopted_and_reused() {
        let d = deployment(2, "nginx:1");
        let mut sim = Sim::new(d.clone());
        sim.run(|_| {});
        let mut orphan = sim.rss[0].clone();
        orphan.metadata.owner_references.clear();
        let plan = plan(&d, &[orphan], &[], &at(5));
        match &plan[0] {
            Action::SetOwnerReferences {
                object,
                owner_references,
            } => {
                assert_eq!(object.kind, "ReplicaSet");
                assert_eq!(owner_references[0].uid, "d-uid");
            }
            other => panic!("expected adoption, got {other:?}"),
        }
        assert!(
            !plan
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_)))
        );
    }

    #[test]
    fn scaling_without_a_template_change_resizes_the_current_replica_set() {
        let mut sim = Sim::new(deployment(3, "nginx:1"));
        sim.run(|_| {});
        sim.d.spec.as_mut().unwrap().replicas = Some(5);
        sim.d.metadata.generation = Some(2);
        sim.run(|_| {});
        assert_eq!(sim.rss.len(), 1);
        assert_eq!(sim.split("nginx:1"), (5, 0));
        sim.d.spec.as_mut().unwrap().replicas = Some(1);
        sim.d.metadata.generation = Some(3);
        sim.run(|_| {});
        assert_eq!(sim.split("nginx:1"), (1, 0));
        assert_eq!(sim.pods.len(), 1);
    }

    #[test]
    fn a_paused_deployment_only_updates_its_status() {
        let mut sim = Sim::new(deployment(2, "nginx:1"));
        sim.run(|_| {});
        sim.update_image("nginx:2");
        sim.d.spec.as_mut().unwrap().paused = Some(true);
        let plan = plan(&sim.d, &sim.rss, &sim.pods, &sim.now());
        assert_eq!(plan.len(), 1, "{plan:#?}");
        let Action::UpdateDeploymentStatus { status, .. } = &plan[0] else {
            panic!("{plan:#?}");
        };
        let progressing = find_condition(&status.conditions, "Progressing").unwrap();
        assert_eq!(progressing.reason.as_deref(), Some("DeploymentPaused"));
        assert_eq!(progressing.status, "Unknown");
    }

    #[test]
    fn status_reports_counts_and_kubernetes_conditions() {
        let mut sim = Sim::new(deployment(3, "nginx:1"));
        sim.run(|_| {});
        let st = sim.d.status.clone().unwrap();
        assert_eq!(
            (
                st.replicas,
                st.updated_replicas,
                st.ready_replicas,
                st.available_replicas,
                st.unavailable_replicas,
                st.observed_generation
            ),
            (Some(3), Some(3), Some(3), Some(3), Some(0), Some(1))
        );
        let available = find_condition(&st.conditions, "Available").unwrap();
        assert_eq!(
            (available.status.as_str(), available.reason.as_deref()),
            ("True", Some("MinimumReplicasAvailable"))
        );
        let progressing = find_condition(&st.conditions, "Progressing").unwrap();
        assert_eq!(
            progressing.reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
        assert_eq!(
            progressing.message.as_deref(),
            Some(
                format!(
                    "ReplicaSet {:?} has successfully progressed.",
                    sim.rss[0].metadata.name()
                )
                .as_str()
            )
        );
        // Converged: planning again changes nothing.
        assert_eq!(plan(&sim.d, &sim.rss, &sim.pods, &sim.now()), Vec::new());
    }

    #[test]
    fn a_stalled_rollout_exceeds_its_progress_deadline_and_fails() {
        let mut d = rolling(
            deployment(2, "nginx:1"),
            IntOrString::Int(1),
            IntOrString::Int(0),
        );
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
        let mut sim = Sim::new(d);
        sim.run(|_| {});
        sim.update_image("nginx:2");
        sim.act(); // New ReplicaSet created; its pod never becomes ready.
        let requeue = plan(&sim.d, &sim.rss, &sim.pods, &sim.now())
            .into_iter()
            .find_map(|a| match a {
                Action::RequeueAfter(d) => Some(d),
                _ => None,
            });
        assert_eq!(requeue, Some(Duration::from_secs(60)));
        sim.clock += 61;
        sim.act();
        let progressing = find_condition(&sim.d.status.as_ref().unwrap().conditions, "Progressing")
            .unwrap()
            .clone();
        assert_eq!(progressing.status, "False");
        assert_eq!(
            progressing.reason.as_deref(),
            Some("ProgressDeadlineExceeded")
        );
        assert_eq!(
            rollout_status(&sim.d),
            RolloutStatus::Failed("deployment \"web\" exceeded its progress deadline".into())
        );
    }

    #[test]
    fn old_replica_sets_beyond_the_history_limit_are_deleted_oldest_revision_first() {
        let d = deployment(1, "nginx:13");
        let owner = controller_owner_ref("apps/v1", "Deployment", &d.metadata);
        let rs = |rev: i64, image: &str, replicas: i32| ReplicaSet {
            metadata: ObjectMeta {
                labels: labels(&[("app", "web")]),
                annotations: [(REVISION_ANNOTATION.to_string(), rev.to_string())].into(),
                owner_references: vec![owner.clone()],
                generation: Some(1),
                creation_timestamp: Some(at(rev)),
                ..meta(&format!("web-{rev}"), &format!("rs-{rev}"))
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: labels(&[("app", "web")]),
                        ..Default::default()
                    }),
                    spec: Some(pod_spec(image)),
                },
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(replicas),
                available_replicas: Some(replicas),
                observed_generation: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Listed newest first to show the order comes from the revision.
        let mut rss: Vec<ReplicaSet> = (1..=12)
            .rev()
            .map(|r| rs(r, &format!("nginx:{r}"), 0))
            .collect();
        rss.push(rs(13, "nginx:13", 1));
        let deleted: Vec<String> = plan(&d, &rss, &[], &at(100))
            .into_iter()
            .filter_map(|a| match a {
                Action::Delete { object, .. } => Some(object.name),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["web-1", "web-2"]);
    }

    #[test]
    fn rollout_status_uses_kubectl_messages() {
        let mut d = deployment(3, "x");
        let status = |observed, replicas, updated, available| DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            ..Default::default()
        };
        let msg = |d: &Deployment| rollout_status(d).message("web");
        d.metadata.generation = Some(2);
        d.status = Some(status(1, 3, 3, 3));
        assert_eq!(
            msg(&d),
            "Waiting for deployment spec update to be observed..."
        );
        d.status = Some(status(2, 4, 1, 3));
        assert_eq!(
            msg(&d),
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        d.status = Some(status(2, 4, 3, 3));
        assert_eq!(
            msg(&d),
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
        d.status = Some(status(2, 3, 3, 1));
        assert_eq!(
            msg(&d),
            "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available..."
        );
        d.status = Some(status(2, 3, 3, 3));
        assert_eq!(rollout_status(&d), RolloutStatus::Complete);
        assert_eq!(msg(&d), "deployment \"web\" successfully rolled out");
    }
}

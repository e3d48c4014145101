//! The pure semantics of one object write: what the stored object becomes, which event it
//! makes, or why it is refused. No IO: the state machine feeds it the stored object and
//! persists what it returns, so every replica makes the same decision.

use serde_json::{Map, Value};

use super::command::{Applied, EventType, UpdateScope, Write, WriteError};

/// What the state machine must do to its table after a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Store [`Applied::object`] (kept in one place: objects are not copied for this).
    Put,
    Remove,
}

/// Decide one write against the currently stored object. `revision` is the revision the
/// write receives if it changes anything (the caller advances its counter only then).
///
/// Both are taken by value: the result is built from them in place, so the common writes
/// (a create, a binding, a status update) copy no object.
pub fn apply_write(
    current: Option<Value>,
    write: Write,
    revision: u64,
) -> (Result<Applied, WriteError>, Option<Mutation>) {
    match decide(current, write, revision) {
        Ok((applied, mutation)) => (Ok(applied), mutation),
        Err(e) => (Err(e), None),
    }
}

type Decision = Result<(Applied, Option<Mutation>), WriteError>;

fn decide(current: Option<Value>, write: Write, revision: u64) -> Decision {
    if let Write::Create { object, .. } | Write::Update { object, .. } = &write {
        check_shape(object)?;
    }
    match write {
        Write::Create { mut object, .. } => {
            if current.is_some() {
                return Err(WriteError::AlreadyExists);
            }
            let meta = meta_mut(&mut object);
            meta.insert("resourceVersion".into(), rv_value(revision));
            // Kubernetes tracks generation only for objects with a spec.
            if object.get("spec").is_some() {
                meta_mut(&mut object).insert("generation".into(), Value::from(1));
            }
            changed(object, EventType::Added)
        }
        Write::Update {
            object,
            scope: UpdateScope::Status,
            ..
        } => {
            let current = current.ok_or(WriteError::NotFound)?;
            check_preconditions(&current, &object)?;
            let status = match object {
                Value::Object(mut obj) => obj.remove("status"),
                _ => None,
            };
            replace_status(current, status, revision)
        }
        Write::MergeStatus { key, patch } => {
            let current = current.ok_or(WriteError::NotFound)?;
            check_preconditions(&current, &patch)?;
            let Some(status_patch) = patch.get("status") else {
                return unchanged(current);
            };
            let mut status = current.get("status").cloned().unwrap_or(Value::Null);
            merge_patch(&mut status, status_patch);
            let status = if status.is_null() {
                None
            } else {
                let info = info_of_key(&key).ok_or_else(|| {
                    WriteError::Invalid(format!("{key}: not a kind with a status subresource"))
                })?;
                Some(ketch_api::decode::admit_status(info, status).map_err(WriteError::Rejected)?)
            };
            replace_status(current, status, revision)
        }
        Write::Update { object, scope, .. } => {
            let current = current.ok_or(WriteError::NotFound)?;
            check_preconditions(&current, &object)?;
            update(current, object, scope, revision)
        }
        Write::MergePatch { key, patch, scope } => {
            let current = current.ok_or(WriteError::NotFound)?;
            check_preconditions(&current, &patch)?;
            // Secrets are stored sealed: only the API server can merge into one.
            if key.starts_with(SERVICES_PREFIX)
                || key.starts_with("secrets/")
                || scope == UpdateScope::Status
            {
                return Err(WriteError::Invalid(format!(
                    "{key}: a merge patch of {scope:?} scope is not applied by the store"
                )));
            }
            let info = info_of_key(&key)
                .ok_or_else(|| WriteError::Invalid(format!("{key}: not a served resource")))?;
            let mut merged = current.clone();
            merge_patch(&mut merged, &patch);
            let admitted =
                ketch_api::admit(info, merged).map_err(|e| WriteError::Rejected(e.errors))?;
            update(current, admitted, scope, revision)
        }
        Write::Delete {
            now,
            precondition_rv,
            ..
        } => {
            let mut current = current.ok_or(WriteError::NotFound)?;
            if let Some(want) = precondition_rv {
                let have = stored_rv(&current);
                if have != Some(want) {
                    return Err(WriteError::Conflict(format!(
                        "the resourceVersion precondition failed: stored {}, requested {want}",
                        have.map_or_else(|| "none".to_string(), |v| v.to_string())
                    )));
                }
            }
            if finalizers_empty(&current) {
                meta_mut(&mut current).insert("resourceVersion".into(), rv_value(revision));
                return removed(current);
            }
            if is_terminating(&current) {
                // Already marked; deletion completes when the last finalizer is removed.
                return unchanged(current);
            }
            let meta = meta_mut(&mut current);
            meta.insert("resourceVersion".into(), rv_value(revision));
            meta.insert("deletionTimestamp".into(), Value::from(now));
            changed(current, EventType::Modified)
        }
        Write::Bind { uid, node, now, .. } => {
            let mut current = current.ok_or(WriteError::NotFound)?;
            let name = current
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let stored_uid = current.pointer("/metadata/uid").and_then(Value::as_str);
            if let Some(want) = &uid
                && stored_uid != Some(want.as_str())
            {
                return Err(WriteError::Conflict(format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                    stored_uid.unwrap_or_default()
                )));
            }
            if is_terminating(&current) {
                return Err(WriteError::Conflict(format!(
                    "pod {name} is being deleted, cannot be assigned to a host"
                )));
            }
            if let Some(bound) = current
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(WriteError::Conflict(format!(
                    "pod {name} is already assigned to node \"{bound}\""
                )));
            }
            let generation = meta_u64(&current, "generation").unwrap_or(1) + 1;
            bind_pod(&mut current, &node, &now);
            let meta = meta_mut(&mut current);
            meta.insert("generation".into(), Value::from(generation));
            meta.insert("resourceVersion".into(), rv_value(revision));
            changed(current, EventType::Modified)
        }
    }
}

/// A spec (or whole-object) update's result, its preconditions checked: `object` with the
/// stored status (for `Spec`) and server-owned metadata; the generation advances when the
/// spec changed.
fn update(current: Value, object: Value, scope: UpdateScope, revision: u64) -> Decision {
    let mut next = merge_spec_update(&current, object, scope);
    check_role_ref(&current, &next)?;
    if equal_ignoring_rv(&next, &current) {
        return unchanged(current);
    }
    if current.get("spec") != next.get("spec") {
        let generation = meta_u64(&current, "generation").unwrap_or(1) + 1;
        meta_mut(&mut next).insert("generation".into(), Value::from(generation));
    }
    meta_mut(&mut next).insert("resourceVersion".into(), rv_value(revision));
    if is_terminating(&next) && finalizers_empty(&next) {
        return removed(next);
    }
    changed(next, EventType::Modified)
}

/// A binding's `roleRef` is immutable (Kubernetes: delete and recreate the binding), so a
/// grant never silently changes meaning under its subjects.
fn check_role_ref(current: &Value, next: &Value) -> Result<(), WriteError> {
    let binding = matches!(
        current.get("kind").and_then(Value::as_str),
        Some("RoleBinding" | "ClusterRoleBinding")
    );
    if binding && current.get("roleRef") != next.get("roleRef") {
        return Err(WriteError::FieldInvalid {
            field: "roleRef".into(),
            value: next
                .get("roleRef")
                .map(Value::to_string)
                .unwrap_or_default(),
            detail: "cannot change roleRef".into(),
        });
    }
    Ok(())
}

/// A status write's result: `current` with `status` (`None`: none) in place of its own. The
/// spec (and so the generation) is the stored one, so the write changes nothing exactly when
/// the statuses are equal.
fn replace_status(mut current: Value, status: Option<Value>, revision: u64) -> Decision {
    if current.get("status") == status.as_ref() {
        return unchanged(current);
    }
    let obj = current
        .as_object_mut()
        .expect("stored objects are JSON objects");
    match status {
        Some(status) => obj.insert("status".into(), status),
        None => obj.remove("status"),
    };
    meta_mut(&mut current).insert("resourceVersion".into(), rv_value(revision));
    if is_terminating(&current) && finalizers_empty(&current) {
        return removed(current);
    }
    changed(current, EventType::Modified)
}

/// The resource a store key (`{plural}/{namespace}/{name}`) belongs to: plurals are unique
/// among the served resources.
fn info_of_key(key: &str) -> Option<&'static ketch_api::ResourceInfo> {
    let plural = crate::attrs::plural_of_key(key);
    ketch_api::RESOURCES.iter().find(|r| r.plural == plural)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Sets `spec.nodeName` and replaces any `PodScheduled` condition with `True` (what the
/// Kubernetes binding subresource does).
fn bind_pod(pod: &mut Value, node: &str, now: &str) {
    let Some(obj) = pod.as_object_mut() else {
        return;
    };
    obj.entry("spec")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .map(|spec| spec.insert("nodeName".into(), Value::from(node)));
    let status = obj
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let conditions = status
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = conditions.as_array_mut() {
        list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
        list.push(serde_json::json!({
            "type": "PodScheduled", "status": "True", "lastTransitionTime": now,
        }));
    }
}

/// What Kubernetes says when a Service asks for a nodePort another Service holds.
pub const NODE_PORT_ALLOCATED: &str = "provided port is already allocated";

/// Store keys of Services start with this (`services/{namespace}/{name}`).
pub const SERVICES_PREFIX: &str = "services/";

/// The `(index, nodePort)` pairs a write claims: only a spec write of a Service claims node
/// ports (a `/status` write keeps the stored spec).
///
/// Node ports are unique across all Services, a cross-object invariant the per-key
/// [`apply_write`] cannot see. The state machine checks it with [`check_node_ports`] in the
/// same (raft-ordered) apply, so two concurrent creates that picked the same port cannot both
/// succeed; the API server's allocation is only a best guess made before proposing.
pub fn claimed_node_ports(write: &Write) -> Vec<(usize, i64)> {
    let object = match write {
        Write::Create { key, object } if key.starts_with(SERVICES_PREFIX) => object,
        Write::Update {
            key, object, scope, ..
        } if key.starts_with(SERVICES_PREFIX) && *scope != UpdateScope::Status => object,
        _ => return Vec::new(),
    };
    node_ports_of(object)
}

/// The `(index, nodePort)` pairs of a stored Service (`spec.ports[*].nodePort`, 0 = none).
pub fn node_ports_of(service: &Value) -> Vec<(usize, i64)> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((i, p.get("nodePort")?.as_i64()?)))
                .filter(|(_, np)| *np != 0)
                .collect()
        })
        .unwrap_or_default()
}

/// Refuses a write claiming a node port in `held_by_others` (the node ports of every other
/// stored Service), naming the first offending field.
pub fn check_node_ports(
    claimed: &[(usize, i64)],
    held_by_others: &std::collections::HashSet<i64>,
) -> Result<(), WriteError> {
    match claimed.iter().find(|(_, np)| held_by_others.contains(np)) {
        Some((i, np)) => Err(WriteError::FieldInvalid {
            field: format!("spec.ports[{i}].nodePort"),
            value: np.to_string(),
            detail: NODE_PORT_ALLOCATED.into(),
        }),
        None => Ok(()),
    }
}

fn changed(object: Value, event: EventType) -> Decision {
    Ok((
        Applied {
            object,
            event: Some(event),
            encoded: None,
        },
        Some(Mutation::Put),
    ))
}

/// The write changes nothing: no revision, no event, the stored object as the answer.
fn unchanged(current: Value) -> Decision {
    Ok((
        Applied {
            object: current,
            event: None,
            encoded: None,
        },
        None,
    ))
}

fn removed(object: Value) -> Decision {
    Ok((
        Applied {
            object,
            event: Some(EventType::Deleted),
            encoded: None,
        },
        Some(Mutation::Remove),
    ))
}

/// resourceVersion (when given) must match; uid (when given) must match.
fn check_preconditions(current: &Value, incoming: &Value) -> Result<(), WriteError> {
    let meta = incoming.get("metadata");
    if let Some(rv) = meta
        .and_then(|m| m.get("resourceVersion"))
        .and_then(Value::as_str)
        && !rv.is_empty()
    {
        let want: u64 = rv.parse().map_err(|_| {
            WriteError::Invalid(format!(
                "metadata.resourceVersion: invalid value {rv:?}: must be a decimal number"
            ))
        })?;
        if stored_rv(current) != Some(want) {
            return Err(WriteError::Conflict(format!(
                "the object has been modified; please apply your changes to the latest version and try again (stored resourceVersion {}, yours {want})",
                stored_rv(current).unwrap_or(0)
            )));
        }
    }
    if let Some(uid) = meta.and_then(|m| m.get("uid")).and_then(Value::as_str)
        && !uid.is_empty()
        && current.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
    {
        return Err(WriteError::Conflict(format!(
            "metadata.uid: {uid} does not match the stored object (it was deleted and re-created)"
        )));
    }
    Ok(())
}

/// Metadata fields the server owns: a client cannot change them by update.
const SERVER_OWNED_META: [&str; 6] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "generation",
    "namespace",
    "name",
];

/// The object a spec (or whole-object) update stores: the incoming object, with the stored
/// status (for kinds with a status subresource) and the server-owned metadata.
fn merge_spec_update(current: &Value, incoming: Value, scope: UpdateScope) -> Value {
    let mut next = incoming;
    if scope == UpdateScope::Spec {
        let obj = next
            .as_object_mut()
            .expect("incoming objects are JSON objects");
        match current.get("status") {
            Some(status) => obj.insert("status".into(), status.clone()),
            None => obj.remove("status"),
        };
    }
    let cur_meta = current.get("metadata").and_then(Value::as_object);
    let meta = meta_mut(&mut next);
    for field in SERVER_OWNED_META {
        match cur_meta.and_then(|m| m.get(field)) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    next
}

/// Refuses a written object that is not a JSON object whose `metadata`, when present, is an
/// object. The API server proposes only admitted objects, but an entry is decoded from the
/// log (or a peer) as any JSON, and [`meta_mut`]'s panic on such a write would stop the
/// state machine on every replica; a refusal is deterministic like every other.
fn check_shape(object: &Value) -> Result<(), WriteError> {
    match object.as_object().map(|o| o.get("metadata")) {
        Some(None | Some(Value::Object(_))) => Ok(()),
        _ => Err(WriteError::Invalid(
            "the object and its metadata must be JSON objects".into(),
        )),
    }
}

/// The object's metadata, created when absent. Objects that reach it passed [`check_shape`]
/// or were stored after passing it.
fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    let obj = object
        .as_object_mut()
        .expect("objects reaching the store are JSON objects");
    obj.entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("metadata is an object")
}

fn meta_u64(object: &Value, field: &str) -> Option<u64> {
    object.get("metadata")?.get(field)?.as_u64()
}

fn stored_rv(object: &Value) -> Option<u64> {
    object
        .pointer("/metadata/resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

fn rv_value(revision: u64) -> Value {
    // Kubernetes clients treat resourceVersion as an opaque string.
    Value::from(revision.to_string())
}

/// Whether two objects are equal apart from `metadata.resourceVersion`; compares in place,
/// since an update that changes nothing is checked on every write.
fn equal_ignoring_rv(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let meta_eq = |ma: &Map<String, Value>, mb: &Map<String, Value>| {
        let others =
            |m: &Map<String, Value>| m.len() - usize::from(m.contains_key("resourceVersion"));
        others(ma) == others(mb)
            && ma
                .iter()
                .filter(|(k, _)| *k != "resourceVersion")
                .all(|(k, v)| mb.get(k) == Some(v))
    };
    a.len() == b.len()
        && a.iter().all(|(k, va)| match (b.get(k), k.as_str()) {
            (None, _) => false,
            (Some(vb), "metadata") => match (va.as_object(), vb.as_object()) {
                (Some(ma), Some(mb)) => meta_eq(ma, mb),
                _ => va == vb,
            },
            (Some(vb), _) => va == vb,
        })
}

fn is_terminating(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

fn finalizers_empty(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}));
    }

    #[test]
    fn a_write_whose_object_or_metadata_is_not_an_object_is_refused_not_a_panic() {
        // Found by the fuzz harness (src/fuzz.rs): a raft entry holding such a write
        // panicked the state machine in `meta_mut`.
        for object in [json!({"metadata": "x"}), json!([1]), json!("pod")] {
            let (res, m) = apply_write(None, create(object.clone()), 5);
            assert!(matches!(res, Err(WriteError::Invalid(_))), "{object}");
            assert!(m.is_none());
            let update = Write::Update {
                key: "pods/default/a".into(),
                object: object.clone(),
                scope: UpdateScope::Spec,
            };
            let (res, _) = apply_write(Some(stored(3)), update, 5);
            assert!(matches!(res, Err(WriteError::Invalid(_))), "{object}");
        }
        let (res, _) = apply_write(None, create(json!({"spec": {}})), 5);
        assert!(res.is_ok());
    }

    fn create(obj: Value) -> Write {
        Write::Create {
            key: "pods/default/a".into(),
            object: obj,
        }
    }

    fn stored(rv: u64) -> Value {
        json!({"metadata": {"name": "a", "uid": "u1", "resourceVersion": rv.to_string(), "generation": 1},
               "spec": {"x": 1}, "status": {"phase": "Running"}})
    }

    #[test]
    fn a_binding_sets_the_node_and_condition_once_and_checks_uid_and_deletion() {
        let bind = |uid: Option<&str>| Write::Bind {
            key: "pods/default/a".into(),
            uid: uid.map(Into::into),
            node: "n1".into(),
            now: "2026-11-21T00:00:00Z".into(),
        };
        let mut pending = stored(3);
        pending["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                   {"type": "Other", "status": "True"}]);
        let (res, m) = apply_write(Some(pending.clone()), bind(Some("u1")), 9);
        let bound = res.unwrap().object;
        assert!(matches!(m, Some(Mutation::Put)));
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["metadata"]["resourceVersion"], "9");
        assert_eq!(bound["metadata"]["generation"], 2);
        assert_eq!(
            bound["status"]["conditions"],
            json!([{"type": "Other", "status": "True"},
                   {"type": "PodScheduled", "status": "True",
                    "lastTransitionTime": "2026-11-21T00:00:00Z"}])
        );

        let (res, m) = apply_write(Some(bound.clone()), bind(None), 10);
        assert_eq!(
            res.unwrap_err(),
            WriteError::Conflict("pod a is already assigned to node \"n1\"".into())
        );
        assert!(m.is_none());
        let (res, _) = apply_write(Some(pending.clone()), bind(Some("u2")), 10);
        assert!(
            matches!(res, Err(WriteError::Conflict(m)) if m.contains("UID in precondition: u2"))
        );
        let mut deleting = stored(3);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-21T00:00:00Z");
        let (res, _) = apply_write(Some(deleting.clone()), bind(None), 10);
        assert!(matches!(res, Err(WriteError::Conflict(m)) if m.contains("being deleted")));
        let (res, _) = apply_write(None, bind(None), 10);
        assert_eq!(res.unwrap_err(), WriteError::NotFound);
    }

    #[test]
    fn a_status_merge_patch_merges_admits_and_checks_preconditions() {
        let patch = |p: Value| Write::MergeStatus {
            key: "pods/default/a".into(),
            patch: p,
        };
        let ready = json!([{"type": "Ready", "status": "True"}]);
        // Merged into the stored status; the spec and the rest of the patch are not looked at.
        let (res, m) = apply_write(
            Some(stored(3)),
            patch(json!({"metadata": {"labels": {"x": "y"}}, "spec": {"x": 9},
                         "status": {"conditions": ready, "podIP": null}})),
            9,
        );
        let applied = res.unwrap();
        assert!(matches!(m, Some(Mutation::Put)));
        assert_eq!(applied.event, Some(EventType::Modified));
        assert_eq!(
            applied.object["status"],
            json!({"phase": "Running", "conditions": ready})
        );
        assert_eq!(applied.object["spec"], json!({"x": 1}));
        assert_eq!(applied.object["metadata"]["generation"], 1);
        assert_eq!(applied.object["metadata"]["resourceVersion"], "9");
        assert!(applied.object["metadata"].get("labels").is_none());

        // The same status again, or no status in the patch: nothing changes.
        let merged = applied.object;
        let (res, m) = apply_write(
            Some(merged.clone()),
            patch(json!({"status": {"phase": "Running"}})),
            10,
        );
        assert_eq!(res.unwrap().event, None);
        assert!(m.is_none());
        let (res, _) = apply_write(Some(merged.clone()), patch(json!({"spec": {}})), 10);
        assert_eq!(res.unwrap().event, None);

        // Preconditions: a stale resourceVersion or another uid is a conflict.
        let (res, _) = apply_write(
            Some(merged.clone()),
            patch(json!({"metadata": {"resourceVersion": "3"}, "status": {"phase": "Failed"}})),
            10,
        );
        assert!(matches!(res, Err(WriteError::Conflict(_))));
        let (res, _) = apply_write(
            Some(merged.clone()),
            patch(json!({"metadata": {"uid": "u2"}, "status": {"phase": "Failed"}})),
            10,
        );
        assert!(matches!(res, Err(WriteError::Conflict(_))));

        // The merged status is admitted: a field the status type lacks is refused by path.
        let (res, m) = apply_write(
            Some(merged.clone()),
            patch(json!({"status": {"conditions": [{"type": "Ready", "bogus": 1}]}})),
            10,
        );
        let Err(WriteError::Rejected(errors)) = res else {
            panic!("expected a rejection, got {res:?}");
        };
        assert_eq!(errors[0].field, "status.conditions[0].bogus");
        assert!(m.is_none());

        // `status: null` removes it; a missing object is not found.
        let (res, _) = apply_write(Some(merged), patch(json!({"status": null})), 11);
        assert!(res.unwrap().object.get("status").is_none());
        let (res, _) = apply_write(None, patch(json!({"status": {}})), 11);
        assert_eq!(res.unwrap_err(), WriteError::NotFound);
    }

    #[test]
    fn a_merge_patch_is_merged_admitted_and_checked_by_the_store() {
        let key = "configmaps/default/a";
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "default", "uid": "u1", "resourceVersion": "3"},
            "data": {"k": "v", "gone": "x"}});
        let patch = |p: Value| Write::MergePatch {
            key: key.into(),
            patch: p,
            scope: UpdateScope::Whole,
        };
        let (res, m) = apply_write(
            Some(cm.clone()),
            patch(json!({"metadata": {"labels": {"l": "1"}, "uid": "u1"},
                         "data": {"k": "v2", "gone": null}})),
            7,
        );
        let applied = res.unwrap();
        assert!(matches!(m, Some(Mutation::Put)));
        assert_eq!(applied.object["data"], json!({"k": "v2"}));
        assert_eq!(applied.object["metadata"]["labels"], json!({"l": "1"}));
        assert_eq!(applied.object["metadata"]["resourceVersion"], "7");

        // Changing nothing consumes no revision; a stale resourceVersion is a conflict.
        let (res, m) = apply_write(Some(cm.clone()), patch(json!({"data": {"k": "v"}})), 8);
        assert_eq!(res.unwrap().event, None);
        assert!(m.is_none());
        let (res, _) = apply_write(
            Some(cm.clone()),
            patch(json!({"metadata": {"resourceVersion": "2"}, "data": {"k": "w"}})),
            8,
        );
        assert!(matches!(res, Err(WriteError::Conflict(_))));

        // The merged object is admitted: the error names the field.
        let (res, _) = apply_write(Some(cm.clone()), patch(json!({"data": {"k": 1}})), 8);
        let Err(WriteError::Rejected(errors)) = res else {
            panic!("expected a rejection, got {res:?}");
        };
        assert_eq!(errors[0].field, "data.k");

        // Services are patched by the API server (node ports), never here.
        let svc = Write::MergePatch {
            key: "services/default/s".into(),
            patch: json!({}),
            scope: UpdateScope::Spec,
        };
        let (res, _) = apply_write(Some(cm), svc, 8);
        assert!(matches!(res, Err(WriteError::Invalid(_))));
    }

    #[test]
    fn create_sets_revision_and_generation_and_refuses_a_taken_key() {
        let (res, m) = apply_write(
            None,
            create(json!({"metadata": {"name": "a"}, "spec": {}})),
            7,
        );
        let applied = res.unwrap();
        assert_eq!(applied.event, Some(EventType::Added));
        assert_eq!(applied.object["metadata"]["resourceVersion"], "7");
        assert_eq!(applied.object["metadata"]["generation"], 1);
        assert!(matches!(m, Some(Mutation::Put)));
        let (res, m) = apply_write(Some(stored(3)), create(json!({"metadata": {}})), 8);
        assert_eq!(res.unwrap_err(), WriteError::AlreadyExists);
        assert!(m.is_none());
    }

    #[test]
    fn update_with_a_stale_resource_version_is_a_conflict() {
        let w = Write::Update {
            key: "k".into(),
            object: json!({"metadata": {"name": "a", "resourceVersion": "2"}, "spec": {"x": 2}}),
            scope: UpdateScope::Spec,
        };
        let (res, m) = apply_write(Some(stored(3)), w, 9);
        assert!(matches!(res, Err(WriteError::Conflict(_))));
        assert!(m.is_none());
    }

    #[test]
    fn spec_update_keeps_status_bumps_generation_and_server_owned_metadata() {
        let w = Write::Update {
            key: "k".into(),
            object: json!({"metadata": {"name": "a", "resourceVersion": "3", "uid": "u1", "generation": 40},
                           "spec": {"x": 2}, "status": {"phase": "Hacked"}}),
            scope: UpdateScope::Spec,
        };
        let applied = apply_write(Some(stored(3)), w, 9).0.unwrap();
        assert_eq!(applied.object["status"]["phase"], "Running");
        assert_eq!(applied.object["metadata"]["generation"], 2);
        assert_eq!(applied.object["metadata"]["resourceVersion"], "9");
        assert_eq!(applied.event, Some(EventType::Modified));
    }

    #[test]
    fn status_update_changes_only_status_and_not_generation() {
        let w = Write::Update {
            key: "k".into(),
            object: json!({"metadata": {"name": "a"}, "spec": {"x": 99}, "status": {"phase": "Failed"}}),
            scope: UpdateScope::Status,
        };
        let applied = apply_write(Some(stored(3)), w, 4).0.unwrap();
        assert_eq!(applied.object["spec"]["x"], 1);
        assert_eq!(applied.object["status"]["phase"], "Failed");
        assert_eq!(applied.object["metadata"]["generation"], 1);
    }

    #[test]
    fn an_update_that_changes_nothing_consumes_no_revision() {
        let w = Write::Update {
            key: "k".into(),
            object: stored(3),
            scope: UpdateScope::Spec,
        };
        let (res, m) = apply_write(Some(stored(3)), w, 4);
        assert_eq!(res.unwrap().event, None);
        assert!(m.is_none());

        // A status write equal to the stored status, whatever else it carries.
        let mut same_status = stored(3);
        same_status["spec"]["x"] = json!(42);
        let w = |object| Write::Update {
            key: "k".into(),
            object,
            scope: UpdateScope::Status,
        };
        let (res, m) = apply_write(Some(stored(3)), w(same_status), 4);
        let applied = res.unwrap();
        assert_eq!((applied.event, m), (None, None));
        assert_eq!(applied.object, stored(3));
        // Dropping a status is a change; so is a new one.
        let (res, _) = apply_write(Some(stored(3)), w(json!({"metadata": {}})), 4);
        let applied = res.unwrap();
        assert_eq!(applied.event, Some(EventType::Modified));
        assert!(applied.object.get("status").is_none());
        assert_eq!(applied.object["metadata"]["resourceVersion"], "4");
    }

    #[test]
    fn delete_with_finalizers_marks_then_last_finalizer_removal_deletes() {
        let mut obj = stored(3);
        obj["metadata"]["finalizers"] = json!(["ketch.dev/x"]);
        let del = Write::Delete {
            key: "k".into(),
            now: "2026-01-01T00:00:00Z".into(),
            precondition_rv: None,
        };
        let (res, m) = apply_write(Some(obj.clone()), del.clone(), 4);
        let marked = res.unwrap().object;
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            "2026-01-01T00:00:00Z"
        );
        assert!(matches!(m, Some(Mutation::Put)));
        // Deleting again changes nothing.
        let (res, m) = apply_write(Some(marked.clone()), del, 5);
        assert_eq!(res.unwrap().event, None);
        assert!(m.is_none());
        // Removing the finalizer completes the deletion.
        let mut cleared = marked.clone();
        cleared["metadata"]["finalizers"] = json!([]);
        let w = Write::Update {
            key: "k".into(),
            object: cleared,
            scope: UpdateScope::Spec,
        };
        let (res, m) = apply_write(Some(marked.clone()), w, 6);
        assert_eq!(res.unwrap().event, Some(EventType::Deleted));
        assert_eq!(m, Some(Mutation::Remove));
    }

    #[test]
    fn only_service_spec_writes_claim_node_ports_and_a_held_port_is_refused_by_field() {
        let svc = json!({"metadata": {"name": "b"}, "spec": {"type": "NodePort", "ports": [
            {"port": 80, "nodePort": 30001}, {"port": 81}, {"port": 82, "nodePort": 30080}]}});
        let create = Write::Create {
            key: "services/default/b".into(),
            object: svc.clone(),
        };
        assert_eq!(claimed_node_ports(&create), vec![(0, 30001), (2, 30080)]);
        let status = Write::Update {
            key: "services/default/b".into(),
            object: svc.clone(),
            scope: UpdateScope::Status,
        };
        assert!(claimed_node_ports(&status).is_empty());
        let not_a_service = Write::Create {
            key: "configmaps/default/b".into(),
            object: svc,
        };
        assert!(claimed_node_ports(&not_a_service).is_empty());

        let held = std::collections::HashSet::from([30080]);
        let err = check_node_ports(&claimed_node_ports(&create), &held).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.ports[2].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        assert!(check_node_ports(&[(0, 30001)], &held).is_ok());
    }

    #[test]
    fn delete_without_finalizers_removes_and_checks_the_precondition() {
        let del = |rv| Write::Delete {
            key: "k".into(),
            now: "t".into(),
            precondition_rv: rv,
        };
        let (res, _) = apply_write(Some(stored(3)), del(Some(2)), 4);
        assert!(matches!(res, Err(WriteError::Conflict(_))));
        let (res, m) = apply_write(Some(stored(3)), del(Some(3)), 4);
        assert_eq!(res.unwrap().object["metadata"]["resourceVersion"], "4");
        assert_eq!(m, Some(Mutation::Remove));
        let (res, _) = apply_write(None, del(None), 4);
        assert_eq!(res.unwrap_err(), WriteError::NotFound);
    }

    #[test]
    fn a_bindings_role_ref_cannot_change_but_its_subjects_can() {
        let binding = |role: &str, user: &str| {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "b", "namespace": "d", "resourceVersion": "1"},
                "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}})
        };
        let write = |obj: Value| Write::Update {
            key: "rolebindings/d/b".into(),
            object: obj,
            scope: UpdateScope::Whole,
        };
        let (res, _) = apply_write(Some(binding("r", "u")), write(binding("other", "u")), 2);
        assert_eq!(
            res.unwrap_err().to_string(),
            r#"roleRef: Invalid value: {"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"other"}: cannot change roleRef"#
        );
        let (res, _) = apply_write(Some(binding("r", "u")), write(binding("r", "v")), 2);
        assert!(res.is_ok());
    }

    #[test]
    fn equality_ignores_only_the_resource_version() {
        let base = json!({"metadata": {"name": "a", "resourceVersion": "3"}, "spec": {"x": 1}});
        let cases = [
            (
                json!({"metadata": {"name": "a", "resourceVersion": "9"}, "spec": {"x": 1}}),
                true,
            ),
            (json!({"metadata": {"name": "a"}, "spec": {"x": 1}}), true),
            (
                json!({"spec": {"x": 1}, "metadata": {"resourceVersion": "3", "name": "a"}}),
                true,
            ),
            (
                json!({"metadata": {"name": "b", "resourceVersion": "3"}, "spec": {"x": 1}}),
                false,
            ),
            (
                json!({"metadata": {"name": "a", "resourceVersion": "3"}, "spec": {"x": 2}}),
                false,
            ),
            (
                json!({"metadata": {"name": "a", "uid": "u"}, "spec": {"x": 1}}),
                false,
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {}}),
                false,
            ),
            (json!({"metadata": "odd", "spec": {"x": 1}}), false),
        ];
        for (other, want) in cases {
            assert_eq!(equal_ignoring_rv(&base, &other), want, "{other}");
            assert_eq!(equal_ignoring_rv(&other, &base), want, "{other} (swapped)");
        }
    }
}

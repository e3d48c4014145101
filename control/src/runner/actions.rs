//! Executes the [`Action`]s of a controller plan through the API.
//!
//! Every write to an existing object carries the planned object's `uid` as a precondition (a
//! merge patch's `metadata.uid` is compared by the store), so a plan made for one incarnation
//! never touches a re-created namesake. Writes that change an object's own state in a
//! read-modify-write way (finalizers) also carry its `resourceVersion`.

use std::collections::HashMap;
use std::time::Duration;

use ketch_api::resource::{ResourceInfo, by_kind};
use ketch_client::Client;
use serde_json::{Value, json};

use super::Error;
use crate::controllers::{Action, FOREGROUND_FINALIZER, ObjectKey, Plan, Propagation};

/// What executing (part of) a plan did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per kind, the highest resourceVersion written: the caches must reach it before the
    /// next plan.
    pub written: HashMap<&'static str, u64>,
    /// The shortest [`Action::RequeueAfter`] seen.
    pub requeue_after: Option<Duration>,
    /// The failure that stopped the plan, if any.
    pub error: Option<Error>,
}

impl Outcome {
    pub fn record(&mut self, kind: &'static str, object: &Value) {
        let rv = rv_of(object);
        let e = self.written.entry(kind).or_default();
        *e = (*e).max(rv);
    }

    pub fn rv(&self, kind: &str) -> u64 {
        self.written.get(kind).copied().unwrap_or(0)
    }
}

pub fn rv_of(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub fn info_of(api_version: &str, kind: &str) -> Result<&'static ResourceInfo, Error> {
    by_kind(api_version, kind).ok_or_else(|| Error::UnknownKind {
        api_version: api_version.into(),
        kind: kind.into(),
    })
}

fn ns(key: &ObjectKey) -> Option<&str> {
    Some(key.namespace.as_str()).filter(|s| !s.is_empty())
}

fn is_not_found(e: &ketch_client::Error) -> bool {
    e.code() == Some(404)
}

/// Runs `plan` in order and stops at the first failure. `status_base` is the object the plan
/// was made for, as JSON: status actions replace its `status` (through the status subresource)
/// instead of merging, so fields that became unset are cleared.
pub async fn execute_plan(client: &Client, plan: Plan, status_base: Option<&Value>) -> Outcome {
    let mut out = Outcome::default();
    for action in plan {
        if let Err(e) = execute(client, action, status_base, &mut out).await {
            out.error = Some(e);
            break;
        }
    }
    out
}

/// Executes one action, recording what it wrote in `out`.
///
/// # Errors
/// The API's refusal (409 when a precondition failed), or [`Error::UnknownKind`].
pub async fn execute(
    client: &Client,
    action: Action,
    status_base: Option<&Value>,
    out: &mut Outcome,
) -> Result<(), Error> {
    match action {
        Action::CreatePod(pod) => {
            let info = &ketch_api::resource::PODS;
            let created = client
                .create(info, pod.metadata.namespace.as_deref(), &to_value(&pod))
                .await?;
            out.record(info.kind, &created);
        }
        Action::CreateReplicaSet(rs) => {
            let info = &ketch_api::resource::REPLICASETS;
            // A 409 AlreadyExists means an earlier run created it and the cache has not shown
            // it yet: the error requeues, and the next plan sees (or adopts) it.
            let created = client
                .create(info, rs.metadata.namespace.as_deref(), &to_value(&rs))
                .await?;
            out.record(info.kind, &created);
        }
        Action::CreateEndpointSlice(slice) => {
            let info = &ketch_api::resource::ENDPOINTSLICES;
            // A 409 AlreadyExists means the cache has not shown an earlier create yet: the
            // error requeues, and the next plan updates it instead.
            let created = client
                .create(info, slice.metadata.namespace.as_deref(), &to_value(&slice))
                .await?;
            out.record(info.kind, &created);
        }
        Action::UpdateEndpointSlice { slice, desired } => {
            // Lists are replaced whole by a merge patch, so an emptied list must be sent as
            // `[]` (the object's serializer would omit it).
            let p = json!({
                "metadata": {"uid": slice.uid, "labels": desired.metadata.labels},
                "addressType": desired.address_type,
                "endpoints": desired.endpoints,
                "ports": desired.ports,
            });
            patch(client, &slice, p, out).await?;
        }
        Action::ScaleReplicaSet {
            replica_set,
            replicas,
        } => {
            patch(
                client,
                &replica_set,
                json!({"metadata": {"uid": replica_set.uid}, "spec": {"replicas": replicas}}),
                out,
            )
            .await?;
        }
        Action::SetAnnotations {
            object,
            annotations,
        } => {
            let p = json!({"metadata": {"uid": object.uid, "annotations": annotations}});
            patch(client, &object, p, out).await?;
        }
        Action::SetOwnerReferences {
            object,
            owner_references,
        } => {
            let p = json!({"metadata": {"uid": object.uid, "ownerReferences": owner_references}});
            match patch(client, &object, p, out).await {
                // Gone already: nothing to adopt or release.
                Err(Error::Api(e)) if is_not_found(&e) => {}
                r => r?,
            }
        }
        Action::Delete {
            object,
            propagation,
        } => delete(client, &object, propagation, out).await?,
        Action::RemoveFinalizer { object, finalizer } => {
            let info = info_of(&object.api_version, &object.kind)?;
            let current = match client.get(info, ns(&object), &object.name).await {
                Err(e) if is_not_found(&e) => return Ok(()),
                r => r?,
            };
            if current.pointer("/metadata/uid").and_then(Value::as_str) != Some(&object.uid) {
                return Ok(());
            }
            let finalizers: Vec<Value> = current
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !finalizers.iter().any(|f| f == finalizer.as_str()) {
                return Ok(());
            }
            let kept: Vec<Value> = finalizers
                .into_iter()
                .filter(|f| f != finalizer.as_str())
                .collect();
            let p = json!({"metadata": {
                "uid": object.uid,
                "resourceVersion": current.pointer("/metadata/resourceVersion"),
                "finalizers": kept,
            }});
            match patch(client, &object, p, out).await {
                // Removing the last finalizer of a terminating object deletes it.
                Err(Error::Api(e)) if is_not_found(&e) => {}
                r => r?,
            }
        }
        Action::UpdateReplicaSetStatus {
            replica_set,
            status,
        } => replace_status(client, &replica_set, to_value(&status), status_base, out).await?,
        Action::UpdateDeploymentStatus { deployment, status } => {
            replace_status(client, &deployment, to_value(&status), status_base, out).await?;
        }
        Action::RequeueAfter(d) => {
            out.requeue_after = Some(out.requeue_after.map_or(d, |r| r.min(d)));
        }
    }
    Ok(())
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("API objects serialize")
}

async fn patch(client: &Client, key: &ObjectKey, p: Value, out: &mut Outcome) -> Result<(), Error> {
    let info = info_of(&key.api_version, &key.kind)?;
    let written = client
        .merge_patch(info, ns(key), &key.name, &p, false)
        .await?;
    out.record(info.kind, &written);
    Ok(())
}

/// PUT `/status` with `status` on the planned object (uid precondition, no resourceVersion:
/// the controller is the only status writer and the next plan corrects a stale one).
async fn replace_status(
    client: &Client,
    key: &ObjectKey,
    status: Value,
    base: Option<&Value>,
    out: &mut Outcome,
) -> Result<(), Error> {
    let info = info_of(&key.api_version, &key.kind)?;
    let mut obj = match base {
        Some(b) if b.pointer("/metadata/uid").and_then(Value::as_str) == Some(&key.uid) => {
            b.clone()
        }
        _ => client.get(info, ns(key), &key.name).await?,
    };
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.insert("uid".into(), json!(key.uid));
    }
    obj["status"] = status;
    let written = client
        .replace_status(info, ns(key), &key.name, &obj)
        .await?;
    out.record(info.kind, &written);
    Ok(())
}

async fn delete(
    client: &Client,
    key: &ObjectKey,
    propagation: Propagation,
    out: &mut Outcome,
) -> Result<(), Error> {
    let info = info_of(&key.api_version, &key.kind)?;
    if propagation == Propagation::Foreground {
        // The client sends no DeleteOptions, so mark the object for foreground deletion
        // ourselves: add the finalizer (compare-and-set), then delete, which only sets
        // deletionTimestamp while a finalizer is present.
        let current = match client.get(info, ns(key), &key.name).await {
            Err(e) if is_not_found(&e) => return Ok(()),
            r => r?,
        };
        if current.pointer("/metadata/uid").and_then(Value::as_str) != Some(&key.uid) {
            return Ok(());
        }
        let mut finalizers: Vec<Value> = current
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let terminating = current.pointer("/metadata/deletionTimestamp").is_some();
        if !terminating && !finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
            finalizers.push(json!(FOREGROUND_FINALIZER));
            let p = json!({"metadata": {
                "uid": key.uid,
                "resourceVersion": current.pointer("/metadata/resourceVersion"),
                "finalizers": finalizers,
            }});
            patch(client, key, p, out).await?;
        }
    }
    match client.delete(info, ns(key), &key.name).await {
        Ok(deleted) => out.record(info.kind, &deleted),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

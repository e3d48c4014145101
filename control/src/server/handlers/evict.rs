//! `POST pods/{name}/eviction`: delete a Pod only if its PodDisruptionBudget allows it
//! (the decision is `controllers::disruption::decide_eviction`). A budgeted eviction first
//! writes the budget's status (one allowance less, the Pod recorded in `disruptedPods`)
//! with a compare-and-set on the budget's resourceVersion, so two evictions racing for the
//! last allowance cannot both win; the loser reads again and is refused. Then the Pod is
//! deleted through the ordinary delete path (its propagation policy and preconditions),
//! with its uid as a precondition so a Pod re-created under the name is not taken.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use ketch_api::FieldError;
use ketch_api::core::Pod;
use ketch_api::decode::{Invalid, admit, decode};
use ketch_api::params::QueryParams;
use ketch_api::policy::{DeleteOptions, Eviction, PodDisruptionBudget, Preconditions};
use ketch_api::resource::PODDISRUPTIONBUDGETS;
use serde_json::{Value, json};

use super::shared::{json_response, read_object, submit};
use crate::controllers::disruption::{EvictionDecision, decide_eviction, selects};
use crate::server::ApiState;
use crate::server::error::ApiError;
use crate::server::path::{ResourcePath, key_of};
use crate::store::command::{UpdateScope, Write};

/// How often an eviction reads again after losing a race for the budget.
const MAX_ATTEMPTS: usize = 5;
/// Kubernetes' words for a refusal by a budget.
pub const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

pub(super) async fn evict(
    st: &ApiState,
    path: &ResourcePath,
    method: &Method,
    params: &QueryParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if method != Method::POST {
        return Err(ApiError::MethodNotAllowed(format!(
            "pods/eviction supports POST only, not {method}"
        )));
    }
    let name = path.name.clone().unwrap_or_default();
    let namespace = path.namespace.clone().unwrap_or_default();
    let body = read_object(headers, body).await?;
    let invalid = |errors: Vec<FieldError>| {
        ApiError::Invalid(Invalid {
            kind: "Eviction.policy".into(),
            name: name.clone(),
            errors,
        })
    };
    let eviction: Eviction = decode(&body).map_err(|e| invalid(vec![e]))?;
    let errors = check_eviction(&eviction, &name);
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let options = eviction.delete_options.unwrap_or_default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        st.store.read_barrier().await?;
        let pod_value = st
            .store
            .get(&path.key())?
            .ok_or_else(|| ApiError::not_found(path.info, &name))?;
        let pod: Pod = decode(&pod_value)
            .map_err(|e| ApiError::Internal(format!("the stored pod does not decode: {e}")))?;
        let (_, stored) = st
            .store
            .list(&key_of(&PODDISRUPTIONBUDGETS, Some(&namespace), None))?;
        let budgets: Vec<PodDisruptionBudget> =
            stored.iter().filter_map(|b| decode(b).ok()).collect();
        let refs: Vec<&PodDisruptionBudget> = budgets.iter().collect();
        let now = ketch_api::time::now();
        match decide_eviction(&pod, &refs, &now) {
            EvictionDecision::Delete => {}
            EvictionDecision::Budgeted(status) => {
                let mut pdb = refs
                    .iter()
                    .find(|b| selects(b, &pod))
                    .map(|b| (*b).clone())
                    .ok_or_else(|| ApiError::Internal("the budget went missing".into()))?;
                let pdb_name = pdb.metadata.name().to_string();
                pdb.status = Some(*status);
                // Carries the resourceVersion it was read at: the compare-and-set.
                let object =
                    serde_json::to_value(&pdb).map_err(|e| ApiError::Internal(e.to_string()))?;
                let object = admit(&PODDISRUPTIONBUDGETS, object)?;
                let written = submit(
                    st,
                    Write::Update {
                        key: key_of(&PODDISRUPTIONBUDGETS, Some(&namespace), Some(&pdb_name)),
                        object,
                        scope: UpdateScope::Status,
                    },
                    &PODDISRUPTIONBUDGETS,
                    &pdb_name,
                )
                .await;
                match written {
                    Ok(_) => {}
                    Err(ApiError::Conflict { .. }) if attempt < MAX_ATTEMPTS => continue,
                    Err(e) => return Err(e),
                }
            }
            EvictionDecision::Refused(why) => {
                return Err(ApiError::TooManyRequests {
                    message: REFUSED.into(),
                    causes: vec![("DisruptionBudget".into(), why)],
                });
            }
            EvictionDecision::Forbidden(why) => return Err(ApiError::Forbidden(why)),
            EvictionDecision::MultipleBudgets => {
                return Err(ApiError::Internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction \
                     subresource does not support."
                        .into(),
                ));
            }
        }
        let delete = delete_options_for(&options, pod.metadata.uid.as_deref());
        let pod_path = ResourcePath {
            pod_sub: None,
            ..path.clone()
        };
        super::delete::delete(
            st,
            &pod_path,
            params,
            headers,
            Body::from(serde_json::to_vec(&delete).expect("JSON values serialize")),
        )
        .await?;
        return Ok(json_response(
            headers,
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}),
        ));
    }
}

/// What an Eviction body may say: its kind, its Pod's name, and the delete options the
/// delete path honors. A grace period and dry run are refused by path: ketch deletes a Pod
/// at once and its node stops it with the Pod's own `terminationGracePeriodSeconds`.
fn check_eviction(e: &Eviction, name: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(v) = e.api_version.as_deref().filter(|v| *v != "policy/v1") {
        errors.push(FieldError::not_supported("apiVersion", v, &["policy/v1"]));
    }
    if let Some(k) = e.kind.as_deref().filter(|k| *k != "Eviction") {
        errors.push(FieldError::not_supported("kind", k, &["Eviction"]));
    }
    match e.metadata.name.as_deref() {
        Some(n) if n != name => errors.push(FieldError::invalid_str(
            "metadata.name",
            n,
            format!("must be the Pod's name {name:?}"),
        )),
        _ => {}
    }
    if let Some(o) = &e.delete_options {
        if o.grace_period_seconds.is_some() {
            errors.push(FieldError::not_supported_yet(
                "deleteOptions.gracePeriodSeconds",
                "a grace period other than the Pod's own",
            ));
        }
        if !o.dry_run.is_empty() {
            errors.push(FieldError::not_supported_yet(
                "deleteOptions.dryRun",
                "dry run",
            ));
        }
    }
    errors
}

/// The DeleteOptions of the Pod's delete: the caller's, with the uid of the Pod the decision
/// was made for unless the caller named one.
fn delete_options_for(options: &DeleteOptions, uid: Option<&str>) -> Value {
    let mut o = options.clone();
    let pre = o.preconditions.get_or_insert_with(Preconditions::default);
    if pre.uid.is_none() {
        pre.uid = uid.map(str::to_string);
    }
    serde_json::to_value(&o).expect("DeleteOptions serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eviction(v: Value) -> Eviction {
        decode(&v).unwrap()
    }

    #[test]
    fn an_eviction_names_its_pod_and_refuses_what_ketch_does_not_do_by_path() {
        let ok = eviction(json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default"},
            "deleteOptions": {"preconditions": {"uid": "u"}}}));
        assert!(check_eviction(&ok, "web-1").is_empty());
        let bad = eviction(json!({"apiVersion": "policy/v1beta1",
            "metadata": {"name": "web-2"},
            "deleteOptions": {"gracePeriodSeconds": 0, "dryRun": ["All"]}}));
        let errs: Vec<String> = check_eviction(&bad, "web-1")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(
            errs[0].starts_with("apiVersion: Unsupported value"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("metadata.name: Invalid value: \"web-2\""),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with("deleteOptions.gracePeriodSeconds"),
            "{errs:?}"
        );
        assert!(errs[3].contains("not supported yet"), "{errs:?}");
        // A field DeleteOptions does not have is refused by name when decoding.
        assert!(decode::<Eviction>(&json!({"deleteOptions": {"orphanDependents": true}})).is_err());
    }

    #[test]
    fn the_pods_delete_carries_its_uid_unless_the_caller_named_one() {
        let o = delete_options_for(&DeleteOptions::default(), Some("u1"));
        assert_eq!(o["preconditions"]["uid"], "u1");
        let mine = DeleteOptions {
            preconditions: Some(Preconditions {
                uid: Some("mine".into()),
                resource_version: Some("7".into()),
            }),
            propagation_policy: Some("Foreground".into()),
            ..Default::default()
        };
        let o = delete_options_for(&mine, Some("u1"));
        assert_eq!(
            o["preconditions"],
            json!({"uid": "mine", "resourceVersion": "7"})
        );
        assert_eq!(o["propagationPolicy"], "Foreground");
    }
}

//! Object metadata, lists, `Status` and watch events (the `meta/v1` shapes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::selector::{LabelSelector, LabelSelectorRequirement};

/// Metadata every persisted object carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
}

impl ObjectMeta {
    /// The name, or `""` when only `generateName` is set (before the server assigns one).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// The namespace, or `""` for cluster-scoped objects.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

/// A link from a dependent object to its owner (garbage collection, controller adoption).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerReference {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// Metadata of a list response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub continue_: Option<String>,
}

/// A list response such as `PodList`. Lists are only produced by the server, so unknown fields
/// are tolerated (a newer server may add some).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList<T> {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

impl<T> ObjectList<T> {
    /// A list of `info`'s kind (`kind: PodList`) at the given resource version.
    pub fn new(
        info: &crate::resource::ResourceInfo,
        items: Vec<T>,
        resource_version: Option<String>,
    ) -> Self {
        ObjectList {
            api_version: info.api_version(),
            kind: info.list_kind(),
            metadata: ListMeta {
                resource_version,
                continue_: None,
            },
            items,
        }
    }
}

/// The `meta/v1` `Status` returned for errors and for some deletes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ListMeta,
    /// `"Success"` or `"Failure"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Machine-readable reason such as `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(default)]
    pub code: u16,
}

impl Status {
    /// A `Failure` status with the HTTP code, reason (e.g. `NotFound`) and message.
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Status {
            kind: "Status".into(),
            api_version: "v1".into(),
            status: Some("Failure".into()),
            message: Some(message.into()),
            reason: Some(reason.into()),
            code,
            ..Status::default()
        }
    }

    /// A `Success` status with the HTTP code.
    pub fn success(code: u16) -> Self {
        Status {
            kind: "Status".into(),
            api_version: "v1".into(),
            status: Some("Success".into()),
            code,
            ..Status::default()
        }
    }
}

/// Extra detail on a failure: which object, and per-field causes for `Invalid`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// One cause of a failure, usually a field error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// One event of a watch stream, encoded as `{"type": "ADDED", "object": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "object")]
#[allow(
    clippy::large_enum_variant,
    reason = "events are short-lived and moved once; boxing Status would complicate every match"
)]
pub enum WatchEvent<T> {
    #[serde(rename = "ADDED")]
    Added(T),
    #[serde(rename = "MODIFIED")]
    Modified(T),
    #[serde(rename = "DELETED")]
    Deleted(T),
    /// Carries only `metadata.resourceVersion`: a resume point, not a change.
    #[serde(rename = "BOOKMARK")]
    Bookmark(T),
    #[serde(rename = "ERROR")]
    Error(Status),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_events_use_the_kubernetes_type_and_object_shape() {
        let ev: WatchEvent<serde_json::Value> = WatchEvent::Added(serde_json::json!({"a": 1}));
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({"type": "ADDED", "object": {"a": 1}})
        );
        let err: WatchEvent<serde_json::Value> = serde_json::from_value(serde_json::json!({
            "type": "ERROR",
            "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired"}
        }))
        .unwrap();
        assert!(matches!(err, WatchEvent::Error(s) if s.code == 410));
    }

    #[test]
    fn list_meta_continue_keeps_its_reserved_word_name() {
        let m = ListMeta {
            resource_version: Some("5".into()),
            continue_: Some("tok".into()),
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"resourceVersion": "5", "continue": "tok"})
        );
    }

    #[test]
    fn unknown_metadata_fields_are_rejected() {
        let r: Result<ObjectMeta, _> = serde_json::from_str(r#"{"name":"a","selfLink":"x"}"#);
        assert!(r.unwrap_err().to_string().contains("selfLink"));
    }
}

//! What a list or watch can select an object by: its labels and the fields Kubernetes
//! supports in field selectors for its kind. Computed once per stored change, so a watch
//! history holds this small view instead of a parsed object, and every watcher's filter
//! runs against it without parsing JSON.

use std::collections::BTreeMap;

use serde_json::Value;

/// Labels and selectable fields of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub labels: BTreeMap<String, String>,
    /// (field path, value as a string); unset fields are absent.
    pub fields: Vec<(&'static str, String)>,
}

/// [`Attrs`] as the persisted watch history stores them (field paths as owned strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredAttrs {
    pub labels: BTreeMap<String, String>,
    pub fields: Vec<(String, String)>,
}

impl Attrs {
    /// The persistable form.
    pub fn to_stored(&self) -> StoredAttrs {
        StoredAttrs {
            labels: self.labels.clone(),
            fields: self
                .fields
                .iter()
                .map(|(p, v)| ((*p).to_string(), v.clone()))
                .collect(),
        }
    }

    /// Back from [`Attrs::to_stored`] for an object of kind `plural`; a field path this
    /// build does not select by is dropped.
    pub fn from_stored(plural: &str, stored: StoredAttrs) -> Attrs {
        let fields = stored
            .fields
            .into_iter()
            .filter_map(|(path, value)| {
                COMMON
                    .iter()
                    .chain(kind_fields(plural))
                    .find(|p| **p == path)
                    .map(|p| (*p, value))
            })
            .collect();
        Attrs {
            labels: stored.labels,
            fields,
        }
    }

    /// A field's value as field selectors compare it: unset is the empty string.
    pub fn field(&self, path: &str) -> &str {
        self.fields
            .iter()
            .find(|(p, _)| *p == path)
            .map_or("", |(_, v)| v.as_str())
    }
}

const COMMON: &[&str] = &["metadata.name", "metadata.namespace"];

/// Field paths a kind (by plural) can be selected by, beyond metadata.name/namespace.
fn kind_fields(plural: &str) -> &'static [&'static str] {
    match plural {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "status.phase",
            "status.podIP",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "type",
            "source",
            "reportingComponent",
        ],
        "nodes" => &["spec.unschedulable"],
        "namespaces" => &["status.phase"],
        "secrets" => &["type"],
        "replicasets" | "deployments" => &["status.replicas"],
        _ => &[],
    }
}

/// Whether `path` can be used in a field selector for `plural`.
pub fn supported_field(plural: &str, path: &str) -> bool {
    COMMON.contains(&path) || kind_fields(plural).contains(&path)
}

/// The selectable view of `object`, a stored object of kind `plural`.
pub fn attrs_of(plural: &str, object: &Value) -> Attrs {
    let labels = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let mut fields = Vec::new();
    for path in COMMON.iter().chain(kind_fields(plural)) {
        // `source` on Events means `source.component`, as in Kubernetes.
        let dotted = if *path == "source" {
            "source.component"
        } else {
            path
        };
        // Walked key by key: this runs for every field of every stored change.
        let found = dotted
            .split('.')
            .try_fold(object, |v, key| v.as_object()?.get(key));
        let value = match found {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        fields.push((*path, value));
    }
    Attrs { labels, fields }
}

/// The kind (plural) of a store key `{plural}/{namespace}/{name}`.
pub fn plural_of_key(key: &str) -> &str {
    key.split('/').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_attrs_round_trip_and_drop_unknown_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let a = attrs_of("pods", &pod);
        assert_eq!(Attrs::from_stored("pods", a.to_stored()), a);
        let mut stored = a.to_stored();
        stored.fields.push(("spec.bogus".into(), "x".into()));
        assert_eq!(Attrs::from_stored("pods", stored), a);
    }

    #[test]
    fn attrs_hold_labels_and_the_kinds_selectable_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Running"}});
        let a = attrs_of("pods", &pod);
        assert_eq!(a.labels["app"], "web");
        assert_eq!(a.field("spec.nodeName"), "n1");
        assert_eq!(a.field("status.phase"), "Running");
        assert_eq!(a.field("status.podIP"), "");
        let node = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        assert_eq!(attrs_of("nodes", &node).field("spec.unschedulable"), "true");
        let ev = json!({"metadata": {"name": "e"}, "source": {"component": "scheduler"}});
        assert_eq!(attrs_of("events", &ev).field("source"), "scheduler");
    }
}

//! Turning user input into admitted objects: parsing YAML/JSON text and strict typed admission.
//!
//! Admission is the one gate every write passes through (API server create/update, `ketch apply`
//! dry runs): decode into the typed model so unknown fields are rejected by name, normalize,
//! validate, and hand back canonical JSON. Because the output is produced by re-serializing the
//! typed object, admitting an already admitted object is a no-op.

use std::fmt;

use base64::Engine as _;
use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed as _};
use serde_json::Value;

use crate::apps::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetStatus};
use crate::coordination::Lease;
use crate::core::{
    ConfigMap, Event, Namespace, NamespaceStatus, Node, NodeStatus, Pod, PodStatus, Secret,
    Service, ServiceStatus,
};
use crate::discovery::EndpointSlice;
use crate::meta::{Status, StatusCause, StatusDetails};
use crate::networking::{Ingress, IngressStatus};
use crate::policy::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use crate::rbac::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use crate::resource::{Resource, ResourceInfo};
use crate::validation::{self as v, FieldError};

/// A syntax error in a manifest, with a 1-based position when the parser knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l} column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parser messages end in " at line N column M"; we report the position separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

/// Parses JSON or (multi-document) YAML into one JSON object per resource.
///
/// Empty and `null` documents are skipped; a `kind: List` document is replaced by its items, so
/// `ketch get -o yaml` output can be fed back to `ketch apply`.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut docs = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // JSON is also YAML, but serde_json's positions and messages are better for JSON input.
        for doc in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            let doc = doc.map_err(|e| ParseError {
                line: Some(e.line()),
                column: Some(e.column()),
                message: strip_position(&e.to_string()),
            })?;
            match doc {
                Value::Array(items) => {
                    for item in items {
                        push_document(&mut docs, item, None)?;
                    }
                }
                other => push_document(&mut docs, other, None)?,
            }
        }
        return Ok(docs);
    }
    crate::bounded_yaml::check_flow_depth(text).map_err(|(line, message)| ParseError {
        line: Some(line),
        column: None,
        message,
    })?;
    // Aliases are expanded within a budget of the text's size (see `bounded_yaml`).
    let budget = crate::bounded_yaml::Budget::for_text(text);
    for doc in serde_yaml::Deserializer::from_str(text) {
        // Deserializing straight into a JSON map (not a YAML value) makes serde_yaml reject a
        // non-mapping document itself, with the position of the offending node.
        let map = crate::bounded_yaml::Document(&budget)
            .deserialize(doc)
            .map_err(|e| {
                let loc = e.location();
                ParseError {
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                    message: strip_position(&e.to_string()),
                }
            })?;
        if let Some(map) = map {
            push_document(&mut docs, Value::Object(map), None)?;
        }
    }
    Ok(docs)
}

fn push_document(docs: &mut Vec<Value>, doc: Value, line: Option<usize>) -> Result<(), ParseError> {
    match doc {
        Value::Null => Ok(()),
        Value::Object(map) => {
            if map.get("kind").and_then(Value::as_str) == Some("List") {
                let items = match map.get("items") {
                    None | Some(Value::Null) => return Ok(()),
                    Some(Value::Array(items)) => items.clone(),
                    Some(_) => {
                        return Err(ParseError {
                            line,
                            column: None,
                            message: "items of a list must be an array".to_string(),
                        });
                    }
                };
                for item in items {
                    if !item.is_object() {
                        return Err(ParseError {
                            line,
                            column: None,
                            message: "every item of a list must be an object".to_string(),
                        });
                    }
                    docs.push(item);
                }
            } else {
                docs.push(Value::Object(map));
            }
            Ok(())
        }
        other => Err(ParseError {
            line,
            column: None,
            message: format!(
                "expected an object with apiVersion and kind, found {}",
                json_type(&other)
            ),
        }),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An object that failed admission, displayed like the Kubernetes API server's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Qualified kind, e.g. `Deployment.apps` or `Pod`.
    pub kind: String,
    pub name: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} is invalid: ", self.kind, self.name)?;
        match self.errors.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                let parts: Vec<String> = many.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

impl std::error::Error for Invalid {}

impl Invalid {
    /// The HTTP 422 `Status` the API server returns for this error.
    pub fn to_status(&self) -> Status {
        let (kind, group) = match self.kind.split_once('.') {
            Some((k, g)) => (k.to_string(), Some(g.to_string())),
            None => (self.kind.clone(), None),
        };
        let mut status = Status::failure(422, "Invalid", self.to_string());
        status.details = Some(StatusDetails {
            name: Some(self.name.clone()),
            group,
            kind: Some(kind),
            uid: None,
            causes: self
                .errors
                .iter()
                .map(|e| StatusCause {
                    reason: Some(e.reason().to_string()),
                    message: Some(e.to_string()),
                    field: Some(e.field.clone()),
                })
                .collect(),
        });
        status
    }
}

/// Removes `null` map entries recursively: Kubernetes treats `field: null` as absent (and
/// `kubectl create --dry-run -o yaml` emits `creationTimestamp: null`), while typed maps and
/// lists would reject it.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Renders the value found at a decode error's path, for `Invalid value:`.
fn value_at<'a>(root: &'a Value, path: &serde_path_to_error::Path) -> Option<&'a Value> {
    let mut cur = root;
    for seg in path.iter() {
        cur = match seg {
            serde_path_to_error::Segment::Seq { index } => cur.get(*index)?,
            serde_path_to_error::Segment::Map { key } => cur.get(key)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn render(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}...", &s[..s.floor_char_boundary(77)])
    } else {
        s
    }
}

/// Strictly decodes JSON into a typed object; the error names the full field path.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    // Most objects are valid: decode without tracking the path (which costs on every field,
    // and admission runs on every write), and decode again with it only to explain a failure.
    if let Ok(obj) = T::deserialize(value) {
        return Ok(obj);
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let msg = e.inner().to_string();
        if msg.starts_with("unknown field") {
            // serde_path_to_error already includes the unknown key as the last path segment.
            FieldError::forbidden(path, "field not supported by ketch")
        } else {
            let shown = value_at(value, e.path()).map(render).unwrap_or_default();
            let msg = strip_position(&msg);
            if shown.is_empty() {
                FieldError::invalid(path, "", msg)
            } else {
                FieldError::invalid(path, shown, msg)
            }
        }
    })
}

/// Decodes, normalizes and validates one object for `info`, returning canonical JSON.
///
/// `apiVersion`/`kind` are filled in when absent and must match `info` when present.
/// Secret `stringData` is merged into `data` (base64) and dropped.
pub fn admit(info: &ResourceInfo, mut value: Value) -> Result<Value, Invalid> {
    let name = value
        .pointer("/metadata/name")
        .or_else(|| value.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let invalid = |errors: Vec<FieldError>| Invalid {
        kind: info.group_kind(),
        name: name.clone(),
        errors,
    };
    strip_nulls(&mut value);
    let Value::Object(map) = &mut value else {
        return Err(invalid(vec![FieldError::invalid(
            "<root>",
            json_type(&value),
            "must be an object",
        )]));
    };
    let mut errors = Vec::new();
    for (field, expected) in [
        ("apiVersion", info.api_version()),
        ("kind", info.kind.to_string()),
    ] {
        match map.get(field) {
            None => {
                map.insert(field.to_string(), Value::String(expected));
            }
            Some(Value::String(s)) if *s == expected => {}
            Some(other) => errors.push(FieldError::invalid(
                field,
                render(other),
                format!("must be {expected:?} for {}", info.group_resource()),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    if !info.namespaced
        && let Some(Value::Object(meta)) = map.get_mut("metadata")
    {
        // Kubernetes silently clears the namespace of cluster-scoped objects.
        meta.remove("namespace");
    }
    let result = match info.kind {
        "Namespace" => run::<Namespace>(&value, v::validate_namespace, |_| {}),
        "Pod" => run::<Pod>(&value, v::validate_pod, |p| {
            if let Some(spec) = &mut p.spec {
                crate::defaults::pod_tolerations(spec);
            }
        }),
        "Service" => run::<Service>(&value, v::validate_service, |_| {}),
        "ConfigMap" => run::<ConfigMap>(&value, v::validate_config_map, |_| {}),
        "Secret" => run::<Secret>(&value, v::validate_secret, merge_string_data),
        "Node" => run::<Node>(&value, v::validate_node, |_| {}),
        "Event" => run::<Event>(&value, v::validate_event, |_| {}),
        "Deployment" => run::<Deployment>(&value, v::validate_deployment, |_| {}),
        "ReplicaSet" => run::<ReplicaSet>(&value, v::validate_replica_set, |_| {}),
        "Lease" => run::<Lease>(&value, v::validate_lease, |_| {}),
        "EndpointSlice" => run::<EndpointSlice>(&value, v::validate_endpoint_slice, |_| {}),
        "Ingress" => run::<Ingress>(&value, v::validate_ingress, |_| {}),
        "PodDisruptionBudget" => {
            run::<PodDisruptionBudget>(&value, v::validate_pod_disruption_budget, |_| {})
        }
        "Role" => run::<Role>(&value, v::validate_role, |_| {}),
        "ClusterRole" => run::<ClusterRole>(&value, v::validate_cluster_role, |_| {}),
        "RoleBinding" => run::<RoleBinding>(&value, v::validate_role_binding, |_| {}),
        "ClusterRoleBinding" => {
            run::<ClusterRoleBinding>(&value, v::validate_cluster_role_binding, |_| {})
        }
        other => Err(vec![FieldError::not_supported(
            "kind",
            other,
            &crate::resource::RESOURCES
                .iter()
                .map(|r| r.kind)
                .collect::<Vec<_>>(),
        )]),
    };
    result.map_err(invalid)
}

/// Admits a status on its own, for a `/status` merge patch that the store merges into the
/// stored object when it applies the write: strict decode into the kind's status type, the
/// status' own validation, canonical JSON back. Such a write changes nothing but the status
/// (Kubernetes' status strategy), and no kind validates its spec against its status, so the
/// rest of the object, admitted when it was written, is not looked at again. Field paths in
/// the errors start at the object's root (`status.conditions[0].type`).
pub fn admit_status(info: &ResourceInfo, mut status: Value) -> Result<Value, Vec<FieldError>> {
    strip_nulls(&mut status);
    match info.kind {
        "Namespace" => run_status::<NamespaceStatus>(&status, |_| Vec::new()),
        "Pod" => run_status::<PodStatus>(&status, |_| Vec::new()),
        "Service" => run_status::<ServiceStatus>(&status, |_| Vec::new()),
        "Node" => run_status::<NodeStatus>(&status, v::validate_node_status),
        "Deployment" => run_status::<DeploymentStatus>(&status, |_| Vec::new()),
        "ReplicaSet" => run_status::<ReplicaSetStatus>(&status, |_| Vec::new()),
        "Ingress" => run_status::<IngressStatus>(&status, |_| Vec::new()),
        "PodDisruptionBudget" => run_status::<PodDisruptionBudgetStatus>(
            &status,
            v::validate_pod_disruption_budget_status,
        ),
        other => Err(vec![FieldError::forbidden(
            "status",
            format!("{other} has no status subresource"),
        )]),
    }
}

fn run_status<T: Serialize + DeserializeOwned>(
    value: &Value,
    validate: fn(&T) -> Vec<FieldError>,
) -> Result<Value, Vec<FieldError>> {
    let status: T = decode(value).map_err(|mut e| {
        e.field = if e.field.is_empty() {
            "status".to_string()
        } else {
            format!("status.{}", e.field)
        };
        vec![e]
    })?;
    let errors = validate(&status);
    if !errors.is_empty() {
        return Err(errors);
    }
    serde_json::to_value(&status)
        .map_err(|e| vec![FieldError::invalid("status", "", e.to_string())])
}

/// Runs [`admit`] and returns only its errors (empty when the object is valid).
pub fn validate(info: &ResourceInfo, value: &Value) -> Vec<FieldError> {
    match admit(info, value.clone()) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors,
    }
}

fn run<T: Resource>(
    value: &Value,
    validate: fn(&T) -> Vec<FieldError>,
    normalize: fn(&mut T),
) -> Result<Value, Vec<FieldError>> {
    let mut obj: T = decode(value).map_err(|e| vec![e])?;
    normalize(&mut obj);
    let errors = validate(&obj);
    if !errors.is_empty() {
        return Err(errors);
    }
    serde_json::to_value(&obj).map_err(|e| vec![FieldError::invalid("<root>", "", e.to_string())])
}

/// `stringData` is a write-only convenience: encode it into `data`, where it wins on conflict.
fn merge_string_data(secret: &mut Secret) {
    for (k, val) in std::mem::take(&mut secret.string_data) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(val.as_bytes());
        secret.data.insert(k, encoded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{CONFIGMAPS, DEPLOYMENTS, NAMESPACES, PODS, SECRETS, SERVICES, by_kind};
    use serde_json::json;

    const MANIFEST: &str = include_str!("../../../tests/manifests/k8s-deployment-service.yaml");

    fn info_of(doc: &Value) -> &'static ResourceInfo {
        by_kind(
            doc["apiVersion"].as_str().unwrap(),
            doc["kind"].as_str().unwrap(),
        )
        .unwrap()
    }

    fn deployment() -> Value {
        parse_documents(MANIFEST).unwrap().remove(0)
    }

    fn errors_of(info: &ResourceInfo, v: Value) -> Vec<String> {
        admit(info, v)
            .unwrap_err()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_typical_kubernetes_deployment_and_service_are_admitted_unchanged() {
        let docs = parse_documents(MANIFEST).unwrap();
        assert_eq!(docs.len(), 2);
        for doc in docs {
            let admitted = admit(info_of(&doc), doc.clone())
                .unwrap_or_else(|e| panic!("manifest rejected: {e}"));
            assert_eq!(admitted, doc);
        }
    }

    /// The issue's measured shape: one anchor of 1,000 scalars, 20,000 aliases of it.
    fn alias_bomb() -> String {
        let mut text =
            String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\nx: &a [");
        text.push_str(&vec!["lol"; 1000].join(","));
        text.push_str("]\ny: [");
        text.push_str(&vec!["*a"; 20_000].join(","));
        text.push_str("]\n");
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_within_a_budget_of_its_size() {
        let text = alias_bomb();
        assert!(text.len() < 70_000, "{}", text.len());
        let started = std::time::Instant::now();
        let err = parse_documents(&text).unwrap_err();
        assert!(err.message.contains("YAML aliases"), "{err}");
        // Unbounded, this took 25 s; the budget stops it after ~300,000 units.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Aliases of small anchors, as people write them, still work.
        let ok = "a: &x {b: 1}\nc: *x\nd: [*x, *x]\n";
        let docs = parse_documents(ok).unwrap();
        assert_eq!(
            docs,
            vec![json!({"a": {"b": 1}, "c": {"b": 1}, "d": [{"b": 1}, {"b": 1}]})]
        );
        // Nesting deep enough to make the parser quadratic is refused before it runs.
        let deep = format!("a: 1\nb: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let err = parse_documents(&deep).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("deeper than 256"), "{err}");
        // A document of a non-map is still the parser's positioned error.
        let err = parse_documents("a: 1\n---\n- x\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
    }

    #[test]
    fn admission_is_idempotent() {
        let mut docs = parse_documents(MANIFEST).unwrap();
        docs.push(
            json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"},
            "stringData": {"a": "b"}}),
        );
        docs.push(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": 1}}}]}}));
        for doc in docs {
            let info = match doc["kind"].as_str() {
                Some(_) => info_of(&doc),
                None => &PODS,
            };
            let once = admit(info, doc).unwrap();
            let twice = admit(info, once.clone()).unwrap();
            assert_eq!(once, twice);
        }
    }

    #[test]
    fn missing_api_version_and_kind_are_filled_in_and_wrong_ones_rejected() {
        let out = admit(&NAMESPACES, json!({"metadata": {"name": "team-a"}})).unwrap();
        assert_eq!(out["apiVersion"], "v1");
        assert_eq!(out["kind"], "Namespace");
        let errs = errors_of(
            &DEPLOYMENTS,
            json!({"apiVersion": "extensions/v1beta1",
            "kind": "Deployment", "metadata": {"name": "x"}}),
        );
        assert_eq!(
            errs,
            vec![
                "apiVersion: Invalid value: \"extensions/v1beta1\": must be \"apps/v1\" for deployments.apps"
            ]
        );
    }

    #[test]
    fn an_unknown_field_error_names_its_full_path() {
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]["stdin"] = json!(true);
        let err = admit(&DEPLOYMENTS, d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].stdin: \
             Forbidden: field not supported by ketch"
        );
    }

    #[test]
    fn scheduling_constraints_in_a_deployment_template_round_trip_and_are_validated() {
        let mut d = deployment();
        let spec = &mut d["spec"]["template"]["spec"];
        spec["affinity"] = json!({"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}],
                 "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n9"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 20, "preference":
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}}]}});
        spec["topologySpreadConstraints"] = json!([{"maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}, "minDomains": 3}]);
        let admitted = admit(&DEPLOYMENTS, d.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(admitted, d);

        let mut bad = d.clone();
        bad["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["operator"] = json!("Foo");
        let errs = errors_of(&DEPLOYMENTS, bad);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with(
                "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution\
                 .nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Foo\""
            ),
            "{}",
            errs[0]
        );
        let mut unknown = d;
        unknown["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["skew"] = json!(1);
        assert_eq!(
            errors_of(&DEPLOYMENTS, unknown),
            [
                "spec.template.spec.topologySpreadConstraints[0].skew: Forbidden: field not supported by ketch"
            ]
        );
    }

    #[test]
    fn a_type_error_carries_the_path_and_the_offending_value() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!("three");
        let errs = errors_of(&DEPLOYMENTS, d);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("spec.replicas: Invalid value: \"three\": invalid type: string"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn malformed_yaml_reports_line_and_column() {
        let err =
            parse_documents("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [oops\n").unwrap_err();
        assert!(err.line.is_some() && err.column.is_some(), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("line {} column", err.line.unwrap()))
        );
        let err = parse_documents("a: 1\n  b: 2\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let err = parse_documents("{\n  \"kind\": \"Pod\",\n  \"metadata\": {,}\n}").unwrap_err();
        assert_eq!((err.line, err.column), (Some(3), Some(16)), "{err}");
        assert!(!err.message.contains("at line"), "{err}");
    }

    #[test]
    fn a_yaml_document_that_is_not_a_mapping_is_rejected_with_its_line() {
        let err = parse_documents("kind: Pod\n---\n- a\n- b\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        let err = parse_documents("just a string\n").unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
    }

    #[test]
    fn empty_documents_are_skipped_and_lists_expand_into_items() {
        let docs = parse_documents("---\n# comment only\n---\nkind: A\n---\n~\n---\nkind: List\napiVersion: v1\nitems:\n- kind: B\n- kind: C\n").unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["A", "B", "C"]);
        let docs =
            parse_documents(r#"{"kind":"List","items":[{"kind":"X"}]} {"kind":"Y"}"#).unwrap();
        assert_eq!(docs.len(), 2);
        assert!(parse_documents("").unwrap().is_empty());
    }

    #[test]
    fn secret_string_data_is_encoded_into_data_and_removed() {
        let out = admit(
            &SECRETS,
            json!({"metadata": {"name": "db"}, "data": {"user": "YWRtaW4="},
                   "stringData": {"password": "s3cr3t", "user": "root"}}),
        )
        .unwrap();
        assert_eq!(out["data"]["password"], "czNjcjN0");
        assert_eq!(out["data"]["user"], "cm9vdA==", "stringData wins over data");
        assert!(out.get("stringData").is_none());
    }

    #[test]
    fn secret_data_must_be_base64_and_the_value_is_not_echoed() {
        let errs = errors_of(
            &SECRETS,
            json!({"metadata": {"name": "db"}, "data": {"k": "not base64!"}}),
        );
        assert_eq!(
            errs,
            vec!["data[k]: Invalid value: <secret contents redacted>: must be valid base64"]
        );
    }

    #[test]
    fn a_selector_that_does_not_match_the_template_is_rejected() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["labels"] =
            json!({"app.kubernetes.io/name": "api", "tier": "frontend"});
        let errs = errors_of(&DEPLOYMENTS, d);
        assert_eq!(
            errs,
            vec![
                "spec.template.metadata.labels: Invalid value: \
                 map[string]string{\"app.kubernetes.io/name\":\"api\",\"tier\":\"frontend\"}: \
                 selector does not match template labels"
            ]
        );
    }

    #[test]
    fn several_errors_are_listed_in_brackets() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let err = admit(&DEPLOYMENTS, d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater \
             than or equal to 0, spec.template.spec.restartPolicy: Unsupported value: \"Never\": \
             supported values: \"Always\"]"
        );
        let status = err.to_status();
        assert_eq!(status.code, 422);
        assert_eq!(status.details.unwrap().causes.len(), 2);
    }

    #[test]
    fn null_fields_are_treated_as_absent() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["creationTimestamp"] = Value::Null;
        d["metadata"]["annotations"] = Value::Null;
        let out = admit(&DEPLOYMENTS, d).unwrap();
        assert!(out["metadata"].get("annotations").is_none());
    }

    #[test]
    fn cluster_scoped_objects_lose_their_namespace() {
        let out = admit(
            &NAMESPACES,
            json!({"metadata": {"name": "a", "namespace": "default"}}),
        )
        .unwrap();
        assert!(out["metadata"].get("namespace").is_none());
    }

    #[test]
    fn numeric_quantities_are_normalized_to_strings() {
        let out = admit(
            &PODS,
            json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"limits": {"cpu": 2, "memory": 1e9}}}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "2"
        );
    }

    #[test]
    fn services_reject_unsupported_types_and_bad_ports() {
        let errs = errors_of(
            &SERVICES,
            json!({"metadata": {"name": "1web"}, "spec": {
            "type": "LoadBalancer", "ports": [{"port": 0, "nodePort": 80}]}}),
        );
        assert_eq!(
            errs[0],
            "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        );
        assert_eq!(
            errs[1],
            "spec.type: Unsupported value: \"LoadBalancer\" (not supported yet): supported values: \"ClusterIP\", \"NodePort\""
        );
        assert_eq!(
            errs[2],
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        );
        assert_eq!(
            errs[3],
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'LoadBalancer'"
        );
        let errs = errors_of(
            &SERVICES,
            json!({"metadata": {"name": "web"}, "spec": {
            "type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}}),
        );
        assert_eq!(
            errs,
            vec![
                "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
            ]
        );
    }

    #[test]
    fn endpoint_slices_and_ingresses_are_admitted_under_their_groups() {
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]});
        let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web"}, "spec": {"rules": [{"host": "example.com",
            "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
        for doc in [slice, ing] {
            let out = admit(info_of(&doc), doc.clone()).unwrap();
            assert_eq!(out, doc);
        }
        let err = admit(
            &crate::resource::INGRESSES,
            json!({"metadata": {"name": "web"}, "spec": {"rules": [{"http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web"}}}]}}],
                "tls": [{"secretName": "c"}]}}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Ingress.networking.k8s.io \"web\" is invalid: [spec.rules[0].http.paths[0].backend: \
             Required value: port name or number is required, spec.tls[0].hosts: Unsupported \
             value: a TLS entry without hosts (a default certificate for every host) is not \
             supported yet]"
        );
    }

    #[test]
    fn config_map_keys_are_checked() {
        let errs = errors_of(
            &CONFIGMAPS,
            json!({"metadata": {"name": "c"}, "data": {"a/b": "x", "ok.key": "y"}}),
        );
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("data: Invalid value: \"a/b\": a valid config key"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn a_name_is_required_unless_generate_name_is_set() {
        let errs = errors_of(
            &PODS,
            json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}),
        );
        assert_eq!(
            errs,
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        assert!(
            admit(
                &PODS,
                json!({"metadata": {"generateName": "web-"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}})
            )
            .is_ok()
        );
    }

    #[test]
    fn validate_returns_the_admission_errors() {
        assert!(validate(&NAMESPACES, &json!({"metadata": {"name": "ok"}})).is_empty());
        assert_eq!(
            validate(&NAMESPACES, &json!({"metadata": {"name": "Not_OK"}})).len(),
            1
        );
    }
}

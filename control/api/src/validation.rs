//! Field validation with Kubernetes-compatible error messages.
//!
//! Messages follow `k8s.io/apimachinery/pkg/util/validation` word for word where ketch enforces
//! the same rule, so users (and tools that grep kubectl output) see familiar text. Validators
//! collect every error instead of stopping at the first, as the Kubernetes API server does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;

use crate::apps::{Deployment, PodTemplateSpec, ReplicaSet};
use crate::coordination::Lease;
use crate::core::{
    ConfigMap, Container, Event, IntOrString, Namespace, Node, NodeStatus, Pod, PodSpec, Probe,
    Secret, Service, Taint, Toleration, linux_capability,
};
use crate::discovery::{ADDRESS_TYPE_FQDN, ADDRESS_TYPE_IPV4, ADDRESS_TYPE_IPV6, EndpointSlice};
use crate::meta::ObjectMeta;
use crate::networking::{
    Ingress, IngressBackend, PATH_TYPE_EXACT, PATH_TYPE_IMPLEMENTATION_SPECIFIC, PATH_TYPE_PREFIX,
};
use crate::quantity::Quantity;
use crate::selector::{LabelSelector, Selector};

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FieldErrorKind {
    /// The field must be set.
    Required,
    /// The value (already rendered: strings quoted, numbers bare) is not acceptable.
    Invalid(String),
    /// The value is not one of these; [`FieldError::detail`] holds the rendered offending value.
    NotSupported(Vec<String>),
    /// Longer than this many bytes/characters.
    TooLong(usize),
    /// Not allowed here (including fields ketch does not implement).
    Forbidden,
    /// Repeats an earlier entry; [`FieldError::detail`] holds the rendered value.
    Duplicate,
    /// A list with more entries than allowed: (actual, max).
    TooMany(usize, usize),
}

/// One validation failure at a field path such as `spec.template.spec.containers[0].name`.
/// Serializable: the store carries it when it refuses a write it admitted itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    pub detail: String,
}

/// Renders a value like Kubernetes does in `Invalid value:` (strings quoted).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Required,
            detail: detail.into(),
        }
    }

    /// `value` must already be rendered; see [`FieldError::invalid_str`] for strings.
    pub fn invalid(
        field: impl Into<String>,
        value: impl fmt::Display,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid(value.to_string()),
            detail: detail.into(),
        }
    }

    pub fn invalid_str(field: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self::invalid(field, quote(value), detail)
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported(supported.iter().map(|s| s.to_string()).collect()),
            detail: quote(value),
        }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::TooLong(max),
            detail: String::new(),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        }
    }

    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::TooMany(actual, max),
            detail: String::new(),
        }
    }

    /// A feature ketch decodes (so the error can name it) but does not implement yet:
    /// `spec.tls: Unsupported value: TLS termination is not supported yet`.
    pub fn not_supported_yet(field: impl Into<String>, what: &str) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported(Vec::new()),
            detail: format!("{what} is not supported yet"),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: impl fmt::Display) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Duplicate,
            detail: value.to_string(),
        }
    }

    /// The Kubernetes `StatusCause.reason` for this error (`FieldValueInvalid`, ...).
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::NotSupported(_) => "FieldValueNotSupported",
            FieldErrorKind::TooLong(_) => "FieldValueTooLong",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::TooMany(..) => "FieldValueTooMany",
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.field)?;
        match &self.kind {
            FieldErrorKind::Required => f.write_str("Required value")?,
            FieldErrorKind::Invalid(v) => write!(f, "Invalid value: {v}")?,
            FieldErrorKind::NotSupported(supported) => {
                write!(f, "Unsupported value: {}", self.detail)?;
                if !supported.is_empty() {
                    let list: Vec<String> = supported.iter().map(|s| quote(s)).collect();
                    write!(f, ": supported values: {}", list.join(", "))?;
                }
                return Ok(());
            }
            FieldErrorKind::TooLong(max) => {
                return write!(f, "Too long: may not be more than {max} bytes");
            }
            FieldErrorKind::Forbidden => f.write_str("Forbidden")?,
            FieldErrorKind::Duplicate => return write!(f, "Duplicate value: {}", self.detail),
            FieldErrorKind::TooMany(actual, max) => {
                return write!(f, "Too many: {actual}: must have at most {max} items");
            }
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldError {}

/// Appends a child field name to a path (`spec` + `replicas` → `spec.replicas`).
pub fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Appends a list index to a path (`containers` + 0 → `containers[0]`).
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Appends a map key to a path (`data` + `a.b` → `data[a.b]`), as Kubernetes does.
pub fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

// ---------------------------------------------------------------------------------------------
// String format checks. Each returns the list of problems (empty = valid), like the Go helpers.

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const QUALIFIED_NAME_MAX: usize = 63;
const CONFIG_KEY_MAX: usize = 253;
const ANNOTATIONS_MAX: usize = 256 * 1024;

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn dns_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// RFC 1123 label: namespace names, container names, port names.
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !dns_label_shape(s) {
        errs.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_string());
    }
    errs
}

/// RFC 1123 subdomain: the name of most objects.
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !s.split('.').all(dns_label_shape) {
        errs.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
    }
    errs
}

/// RFC 1035 label: service names, which become DNS names and must start with a letter.
pub fn is_dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !dns_label_shape(s) || !s.as_bytes()[0].is_ascii_lowercase() {
        errs.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string());
    }
    errs
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, shared by label values and key names.
fn label_token_shape(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Label and annotation keys, taint keys: `[prefix/]name`.
pub fn is_qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else {
            errs.extend(
                is_dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > QUALIFIED_NAME_MAX {
            errs.push(format!(
                "name part must be no more than {QUALIFIED_NAME_MAX} characters"
            ));
        }
        if !label_token_shape(name) {
            errs.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_string());
        }
    }
    errs
}

/// Label values: at most 63 characters, possibly empty.
pub fn is_valid_label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !s.is_empty() && !label_token_shape(s) {
        errs.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string());
    }
    errs
}

/// ConfigMap and Secret keys: they become file names, so no `/` and no `..`.
pub fn is_config_map_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > CONFIG_KEY_MAX {
        errs.push(format!("must be no more than {CONFIG_KEY_MAX} characters"));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    if s == "." {
        errs.push("must not be '.'".to_string());
    } else if s == ".." {
        errs.push("must not be '..'".to_string());
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// IANA service names, used for named ports: ≤15 chars, lowercase alphanumerics and single
/// hyphens, at least one letter.
pub fn is_port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if !s.bytes().all(|c| is_lower_alnum(c) || c == b'-') {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Environment variable names: any printable ASCII except `=` (Kubernetes' relaxed rule).
pub fn is_env_var_name(s: &str) -> Vec<String> {
    if s.is_empty() || !s.bytes().all(|c| (b' '..=b'~').contains(&c) && c != b'=') {
        vec!["a valid environment variable name must consist only of printable ASCII characters other than '='".to_string()]
    } else {
        Vec::new()
    }
}

/// Whether `s` parses as an IP address the way Kubernetes' `ParseIPSloppy` does: IPv6, or
/// IPv4 including leading zeros (`010.1.1.1`), which a DNS name check would otherwise accept.
pub fn is_ip_address(s: &str) -> bool {
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|c| c.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// `*.` followed by an RFC 1123 subdomain (Ingress hosts): the wildcard is the whole first
/// label.
pub fn is_wildcard_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    let valid = s
        .strip_prefix("*.")
        .is_some_and(|rest| rest.split('.').all(dns_label_shape));
    if !valid {
        errs.push("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
    }
    errs
}

fn check(errs: &mut Vec<FieldError>, field: &str, value: &str, problems: Vec<String>) {
    if !problems.is_empty() {
        errs.push(FieldError::invalid_str(field, value, problems.join("; ")));
    }
}

fn check_non_negative(errs: &mut Vec<FieldError>, field: String, v: Option<i64>) {
    if let Some(v) = v
        && v < 0
    {
        errs.push(FieldError::invalid(
            field,
            v,
            "must be greater than or equal to 0",
        ));
    }
}

fn check_port(errs: &mut Vec<FieldError>, field: String, port: i32) {
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(
            field,
            port,
            "must be between 1 and 65535, inclusive",
        ));
    }
}

fn check_one_of(errs: &mut Vec<FieldError>, field: String, value: Option<&str>, allowed: &[&str]) {
    if let Some(v) = value
        && !allowed.contains(&v)
    {
        errs.push(FieldError::not_supported(field, v, allowed));
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata

/// Which name format a kind's `metadata.name` must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameFormat {
    Dns1123Label,
    Dns1123Subdomain,
    Dns1035Label,
}

impl NameFormat {
    fn check(self, s: &str) -> Vec<String> {
        match self {
            NameFormat::Dns1123Label => is_dns1123_label(s),
            NameFormat::Dns1123Subdomain => is_dns1123_subdomain(s),
            NameFormat::Dns1035Label => is_dns1035_label(s),
        }
    }
}

/// Validates label keys and values at `path` (e.g. `metadata.labels`).
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        check(&mut errs, path, k, is_qualified_name(k));
        check(&mut errs, &key(path, k), v, is_valid_label_value(v));
    }
    errs
}

/// Validates annotation keys and the 256 KiB total size limit.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations {
        check(
            &mut errs,
            path,
            k,
            is_qualified_name(&k.to_ascii_lowercase()),
        );
        total += k.len() + v.len();
    }
    if total > ANNOTATIONS_MAX {
        errs.push(FieldError::too_long(path, ANNOTATIONS_MAX));
    }
    errs
}

/// Validates object metadata: name (or generateName), namespace, labels, annotations, owners.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    format: NameFormat,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (&meta.name, &meta.generate_name) {
        (Some(name), _) if !name.is_empty() => {
            check(&mut errs, &child(path, "name"), name, format.check(name));
        }
        (_, Some(gen_name)) if !gen_name.is_empty() => {
            // The server appends 5 random characters, so validate the prefix with a stand-in
            // suffix, and without a trailing '-' which is legal inside the final name.
            let probe = format!("{}a", gen_name);
            check(
                &mut errs,
                &child(path, "generateName"),
                gen_name,
                format.check(&probe),
            );
        }
        _ => errs.push(FieldError::required(
            child(path, "name"),
            "name or generateName is required",
        )),
    }
    if let Some(ns) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        if namespaced {
            check(
                &mut errs,
                &child(path, "namespace"),
                ns,
                is_dns1123_label(ns),
            );
        } else {
            errs.push(FieldError::forbidden(
                child(path, "namespace"),
                "not allowed on this type",
            ));
        }
    }
    errs.extend(validate_labels(&meta.labels, &child(path, "labels")));
    errs.extend(validate_annotations(
        &meta.annotations,
        &child(path, "annotations"),
    ));
    check_non_negative(&mut errs, child(path, "generation"), meta.generation);
    for (i, owner) in meta.owner_references.iter().enumerate() {
        let p = index(&child(path, "ownerReferences"), i);
        for (field, value) in [
            ("apiVersion", &owner.api_version),
            ("kind", &owner.kind),
            ("name", &owner.name),
            ("uid", &owner.uid),
        ] {
            if value.is_empty() {
                errs.push(FieldError::required(child(&p, field), ""));
            }
        }
    }
    if meta
        .owner_references
        .iter()
        .filter(|o| o.controller == Some(true))
        .count()
        > 1
    {
        errs.push(FieldError::invalid(
            child(path, "ownerReferences"),
            "[...]",
            "Only one reference can have Controller set to true",
        ));
    }
    errs
}

/// Validates a label selector spec at `path` (e.g. `spec.selector`).
pub fn validate_label_selector(sel: &LabelSelector, path: &str) -> Vec<FieldError> {
    let mut errs = validate_labels(&sel.match_labels, &child(path, "matchLabels"));
    for (i, expr) in sel.match_expressions.iter().enumerate() {
        let p = index(&child(path, "matchExpressions"), i);
        check(
            &mut errs,
            &child(&p, "key"),
            &expr.key,
            is_qualified_name(&expr.key),
        );
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if expr.values.is_empty() {
                    errs.push(FieldError::required(
                        child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !expr.values.is_empty() {
                    errs.push(FieldError::forbidden(
                        child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                child(&p, "operator"),
                other,
                &["In", "NotIn", "Exists", "DoesNotExist"],
            )),
        }
        for (j, v) in expr.values.iter().enumerate() {
            check(
                &mut errs,
                &index(&child(&p, "values"), j),
                v,
                is_valid_label_value(v),
            );
        }
    }
    errs
}

/// Validates that a quantity parses and is not negative.
pub fn validate_quantity(q: &Quantity, path: &str) -> Vec<FieldError> {
    match q.check_non_negative() {
        Ok(_) => Vec::new(),
        Err(e) => vec![FieldError::invalid_str(path, &q.0, e.to_string())],
    }
}

// ---------------------------------------------------------------------------------------------
// Pods

const TOLERATION_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

/// Options that differ between a bare Pod and a pod template inside a workload.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodSpecOptions {
    /// Workload templates must use `restartPolicy: Always` (ketch restarts, the controller
    /// replaces).
    pub require_restart_always: bool,
}

/// Validates a pod spec at `path` (`spec` or `spec.template.spec`).
pub fn validate_pod_spec(spec: &PodSpec, path: &str, opts: PodSpecOptions) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volume_names: BTreeSet<&str> = spec.volumes.iter().map(|v| v.name.as_str()).collect();

    if spec.containers.is_empty() {
        errs.push(FieldError::required(child(path, "containers"), ""));
    }
    let mut seen_names = BTreeSet::new();
    for (list, field) in [
        (&spec.init_containers, "initContainers"),
        (&spec.containers, "containers"),
    ] {
        for (i, c) in list.iter().enumerate() {
            let p = index(&child(path, field), i);
            errs.extend(validate_container(c, &p, &volume_names));
            if !c.name.is_empty() && !seen_names.insert(c.name.as_str()) {
                errs.push(FieldError::duplicate(child(&p, "name"), quote(&c.name)));
            }
        }
    }
    if let Some(i) = crate::runtime::mixed_runtime_container(spec) {
        let (field, i) = if i < spec.containers.len() {
            ("containers", i)
        } else {
            ("initContainers", i - spec.containers.len())
        };
        errs.push(FieldError::forbidden(
            child(&index(&child(path, field), i), "image"),
            "a Pod cannot mix Wasm components and Linux containers: run them as separate \
             Pods and connect them with Services",
        ));
    }

    let allowed_restart: &[&str] = if opts.require_restart_always {
        &["Always"]
    } else {
        &["Always", "OnFailure", "Never"]
    };
    check_one_of(
        &mut errs,
        child(path, "restartPolicy"),
        spec.restart_policy.as_deref(),
        allowed_restart,
    );
    errs.extend(validate_labels(
        &spec.node_selector,
        &child(path, "nodeSelector"),
    ));
    if let Some(n) = &spec.node_name {
        check(
            &mut errs,
            &child(path, "nodeName"),
            n,
            is_dns1123_subdomain(n),
        );
    }
    for (i, t) in spec.tolerations.iter().enumerate() {
        errs.extend(validate_toleration(
            t,
            &index(&child(path, "tolerations"), i),
        ));
    }
    check_non_negative(
        &mut errs,
        child(path, "terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
    );
    if let Some(v) = spec.active_deadline_seconds
        && v <= 0
    {
        errs.push(FieldError::invalid(
            child(path, "activeDeadlineSeconds"),
            v,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(rc) = &spec.runtime_class_name {
        check(
            &mut errs,
            &child(path, "runtimeClassName"),
            rc,
            is_dns1123_subdomain(rc),
        );
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = value {
            check(&mut errs, &child(path, field), v, is_dns1123_label(v));
        }
    }
    if let Some(sc) = &spec.security_context {
        let p = child(path, "securityContext");
        check_non_negative(&mut errs, child(&p, "runAsUser"), sc.run_as_user);
        check_non_negative(&mut errs, child(&p, "runAsGroup"), sc.run_as_group);
    }

    let mut seen_volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let p = index(&child(path, "volumes"), i);
        if v.name.is_empty() {
            errs.push(FieldError::required(child(&p, "name"), ""));
        } else {
            check(
                &mut errs,
                &child(&p, "name"),
                &v.name,
                is_dns1123_label(&v.name),
            );
            if !seen_volumes.insert(v.name.as_str()) {
                errs.push(FieldError::duplicate(child(&p, "name"), quote(&v.name)));
            }
        }
        let sources = [
            v.empty_dir.is_some(),
            v.config_map.is_some(),
            v.secret.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources == 0 {
            errs.push(FieldError::required(
                p.clone(),
                "must specify a volume type (emptyDir, configMap or secret)",
            ));
        } else if sources > 1 {
            errs.push(FieldError::forbidden(
                p.clone(),
                "may not specify more than 1 volume type",
            ));
        }
        if let Some(ed) = &v.empty_dir {
            let ep = child(&p, "emptyDir");
            check_one_of(
                &mut errs,
                child(&ep, "medium"),
                ed.medium.as_deref(),
                &["", "Memory"],
            );
            if let Some(q) = &ed.size_limit {
                errs.extend(validate_quantity(q, &child(&ep, "sizeLimit")));
            }
        }
        let projections = [
            v.config_map.as_ref().map(|c| {
                (
                    child(&p, "configMap"),
                    "name",
                    c.name.as_deref(),
                    &c.items,
                    c.default_mode,
                )
            }),
            v.secret.as_ref().map(|s| {
                (
                    child(&p, "secret"),
                    "secretName",
                    s.secret_name.as_deref(),
                    &s.items,
                    s.default_mode,
                )
            }),
        ];
        for (sp, name_field, name, items, mode) in projections.into_iter().flatten() {
            match name {
                None | Some("") => errs.push(FieldError::required(child(&sp, name_field), "")),
                Some(n) => check(
                    &mut errs,
                    &child(&sp, name_field),
                    n,
                    is_dns1123_subdomain(n),
                ),
            }
            check_file_mode(&mut errs, child(&sp, "defaultMode"), mode);
            for (j, item) in items.iter().enumerate() {
                let ip = index(&child(&sp, "items"), j);
                if item.key.is_empty() {
                    errs.push(FieldError::required(child(&ip, "key"), ""));
                }
                if item.path.is_empty() {
                    errs.push(FieldError::required(child(&ip, "path"), ""));
                } else if item.path.starts_with('/') || item.path.split('/').any(|s| s == "..") {
                    errs.push(FieldError::invalid_str(
                        child(&ip, "path"),
                        &item.path,
                        "must be a relative path without '..'",
                    ));
                }
                check_file_mode(&mut errs, child(&ip, "mode"), item.mode);
            }
        }
    }
    errs
}

fn check_file_mode(errs: &mut Vec<FieldError>, field: String, mode: Option<i32>) {
    if let Some(m) = mode
        && !(0..=0o777).contains(&m)
    {
        errs.push(FieldError::invalid(
            field,
            m,
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
}

fn validate_toleration(t: &Toleration, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let key_empty = t.key.as_deref().is_none_or(str::is_empty);
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty()) {
        check(&mut errs, &child(p, "key"), k, is_qualified_name(k));
    }
    match t.operator.as_deref() {
        None | Some("") | Some("Equal") => {
            if key_empty {
                errs.push(FieldError::invalid_str(
                    child(p, "operator"),
                    t.operator.as_deref().unwrap_or(""),
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
            if let Some(v) = &t.value {
                check(&mut errs, &child(p, "value"), v, is_valid_label_value(v));
            }
        }
        Some("Exists") => {
            if t.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::invalid_str(
                    child(p, "operator"),
                    t.value.as_deref().unwrap_or(""),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            child(p, "operator"),
            other,
            &["Equal", "Exists"],
        )),
    }
    let effect = t.effect.as_deref().filter(|e| !e.is_empty());
    check_one_of(&mut errs, child(p, "effect"), effect, TOLERATION_EFFECTS);
    if t.toleration_seconds.is_some() && effect != Some("NoExecute") {
        errs.push(FieldError::invalid_str(
            child(p, "effect"),
            effect.unwrap_or(""),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
    errs
}

/// Each entry must name a Linux capability ([`crate::core::LINUX_CAPABILITIES`], any case,
/// `CAP_` prefix optional); `ALL` only where `all_allowed` (`drop`): adding every capability
/// is as good as `privileged`, which ketch does not support.
fn validate_capabilities(
    errs: &mut Vec<FieldError>,
    path: &str,
    names: &[String],
    all_allowed: bool,
) {
    for (j, name) in names.iter().enumerate() {
        let field = index(path, j);
        if name.eq_ignore_ascii_case("ALL") {
            if !all_allowed {
                errs.push(FieldError::forbidden(
                    field,
                    "adding ALL capabilities is not supported: list the capabilities the container needs",
                ));
            }
        } else if linux_capability(name).is_none() {
            errs.push(FieldError::invalid_str(
                field,
                name,
                "not a Linux capability: use a name from capabilities(7) without the CAP_ prefix, such as \"NET_ADMIN\"",
            ));
        }
    }
}

fn validate_container(c: &Container, p: &str, volumes: &BTreeSet<&str>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if c.name.is_empty() {
        errs.push(FieldError::required(child(p, "name"), ""));
    } else {
        check(
            &mut errs,
            &child(p, "name"),
            &c.name,
            is_dns1123_label(&c.name),
        );
    }
    match c.image.as_deref() {
        None => errs.push(FieldError::required(child(p, "image"), "")),
        Some(img) if img.trim().is_empty() => {
            errs.push(FieldError::required(child(p, "image"), ""));
        }
        Some(img) if img.trim() != img => errs.push(FieldError::invalid_str(
            child(p, "image"),
            img,
            "must not have leading or trailing whitespace",
        )),
        _ => {}
    }
    check_one_of(
        &mut errs,
        child(p, "imagePullPolicy"),
        c.image_pull_policy.as_deref(),
        &["Always", "IfNotPresent", "Never"],
    );

    let mut port_names = BTreeSet::new();
    for (i, port) in c.ports.iter().enumerate() {
        let pp = index(&child(p, "ports"), i);
        if let Some(name) = &port.name {
            check(&mut errs, &child(&pp, "name"), name, is_port_name(name));
            if !port_names.insert(name.as_str()) {
                errs.push(FieldError::duplicate(child(&pp, "name"), quote(name)));
            }
        }
        check_port(&mut errs, child(&pp, "containerPort"), port.container_port);
        if let Some(hp) = port.host_port
            && hp != 0
        {
            check_port(&mut errs, child(&pp, "hostPort"), hp);
        }
        check_one_of(
            &mut errs,
            child(&pp, "protocol"),
            port.protocol.as_deref(),
            PROTOCOLS,
        );
    }

    for (i, env) in c.env.iter().enumerate() {
        let ep = index(&child(p, "env"), i);
        if env.name.is_empty() {
            errs.push(FieldError::required(child(&ep, "name"), ""));
        } else {
            check(
                &mut errs,
                &child(&ep, "name"),
                &env.name,
                is_env_var_name(&env.name),
            );
        }
        if let Some(from) = &env.value_from {
            let fp = child(&ep, "valueFrom");
            if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::invalid(
                    fp.clone(),
                    "",
                    "may not be specified when `value` is not empty",
                ));
            }
            let n = [
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
                from.field_ref.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if n != 1 {
                errs.push(FieldError::invalid(
                    fp.clone(),
                    "",
                    "must specify exactly one of: `configMapKeyRef`, `secretKeyRef` or `fieldRef`",
                ));
            }
            for (field, sel) in [
                ("configMapKeyRef", &from.config_map_key_ref),
                ("secretKeyRef", &from.secret_key_ref),
            ] {
                if let Some(sel) = sel {
                    let sp = child(&fp, field);
                    if sel.name.is_empty() {
                        errs.push(FieldError::required(child(&sp, "name"), ""));
                    }
                    if sel.key.is_empty() {
                        errs.push(FieldError::required(child(&sp, "key"), ""));
                    } else {
                        check(
                            &mut errs,
                            &child(&sp, "key"),
                            &sel.key,
                            is_config_map_key(&sel.key),
                        );
                    }
                }
            }
            if let Some(fr) = &from.field_ref
                && fr.field_path.is_empty()
            {
                errs.push(FieldError::required(
                    child(&child(&fp, "fieldRef"), "fieldPath"),
                    "",
                ));
            }
        }
    }

    for (i, ef) in c.env_from.iter().enumerate() {
        let ep = index(&child(p, "envFrom"), i);
        if let Some(prefix) = ef.prefix.as_deref().filter(|s| !s.is_empty()) {
            check(
                &mut errs,
                &child(&ep, "prefix"),
                prefix,
                is_env_var_name(prefix),
            );
        }
        match (&ef.config_map_ref, &ef.secret_ref) {
            (Some(_), Some(_)) => errs.push(FieldError::invalid(
                ep.clone(),
                "",
                "may not have more than one field specified at a time",
            )),
            (None, None) => errs.push(FieldError::required(
                ep.clone(),
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            (Some(r), None) | (None, Some(r)) => {
                let field = if ef.config_map_ref.is_some() {
                    "configMapRef"
                } else {
                    "secretRef"
                };
                if r.name.is_empty() {
                    errs.push(FieldError::required(child(&child(&ep, field), "name"), ""));
                }
            }
        }
    }

    if let Some(res) = &c.resources {
        let rp = child(p, "resources");
        for (field, map) in [("limits", &res.limits), ("requests", &res.requests)] {
            for (name, q) in map {
                let qp = key(&child(&rp, field), name);
                check(&mut errs, &qp, name, is_qualified_name(name));
                errs.extend(validate_quantity(q, &qp));
            }
        }
        for (name, req) in &res.requests {
            let Some(limit) = res.limits.get(name) else {
                continue;
            };
            // CPU is compared in millis, everything else in whole units.
            let cmp = |q: &Quantity| {
                if name == "cpu" { q.millis() } else { q.value() }
            };
            if let (Ok(r), Ok(l)) = (cmp(req), cmp(limit))
                && r > l
            {
                errs.push(FieldError::invalid_str(
                    key(&child(&rp, "requests"), name),
                    &req.0,
                    format!("must be less than or equal to {name} limit of {}", limit.0),
                ));
            }
        }
    }

    for (field, probe) in [
        ("readinessProbe", &c.readiness_probe),
        ("livenessProbe", &c.liveness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        if let Some(probe) = probe {
            errs.extend(validate_probe(
                probe,
                &child(p, field),
                field != "readinessProbe",
            ));
        }
    }

    if let Some(sc) = &c.security_context {
        let sp = child(p, "securityContext");
        check_non_negative(&mut errs, child(&sp, "runAsUser"), sc.run_as_user);
        check_non_negative(&mut errs, child(&sp, "runAsGroup"), sc.run_as_group);
        if sc.privileged == Some(true) {
            // A privileged container gets every capability, every device and no seccomp or
            // masked paths: ketch runs untrusted Pods next to each other and offers none of it.
            errs.push(FieldError::forbidden(
                child(&sp, "privileged"),
                "privileged containers are not supported",
            ));
            if sc.allow_privilege_escalation == Some(false) {
                errs.push(FieldError::invalid(
                    child(&sp, "allowPrivilegeEscalation"),
                    false,
                    "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                ));
            }
        }
        if let Some(caps) = &sc.capabilities {
            let cp = child(&sp, "capabilities");
            validate_capabilities(&mut errs, &child(&cp, "add"), &caps.add, false);
            validate_capabilities(&mut errs, &child(&cp, "drop"), &caps.drop, true);
        }
    }

    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mp = index(&child(p, "volumeMounts"), i);
        if m.name.is_empty() {
            errs.push(FieldError::required(child(&mp, "name"), ""));
        } else if !volumes.contains(m.name.as_str()) {
            errs.push(FieldError::not_supported(
                child(&mp, "name"),
                &m.name,
                &volumes.iter().copied().collect::<Vec<_>>(),
            ));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(child(&mp, "mountPath"), ""));
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid_str(
                child(&mp, "mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
        if let Some(sub) = &m.sub_path
            && (sub.starts_with('/') || sub.split('/').any(|s| s == ".."))
        {
            errs.push(FieldError::invalid_str(
                child(&mp, "subPath"),
                sub,
                "must be a relative path without '..'",
            ));
        }
    }
    errs
}

fn validate_probe(probe: &Probe, p: &str, success_must_be_one: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let handlers = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if handlers == 0 {
        errs.push(FieldError::required(
            p.to_string(),
            "must specify a handler type (httpGet, tcpSocket or exec)",
        ));
    } else if handlers > 1 {
        errs.push(FieldError::forbidden(
            p.to_string(),
            "may not specify more than 1 handler type",
        ));
    }
    if let Some(h) = &probe.http_get {
        let hp = child(p, "httpGet");
        errs.extend(validate_port_ref(&h.port, &child(&hp, "port")));
        check_one_of(
            &mut errs,
            child(&hp, "scheme"),
            h.scheme.as_deref(),
            &["HTTP", "HTTPS"],
        );
        // The agent probes the Pod itself over plain HTTP (in-process for Wasm).
        if h.scheme.as_deref() == Some("HTTPS") {
            errs.push(FieldError::not_supported_yet(
                child(&hp, "scheme"),
                "an HTTPS probe",
            ));
        }
        if h.host.as_deref().is_some_and(|h| !h.is_empty()) {
            errs.push(FieldError::not_supported_yet(
                child(&hp, "host"),
                "probing a host other than the Pod",
            ));
        }
        for (i, header) in h.http_headers.iter().enumerate() {
            if header.name.is_empty() {
                errs.push(FieldError::required(
                    child(&index(&child(&hp, "httpHeaders"), i), "name"),
                    "",
                ));
            }
        }
    }
    if let Some(t) = &probe.tcp_socket {
        errs.extend(validate_port_ref(
            &t.port,
            &child(&child(p, "tcpSocket"), "port"),
        ));
    }
    if let Some(e) = &probe.exec {
        if e.command.is_empty() {
            errs.push(FieldError::required(
                child(&child(p, "exec"), "command"),
                "",
            ));
        } else {
            errs.push(FieldError::not_supported_yet(
                child(p, "exec"),
                "an exec probe (use httpGet or tcpSocket)",
            ));
        }
    }
    check_non_negative(
        &mut errs,
        child(p, "initialDelaySeconds"),
        probe.initial_delay_seconds.map(i64::from),
    );
    for (field, v) in [
        ("periodSeconds", probe.period_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if let Some(v) = v
            && v < 1
        {
            errs.push(FieldError::invalid(
                child(p, field),
                v,
                "must be greater than or equal to 1",
            ));
        }
    }
    if success_must_be_one
        && let Some(v) = probe.success_threshold
        && v != 1
    {
        errs.push(FieldError::invalid(
            child(p, "successThreshold"),
            v,
            "must be 1",
        ));
    }
    errs
}

/// A port given by number (1–65535) or by IANA service name.
fn validate_port_ref(port: &IntOrString, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match port {
        IntOrString::Int(n) => check_port(&mut errs, p.to_string(), *n),
        IntOrString::String(s) => check(&mut errs, p, s, is_port_name(s)),
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Per-kind validation

/// Validates a Namespace.
pub fn validate_namespace(ns: &Namespace) -> Vec<FieldError> {
    validate_object_meta(&ns.metadata, false, NameFormat::Dns1123Label, "metadata")
}

/// Validates a Pod.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &pod.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        "metadata",
    );
    match &pod.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec", PodSpecOptions::default())),
        None => errs.push(FieldError::required("spec", "")),
    }
    errs
}

/// Validates a pod template, including that `selector` (if given) selects its labels.
fn validate_template(
    template: &PodTemplateSpec,
    selector: Option<&LabelSelector>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta_path = child(path, "metadata");
    let empty = ObjectMeta::default();
    let meta = template.metadata.as_ref().unwrap_or(&empty);
    errs.extend(validate_labels(&meta.labels, &child(&meta_path, "labels")));
    errs.extend(validate_annotations(
        &meta.annotations,
        &child(&meta_path, "annotations"),
    ));
    if let Some(sel) = selector
        && !sel.is_empty()
        && let Ok(parsed) = Selector::from_label_selector(sel)
        && !parsed.matches(&meta.labels)
    {
        // Rendered the way the Go API server prints a map, so messages look familiar.
        let rendered = serde_json::to_string(&meta.labels).unwrap_or_default();
        errs.push(FieldError::invalid(
            child(&meta_path, "labels"),
            format!("map[string]string{rendered}"),
            "selector does not match template labels",
        ));
    }
    match &template.spec {
        Some(spec) => errs.extend(validate_pod_spec(
            spec,
            &child(path, "spec"),
            PodSpecOptions {
                require_restart_always: true,
            },
        )),
        None => errs.push(FieldError::required(child(path, "spec"), "")),
    }
    errs
}

fn validate_workload_selector(sel: &LabelSelector, path: &str) -> Vec<FieldError> {
    if sel.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    validate_label_selector(sel, path)
}

fn validate_int_or_percent(v: &IntOrString, path: &str) -> (Vec<FieldError>, bool) {
    match v {
        IntOrString::Int(n) if *n < 0 => (
            vec![FieldError::invalid(
                path,
                n,
                "must be greater than or equal to 0",
            )],
            false,
        ),
        IntOrString::Int(n) => (Vec::new(), *n == 0),
        IntOrString::String(s) => match s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok()) {
            Some(n) => (Vec::new(), n == 0),
            None => (
                vec![FieldError::invalid_str(
                    path,
                    s,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )],
                false,
            ),
        },
    }
}

/// Validates a Deployment.
pub fn validate_deployment(d: &Deployment) -> Vec<FieldError> {
    let mut errs =
        validate_object_meta(&d.metadata, true, NameFormat::Dns1123Subdomain, "metadata");
    let Some(spec) = &d.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    if let Some(r) = spec.replicas {
        check_non_negative(&mut errs, "spec.replicas".into(), Some(i64::from(r)));
    }
    errs.extend(validate_workload_selector(&spec.selector, "spec.selector"));
    errs.extend(validate_template(
        &spec.template,
        Some(&spec.selector),
        "spec.template",
    ));
    if let Some(strategy) = &spec.strategy {
        let sp = "spec.strategy";
        let ty = strategy.type_.as_deref().unwrap_or("RollingUpdate");
        check_one_of(
            &mut errs,
            child(sp, "type"),
            strategy.type_.as_deref(),
            &["Recreate", "RollingUpdate"],
        );
        if let Some(ru) = &strategy.rolling_update {
            let rp = child(sp, "rollingUpdate");
            if ty == "Recreate" {
                errs.push(FieldError::forbidden(
                    rp.clone(),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
            let mut surge_zero = false;
            let mut unavailable_zero = false;
            if let Some(s) = &ru.max_surge {
                let (e, zero) = validate_int_or_percent(s, &child(&rp, "maxSurge"));
                errs.extend(e);
                surge_zero = zero;
            }
            if let Some(u) = &ru.max_unavailable {
                let up = child(&rp, "maxUnavailable");
                let (e, zero) = validate_int_or_percent(u, &up);
                errs.extend(e);
                unavailable_zero = zero;
                if let IntOrString::String(s) = u
                    && let Some(n) = s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok())
                    && n > 100
                {
                    errs.push(FieldError::invalid_str(
                        up.clone(),
                        s,
                        "must not be greater than 100%",
                    ));
                }
            }
            if surge_zero && unavailable_zero {
                errs.push(FieldError::invalid(
                    child(&rp, "maxUnavailable"),
                    ru.max_unavailable
                        .as_ref()
                        .map(|v| match v {
                            IntOrString::Int(n) => n.to_string(),
                            IntOrString::String(s) => quote(s),
                        })
                        .unwrap_or_default(),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
    }
    for (field, v) in [
        ("minReadySeconds", spec.min_ready_seconds),
        ("revisionHistoryLimit", spec.revision_history_limit),
        ("progressDeadlineSeconds", spec.progress_deadline_seconds),
    ] {
        check_non_negative(&mut errs, child("spec", field), v.map(i64::from));
    }
    if let (Some(deadline), Some(min_ready)) =
        (spec.progress_deadline_seconds, spec.min_ready_seconds)
        && deadline >= 0
        && deadline <= min_ready
    {
        errs.push(FieldError::invalid(
            "spec.progressDeadlineSeconds",
            deadline,
            "must be greater than minReadySeconds",
        ));
    }
    errs
}

/// Validates a ReplicaSet.
pub fn validate_replica_set(rs: &ReplicaSet) -> Vec<FieldError> {
    let mut errs =
        validate_object_meta(&rs.metadata, true, NameFormat::Dns1123Subdomain, "metadata");
    let Some(spec) = &rs.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    if let Some(r) = spec.replicas {
        check_non_negative(&mut errs, "spec.replicas".into(), Some(i64::from(r)));
    }
    check_non_negative(
        &mut errs,
        "spec.minReadySeconds".into(),
        spec.min_ready_seconds.map(i64::from),
    );
    errs.extend(validate_workload_selector(&spec.selector, "spec.selector"));
    errs.extend(validate_template(
        &spec.template,
        Some(&spec.selector),
        "spec.template",
    ));
    errs
}

/// Validates a Service.
pub fn validate_service(svc: &Service) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&svc.metadata, true, NameFormat::Dns1035Label, "metadata");
    let Some(spec) = &svc.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    match ty {
        "ClusterIP" | "NodePort" => {}
        "LoadBalancer" | "ExternalName" => errs.push(FieldError {
            field: "spec.type".into(),
            kind: FieldErrorKind::NotSupported(vec!["ClusterIP".into(), "NodePort".into()]),
            detail: format!("{} (not supported yet)", quote(ty)),
        }),
        other => errs.push(FieldError::not_supported(
            "spec.type",
            other,
            &["ClusterIP", "NodePort"],
        )),
    }
    errs.extend(validate_labels(&spec.selector, "spec.selector"));
    check_one_of(
        &mut errs,
        "spec.sessionAffinity".into(),
        spec.session_affinity.as_deref(),
        &["ClientIP", "None"],
    );
    if spec.ports.is_empty() && spec.cluster_ip.as_deref() != Some("None") {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let pp = index("spec.ports", i);
        match port.name.as_deref() {
            None | Some("") if spec.ports.len() > 1 => {
                errs.push(FieldError::required(child(&pp, "name"), ""));
            }
            None | Some("") => {}
            Some(name) => {
                check(&mut errs, &child(&pp, "name"), name, is_dns1123_label(name));
                if !names.insert(name) {
                    errs.push(FieldError::duplicate(child(&pp, "name"), quote(name)));
                }
            }
        }
        check_port(&mut errs, child(&pp, "port"), port.port);
        check_one_of(
            &mut errs,
            child(&pp, "protocol"),
            port.protocol.as_deref(),
            PROTOCOLS,
        );
        if let Some(tp) = &port.target_port {
            // Kubernetes treats targetPort 0 as "same as port".
            if *tp != IntOrString::Int(0) {
                errs.extend(validate_port_ref(tp, &child(&pp, "targetPort")));
            }
        }
        if let Some(np) = port.node_port
            && np != 0
        {
            if ty != "NodePort" {
                errs.push(FieldError::forbidden(
                    child(&pp, "nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            } else if !(30000..=32767).contains(&np) {
                errs.push(FieldError::invalid(
                    child(&pp, "nodePort"),
                    np,
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                ));
            } else if !node_ports.insert((np, port.protocol.as_deref().unwrap_or("TCP"))) {
                errs.push(FieldError::duplicate(child(&pp, "nodePort"), np));
            }
        }
    }
    errs
}

/// Validates ConfigMap/Secret style data keys at `path` (`data`, `binaryData`).
fn validate_data_keys<'a>(
    keys: impl Iterator<Item = &'a String>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    for k in keys {
        check(errs, path, k, is_config_map_key(k));
    }
}

fn is_base64(s: &str) -> bool {
    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

/// Validates a ConfigMap.
pub fn validate_config_map(cm: &ConfigMap) -> Vec<FieldError> {
    let mut errs =
        validate_object_meta(&cm.metadata, true, NameFormat::Dns1123Subdomain, "metadata");
    validate_data_keys(cm.data.keys(), "data", &mut errs);
    validate_data_keys(cm.binary_data.keys(), "binaryData", &mut errs);
    let mut total = 0usize;
    for (k, v) in &cm.data {
        total += k.len() + v.len();
    }
    for (k, v) in &cm.binary_data {
        total += k.len() + v.len();
        if cm.data.contains_key(k) {
            errs.push(FieldError::invalid_str(
                "data",
                k,
                "duplicate of key present in binaryData",
            ));
        }
        if !is_base64(v) {
            errs.push(FieldError::invalid(
                key("binaryData", k),
                "<binary>",
                "must be valid base64",
            ));
        }
    }
    if total > 1024 * 1024 {
        errs.push(FieldError::too_long("", 1024 * 1024));
    }
    errs
}

/// Validates a Secret (after `stringData` has been merged into `data`).
pub fn validate_secret(s: &Secret) -> Vec<FieldError> {
    let mut errs =
        validate_object_meta(&s.metadata, true, NameFormat::Dns1123Subdomain, "metadata");
    validate_data_keys(s.data.keys(), "data", &mut errs);
    validate_data_keys(s.string_data.keys(), "stringData", &mut errs);
    let mut total = 0usize;
    for (k, v) in &s.data {
        match base64::engine::general_purpose::STANDARD.decode(v) {
            Ok(bytes) => total += bytes.len(),
            // The value is secret: never echo it into an error message.
            Err(_) => errs.push(FieldError::invalid(
                key("data", k),
                "<secret contents redacted>",
                "must be valid base64",
            )),
        }
    }
    if total > 1024 * 1024 {
        errs.push(FieldError::too_long("data", 1024 * 1024));
    }
    if let Some(t) = &s.type_
        && t.is_empty()
    {
        errs.push(FieldError::required("type", ""));
    }
    errs
}

/// Validates a Node.
pub fn validate_node(node: &Node) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &node.metadata,
        false,
        NameFormat::Dns1123Subdomain,
        "metadata",
    );
    if let Some(spec) = &node.spec {
        for (i, t) in spec.taints.iter().enumerate() {
            errs.extend(validate_taint(t, &index("spec.taints", i)));
        }
    }
    if let Some(status) = &node.status {
        errs.extend(validate_node_status(status));
    }
    errs
}

/// Validates a Node's status (its quantities).
pub fn validate_node_status(status: &NodeStatus) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, map) in [
        ("capacity", &status.capacity),
        ("allocatable", &status.allocatable),
    ] {
        for (name, q) in map {
            errs.extend(validate_quantity(q, &key(&child("status", field), name)));
        }
    }
    errs
}

fn validate_taint(t: &Taint, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if t.key.is_empty() {
        errs.push(FieldError::required(child(p, "key"), ""));
    } else {
        check(
            &mut errs,
            &child(p, "key"),
            &t.key,
            is_qualified_name(&t.key),
        );
    }
    if let Some(v) = &t.value {
        check(&mut errs, &child(p, "value"), v, is_valid_label_value(v));
    }
    if t.effect.is_empty() {
        errs.push(FieldError::required(child(p, "effect"), ""));
    } else {
        check_one_of(
            &mut errs,
            child(p, "effect"),
            Some(&t.effect),
            TOLERATION_EFFECTS,
        );
    }
    errs
}

/// Validates an Event. Event names are generated (`<object>.<hex>`), so any subdomain is fine.
pub fn validate_event(ev: &Event) -> Vec<FieldError> {
    let mut errs =
        validate_object_meta(&ev.metadata, true, NameFormat::Dns1123Subdomain, "metadata");
    check_one_of(
        &mut errs,
        "type".into(),
        ev.type_.as_deref(),
        &["Normal", "Warning"],
    );
    if let (Some(obj_ns), Some(ev_ns)) = (
        ev.involved_object
            .namespace
            .as_deref()
            .filter(|s| !s.is_empty()),
        ev.metadata.namespace.as_deref().filter(|s| !s.is_empty()),
    ) && obj_ns != ev_ns
    {
        errs.push(FieldError::invalid_str(
            "involvedObject.namespace",
            obj_ns,
            "does not match event.namespace",
        ));
    }
    if let Some(c) = ev.count {
        check_non_negative(&mut errs, "count".into(), Some(i64::from(c)));
    }
    errs
}

/// Validates a Lease.
pub fn validate_lease(lease: &Lease) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &lease.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        "metadata",
    );
    if let Some(spec) = &lease.spec {
        if let Some(d) = spec.lease_duration_seconds
            && d <= 0
        {
            errs.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                d,
                "must be greater than 0",
            ));
        }
        check_non_negative(
            &mut errs,
            "spec.leaseTransitions".into(),
            spec.lease_transitions.map(i64::from),
        );
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// discovery.k8s.io and networking.k8s.io

/// Kubernetes' limits per EndpointSlice: they keep one slice (and one watch event) small.
const MAX_SLICE_ENDPOINTS: usize = 1000;
const MAX_ENDPOINT_ADDRESSES: usize = 100;
const MAX_SLICE_PORTS: usize = 20000;

/// Validates an EndpointSlice (Kubernetes' `ValidateEndpointSlice`, without topology hints).
pub fn validate_endpoint_slice(slice: &EndpointSlice) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &slice.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        "metadata",
    );
    let address_type = slice.address_type.as_str();
    match address_type {
        "" => errs.push(FieldError::required("addressType", "")),
        ADDRESS_TYPE_IPV4 | ADDRESS_TYPE_IPV6 | ADDRESS_TYPE_FQDN => {}
        other => errs.push(FieldError::not_supported(
            "addressType",
            other,
            &[ADDRESS_TYPE_FQDN, ADDRESS_TYPE_IPV4, ADDRESS_TYPE_IPV6],
        )),
    }
    if slice.endpoints.len() > MAX_SLICE_ENDPOINTS {
        errs.push(FieldError::too_many(
            "endpoints",
            slice.endpoints.len(),
            MAX_SLICE_ENDPOINTS,
        ));
    }
    for (i, ep) in slice.endpoints.iter().enumerate() {
        let p = index("endpoints", i);
        let ap = child(&p, "addresses");
        if ep.addresses.is_empty() {
            errs.push(FieldError::required(&ap, "must contain at least 1 address"));
        } else if ep.addresses.len() > MAX_ENDPOINT_ADDRESSES {
            errs.push(FieldError::too_many(
                &ap,
                ep.addresses.len(),
                MAX_ENDPOINT_ADDRESSES,
            ));
        }
        for (j, addr) in ep.addresses.iter().enumerate() {
            let field = index(&ap, j);
            match address_type {
                ADDRESS_TYPE_IPV4 if addr.parse::<std::net::Ipv4Addr>().is_err() => {
                    errs.push(FieldError::invalid_str(
                        field,
                        addr,
                        "must be a valid IPv4 address",
                    ));
                }
                ADDRESS_TYPE_IPV6 if addr.parse::<std::net::Ipv6Addr>().is_err() => {
                    errs.push(FieldError::invalid_str(
                        field,
                        addr,
                        "must be a valid IPv6 address",
                    ));
                }
                ADDRESS_TYPE_FQDN => check(&mut errs, &field, addr, is_dns1123_subdomain(addr)),
                _ => {}
            }
        }
        if let Some(node) = ep.node_name.as_deref().filter(|n| !n.is_empty()) {
            check(
                &mut errs,
                &child(&p, "nodeName"),
                node,
                is_dns1123_subdomain(node),
            );
        }
        if let Some(host) = ep.hostname.as_deref() {
            check(
                &mut errs,
                &child(&p, "hostname"),
                host,
                is_dns1123_label(host),
            );
        }
    }
    if slice.ports.len() > MAX_SLICE_PORTS {
        errs.push(FieldError::too_many(
            "ports",
            slice.ports.len(),
            MAX_SLICE_PORTS,
        ));
    }
    let mut names = BTreeSet::new();
    for (i, port) in slice.ports.iter().enumerate() {
        let p = index("ports", i);
        let name = port.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            check(&mut errs, &child(&p, "name"), name, is_dns1123_label(name));
        }
        if !names.insert(name) {
            errs.push(FieldError::duplicate(child(&p, "name"), quote(name)));
        }
        if let Some(n) = port.port {
            check_port(&mut errs, child(&p, "port"), n);
        }
        check_one_of(
            &mut errs,
            child(&p, "protocol"),
            port.protocol.as_deref(),
            PROTOCOLS,
        );
        if let Some(ap) = port.app_protocol.as_deref() {
            check(
                &mut errs,
                &child(&p, "appProtocol"),
                ap,
                is_qualified_name(ap),
            );
        }
    }
    errs
}

/// Validates an Ingress (Kubernetes' `ValidateIngressCreate` rules for networking/v1).
pub fn validate_ingress(ing: &Ingress) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &ing.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        "metadata",
    );
    let Some(spec) = &ing.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    if spec.rules.is_empty() && spec.default_backend.is_none() {
        errs.push(FieldError::invalid(
            "spec",
            "[]",
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(class) = spec.ingress_class_name.as_deref() {
        check(
            &mut errs,
            "spec.ingressClassName",
            class,
            is_dns1123_subdomain(class),
        );
    }
    if let Some(b) = &spec.default_backend {
        errs.extend(validate_ingress_backend(b, "spec.defaultBackend"));
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let p = index("spec.rules", i);
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            let hp = child(&p, "host");
            if is_ip_address(host) {
                errs.push(FieldError::invalid_str(
                    &hp,
                    host,
                    "must be a DNS name, not an IP address",
                ));
            } else if host.contains('*') {
                check(&mut errs, &hp, host, is_wildcard_dns1123_subdomain(host));
            } else {
                check(&mut errs, &hp, host, is_dns1123_subdomain(host));
            }
        }
        let Some(http) = &rule.http else {
            continue;
        };
        let pp = child(&child(&p, "http"), "paths");
        if http.paths.is_empty() {
            errs.push(FieldError::required(&pp, ""));
        }
        for (j, path) in http.paths.iter().enumerate() {
            let p = index(&pp, j);
            let value = path.path.as_deref().unwrap_or("");
            let path_field = child(&p, "path");
            match path.path_type.as_str() {
                "" => errs.push(FieldError::required(
                    child(&p, "pathType"),
                    "must be specified",
                )),
                PATH_TYPE_EXACT | PATH_TYPE_PREFIX => {
                    if !value.starts_with('/') {
                        errs.push(FieldError::invalid_str(
                            &path_field,
                            value,
                            "must be an absolute path",
                        ));
                    }
                    // Sequences a proxy would normalize differently from the matcher.
                    for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                        if value.contains(seq) {
                            errs.push(FieldError::invalid_str(
                                &path_field,
                                value,
                                format!("must not contain '{seq}'"),
                            ));
                        }
                    }
                    for suffix in ["/..", "/."] {
                        if value.ends_with(suffix) {
                            errs.push(FieldError::invalid_str(
                                &path_field,
                                value,
                                format!("cannot end with '{suffix}'"),
                            ));
                        }
                    }
                }
                PATH_TYPE_IMPLEMENTATION_SPECIFIC => {
                    if !value.is_empty() && !value.starts_with('/') {
                        errs.push(FieldError::invalid_str(
                            &path_field,
                            value,
                            "must be an absolute path",
                        ));
                    }
                }
                other => errs.push(FieldError::not_supported(
                    child(&p, "pathType"),
                    other,
                    &[
                        PATH_TYPE_EXACT,
                        PATH_TYPE_IMPLEMENTATION_SPECIFIC,
                        PATH_TYPE_PREFIX,
                    ],
                )),
            }
            errs.extend(validate_ingress_backend(
                &path.backend,
                &child(&p, "backend"),
            ));
        }
    }
    if !spec.tls.is_empty() {
        errs.push(FieldError::not_supported_yet("spec.tls", "TLS termination"));
    }
    errs
}

fn validate_ingress_backend(b: &IngressBackend, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            "\"\"",
            "cannot set both resource and service backends",
        )),
        (None, Some(_)) => errs.push(FieldError::not_supported_yet(
            child(path, "resource"),
            "a resource backend",
        )),
        (None, None) => errs.push(FieldError::invalid(
            path,
            "\"\"",
            "resource or service backend is required",
        )),
        (Some(svc), None) => {
            let sp = child(path, "service");
            if svc.name.is_empty() {
                errs.push(FieldError::required(child(&sp, "name"), ""));
            } else {
                check(
                    &mut errs,
                    &child(&sp, "name"),
                    &svc.name,
                    is_dns1035_label(&svc.name),
                );
            }
            let port = svc.port.clone().unwrap_or_default();
            let name = port.name.as_deref().filter(|n| !n.is_empty());
            let number = port.number.filter(|n| *n != 0);
            let pp = child(&sp, "port");
            match (name, number) {
                (Some(_), Some(_)) => errs.push(FieldError::invalid(
                    path,
                    "\"\"",
                    "cannot set both port name & port number",
                )),
                (Some(name), None) => {
                    check(&mut errs, &child(&pp, "name"), name, is_port_name(name));
                }
                (None, Some(n)) => check_port(&mut errs, child(&pp, "number"), n),
                (None, None) => errs.push(FieldError::required(
                    path,
                    "port name or number is required",
                )),
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use crate::coordination::LeaseSpec;
    use crate::core::{
        Capabilities, ContainerPort, ExecAction, HttpGetAction, IntOrString, Probe,
        ResourceRequirements, SecurityContext, TcpSocketAction,
    };

    fn strings(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn field_errors_display_exactly_like_kubernetes() {
        assert_eq!(
            FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0")
                .to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            FieldError::required("metadata.name", "name or generateName is required").to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        assert_eq!(
            FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                "Sometimes",
                &["Always", "OnFailure", "Never"]
            )
            .to_string(),
            "spec.template.spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(
            FieldError::required("spec.containers", "").to_string(),
            "spec.containers: Required value"
        );
        assert_eq!(
            FieldError::duplicate("spec.containers[1].name", "\"web\"").to_string(),
            "spec.containers[1].name: Duplicate value: \"web\""
        );
        assert_eq!(
            FieldError::too_long("metadata.annotations", 262144).to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        assert_eq!(
            FieldError::forbidden("spec.foo", "field not supported by ketch").to_string(),
            "spec.foo: Forbidden: field not supported by ketch"
        );
    }

    #[test]
    fn dns_names_reject_uppercase_underscores_and_excess_length() {
        assert!(is_dns1123_label("web-1").is_empty());
        assert!(!is_dns1123_label("Web").is_empty());
        assert!(!is_dns1123_label("my_app").is_empty());
        assert!(!is_dns1123_label("-web").is_empty());
        assert!(!is_dns1123_label("web.example").is_empty());
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert!(is_dns1123_label(&"a".repeat(63)).is_empty());
        assert!(is_dns1123_subdomain("web.example.com").is_empty());
        assert!(!is_dns1123_subdomain("web..example").is_empty());
        assert!(!is_dns1123_subdomain(&"a.".repeat(127)).is_empty());
        assert!(!is_dns1123_subdomain("").is_empty());
        assert!(is_dns1035_label("web").is_empty());
        assert!(!is_dns1035_label("1web").is_empty());
    }

    #[test]
    fn label_keys_allow_a_subdomain_prefix_and_values_may_be_empty() {
        assert!(is_qualified_name("app").is_empty());
        assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
        assert!(is_qualified_name("My_Key.v1").is_empty());
        assert!(
            !is_qualified_name("Example.com/name").is_empty(),
            "prefix must be lowercase"
        );
        assert!(!is_qualified_name("/name").is_empty());
        assert!(!is_qualified_name("example.com/").is_empty());
        assert!(!is_qualified_name("a/b/c").is_empty());
        assert!(!is_qualified_name(&"k".repeat(64)).is_empty());
        assert!(!is_qualified_name("-app").is_empty());
        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("v1.2_3-x").is_empty());
        assert!(!is_valid_label_value("has space").is_empty());
        assert!(!is_valid_label_value(&"v".repeat(64)).is_empty());
        assert!(!is_valid_label_value("end-").is_empty());
    }

    #[test]
    fn bad_labels_are_reported_at_their_key() {
        let labels = BTreeMap::from([
            ("ok".to_string(), "x y".to_string()),
            ("bad key".to_string(), "v".to_string()),
        ]);
        let errs = strings(&validate_labels(&labels, "metadata.labels"));
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0].starts_with("metadata.labels: Invalid value: \"bad key\": name part"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("metadata.labels[ok]: Invalid value: \"x y\": a valid label"),
            "{}",
            errs[1]
        );
    }

    #[test]
    fn annotations_are_limited_to_256_kib_in_total() {
        let big = BTreeMap::from([("a".to_string(), "x".repeat(256 * 1024))]);
        assert_eq!(
            strings(&validate_annotations(&big, "metadata.annotations")),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some("img".into()),
            ..Default::default()
        }
    }

    #[test]
    fn pods_need_containers_with_unique_names_and_images() {
        assert_eq!(
            strings(&validate_pod(&pod(vec![]))),
            vec!["spec.containers: Required value"]
        );
        let mut noimage = container("b");
        noimage.image = None;
        let errs = strings(&validate_pod(&pod(vec![
            container("a"),
            container("a"),
            noimage,
        ])));
        assert_eq!(
            errs,
            vec![
                "spec.containers[1].name: Duplicate value: \"a\"",
                "spec.containers[2].image: Required value",
            ]
        );
    }

    #[test]
    fn privileged_containers_are_forbidden() {
        let mut c = container("a");
        c.security_context = Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        });
        assert_eq!(
            strings(&validate_pod(&pod(vec![c]))),
            vec![
                "spec.containers[0].securityContext.privileged: Forbidden: privileged containers are not supported"
            ]
        );
        let mut unprivileged = container("a");
        unprivileged.security_context = Some(SecurityContext {
            privileged: Some(false),
            ..Default::default()
        });
        assert!(validate_pod(&pod(vec![unprivileged])).is_empty());
    }

    #[test]
    fn http_and_tcp_probes_are_accepted_exec_https_and_other_hosts_are_not_yet() {
        let http = |scheme: Option<&str>, host: Option<&str>| Probe {
            http_get: Some(HttpGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Int(8080),
                scheme: scheme.map(str::to_string),
                host: host.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut ok = container("a");
        ok.readiness_probe = Some(http(Some("HTTP"), None));
        ok.liveness_probe = Some(Probe {
            tcp_socket: Some(TcpSocketAction {
                port: IntOrString::Int(8080),
            }),
            ..Default::default()
        });
        assert!(validate_pod(&pod(vec![ok])).is_empty());
        let mut c = container("a");
        c.readiness_probe = Some(http(Some("HTTPS"), Some("10.0.0.1")));
        c.startup_probe = Some(Probe {
            exec: Some(ExecAction {
                command: vec!["true".into()],
            }),
            ..Default::default()
        });
        assert_eq!(
            strings(&validate_pod(&pod(vec![c]))),
            vec![
                "spec.containers[0].readinessProbe.httpGet.scheme: Unsupported value: an HTTPS probe is not supported yet",
                "spec.containers[0].readinessProbe.httpGet.host: Unsupported value: probing a host other than the Pod is not supported yet",
                "spec.containers[0].startupProbe.exec: Unsupported value: an exec probe (use httpGet or tcpSocket) is not supported yet",
            ]
        );
    }

    #[test]
    fn capabilities_must_be_linux_capabilities_and_all_may_only_be_dropped() {
        let mut c = container("a");
        c.security_context = Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: vec![
                    "NET_ADMIN".into(),
                    "cap_sys_time".into(),
                    "FOO".into(),
                    "ALL".into(),
                ],
                drop: vec!["ALL".into(), "CAP_CHOWN".into(), "NET-RAW".into()],
            }),
            ..Default::default()
        });
        assert_eq!(
            strings(&validate_pod(&pod(vec![c]))),
            vec![
                "spec.containers[0].securityContext.capabilities.add[2]: Invalid value: \"FOO\": not a Linux capability: use a name from capabilities(7) without the CAP_ prefix, such as \"NET_ADMIN\"",
                "spec.containers[0].securityContext.capabilities.add[3]: Forbidden: adding ALL capabilities is not supported: list the capabilities the container needs",
                "spec.containers[0].securityContext.capabilities.drop[2]: Invalid value: \"NET-RAW\": not a Linux capability: use a name from capabilities(7) without the CAP_ prefix, such as \"NET_ADMIN\"",
            ]
        );
    }

    #[test]
    fn capability_names_are_matched_in_any_case_with_or_without_the_cap_prefix() {
        assert_eq!(linux_capability("NET_ADMIN"), Some("NET_ADMIN"));
        assert_eq!(linux_capability("net_admin"), Some("NET_ADMIN"));
        assert_eq!(linux_capability("CAP_SYS_ADMIN"), Some("SYS_ADMIN"));
        assert_eq!(linux_capability("cap_syslog"), Some("SYSLOG"));
        assert_eq!(linux_capability("ALL"), None);
        assert_eq!(linux_capability("CAP_"), None);
        assert_eq!(linux_capability(""), None);
        let unique: BTreeSet<_> = crate::core::LINUX_CAPABILITIES.iter().collect();
        assert_eq!(unique.len(), crate::core::LINUX_CAPABILITIES.len());
    }

    #[test]
    fn negative_or_malformed_resource_quantities_are_rejected() {
        let mut c = container("a");
        c.resources = Some(ResourceRequirements {
            requests: BTreeMap::from([
                ("cpu".to_string(), Quantity::new("-1")),
                ("memory".to_string(), Quantity::new("lots")),
            ]),
            limits: BTreeMap::new(),
        });
        let errs = strings(&validate_pod(&pod(vec![c])));
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": quantity \"-1\" must not be negative",
                "spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantity \"lots\" is not a number with an optional suffix (e.g. \"250m\", \"128Mi\", \"1.5\")",
            ]
        );
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let mut c = container("a");
        c.resources = Some(ResourceRequirements {
            requests: BTreeMap::from([("cpu".to_string(), Quantity::new("2"))]),
            limits: BTreeMap::from([("cpu".to_string(), Quantity::new("500m"))]),
        });
        let errs = strings(&validate_pod(&pod(vec![c])));
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 500m"
            ]
        );
    }

    #[test]
    fn container_ports_must_be_in_range_and_uniquely_named() {
        let mut c = container("a");
        c.ports = vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: 80,
                ..Default::default()
            },
            ContainerPort {
                name: Some("http".into()),
                container_port: 70000,
                protocol: Some("ICMP".into()),
                ..Default::default()
            },
        ];
        let errs = strings(&validate_pod(&pod(vec![c])));
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
                "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            ]
        );
    }

    #[test]
    fn tolerations_check_operator_effect_and_value() {
        let mut p = pod(vec![container("a")]);
        p.spec.as_mut().unwrap().tolerations = vec![
            Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            },
            Toleration {
                key: Some("k".into()),
                operator: Some("Like".into()),
                effect: Some("Never".into()),
                ..Default::default()
            },
            Toleration {
                key: Some("k".into()),
                operator: Some("Exists".into()),
                value: Some("v".into()),
                ..Default::default()
            },
        ];
        let errs = strings(&validate_pod(&p));
        assert_eq!(
            errs,
            vec![
                "spec.tolerations[1].operator: Unsupported value: \"Like\": supported values: \"Equal\", \"Exists\"",
                "spec.tolerations[1].effect: Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                "spec.tolerations[2].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
            ]
        );
    }

    fn deployment(strategy: Option<DeploymentStrategy>) -> Deployment {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                selector: LabelSelector {
                    match_labels: labels.clone(),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels,
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container("web")],
                        ..Default::default()
                    }),
                },
                strategy,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn rolling_update_bounds_must_be_counts_or_percentages_and_not_both_zero() {
        assert!(validate_deployment(&deployment(None)).is_empty());
        let ru = |s: IntOrString, u: IntOrString| {
            Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(s),
                    max_unavailable: Some(u),
                }),
            })
        };
        let errs = strings(&validate_deployment(&deployment(ru(
            IntOrString::Int(0),
            IntOrString::String("0%".into()),
        ))));
        assert_eq!(
            errs,
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"
            ]
        );
        let errs = strings(&validate_deployment(&deployment(ru(
            IntOrString::String("lots".into()),
            IntOrString::Int(-1),
        ))));
        assert_eq!(errs.len(), 2);
        assert!(errs[0].starts_with("spec.strategy.rollingUpdate.maxSurge: Invalid value: \"lots\": a valid percent string"), "{}", errs[0]);
        assert_eq!(
            errs[1],
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0"
        );
        let recreate = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: Some(RollingUpdateDeployment::default()),
        });
        assert_eq!(
            strings(&validate_deployment(&deployment(recreate))),
            vec![
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
            ]
        );
    }

    #[test]
    fn a_deployment_needs_a_selector() {
        let mut d = deployment(None);
        d.spec.as_mut().unwrap().selector = LabelSelector::default();
        assert_eq!(
            strings(&validate_deployment(&d)),
            vec!["spec.selector: Required value"]
        );
    }

    #[test]
    fn node_taints_need_a_key_and_a_known_effect() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            spec: Some(crate::core::NodeSpec {
                taints: vec![Taint {
                    key: "k".into(),
                    effect: "Sometimes".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            strings(&validate_node(&node)),
            vec![
                "spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
            ]
        );
    }

    #[test]
    fn lease_durations_must_be_positive() {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some("leader".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                lease_duration_seconds: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            strings(&validate_lease(&lease)),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
    }

    #[test]
    fn volume_mounts_must_name_a_declared_volume() {
        let mut c = container("a");
        c.volume_mounts = vec![crate::core::VolumeMount {
            name: "data".into(),
            mount_path: "/d".into(),
            ..Default::default()
        }];
        let errs = strings(&validate_pod(&pod(vec![c])));
        assert_eq!(
            errs,
            vec!["spec.containers[0].volumeMounts[0].name: Unsupported value: \"data\""]
        );
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn ingress(spec: serde_json::Value) -> Ingress {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "spec": spec}))
            .unwrap()
    }

    fn service_backend(name: &str, port: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"service": {"name": name, "port": port}})
    }

    #[test]
    fn an_endpoint_slice_needs_a_known_address_type_addresses_and_valid_ports() {
        let ok = slice(serde_json::json!({
            "metadata": {"name": "web"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "node-1"}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}));
        assert!(validate_endpoint_slice(&ok).is_empty());
        let errs = strings(&validate_endpoint_slice(&slice(serde_json::json!({
            "metadata": {"name": "web"},
            "endpoints": [{"addresses": []}],
            "ports": [{"port": 0}, {"name": "b", "port": 65536}]}))));
        assert_eq!(
            errs,
            vec![
                "addressType: Required value",
                "endpoints[0].addresses: Required value: must contain at least 1 address",
                "ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "ports[1].port: Invalid value: 65536: must be between 1 and 65535, inclusive",
            ]
        );
        let errs = strings(&validate_endpoint_slice(&slice(serde_json::json!({
            "metadata": {"name": "web"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["fe80::1", "10.0.0.1"]}]}))));
        assert_eq!(
            errs,
            vec![
                "endpoints[0].addresses[0]: Invalid value: \"fe80::1\": must be a valid IPv4 address"
            ]
        );
        let errs = strings(&validate_endpoint_slice(&slice(
            serde_json::json!({"metadata": {"name": "web"}, "addressType": "IPv5"}),
        )));
        assert_eq!(
            errs,
            vec![
                "addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
            ]
        );
    }

    #[test]
    fn too_many_endpoints_in_one_slice_are_refused() {
        let endpoints: Vec<serde_json::Value> = (0..1001)
            .map(|_| serde_json::json!({"addresses": ["10.0.0.1"]}))
            .collect();
        let errs = strings(&validate_endpoint_slice(&slice(serde_json::json!({
            "metadata": {"name": "web"}, "addressType": "IPv4", "endpoints": endpoints}))));
        assert_eq!(
            errs,
            vec!["endpoints: Too many: 1001: must have at most 1000 items"]
        );
    }

    #[test]
    fn an_ingress_with_rules_and_service_backends_is_valid() {
        let ing = ingress(serde_json::json!({
            "defaultBackend": service_backend("fallback", serde_json::json!({"number": 80})),
            "rules": [
                {"host": "example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": service_backend("web", serde_json::json!({"name": "http"}))},
                    {"pathType": "ImplementationSpecific",
                     "backend": service_backend("web", serde_json::json!({"number": 8080}))}]}},
                {"host": "*.apps.example.com", "http": {"paths": [
                    {"path": "/exact", "pathType": "Exact",
                     "backend": service_backend("api", serde_json::json!({"number": 80}))}]}}]}));
        assert_eq!(strings(&validate_ingress(&ing)), Vec::<String>::new());
    }

    #[test]
    fn ingress_paths_need_a_known_path_type_and_absolute_paths() {
        let backend = service_backend("web", serde_json::json!({"number": 80}));
        let ing = ingress(serde_json::json!({"rules": [{"http": {"paths": [
            {"path": "/a", "backend": backend},
            {"path": "/b", "pathType": "Regex", "backend": backend},
            {"path": "relative", "pathType": "Prefix", "backend": backend},
            {"path": "/a//b", "pathType": "Exact", "backend": backend}]}}]}));
        assert_eq!(
            strings(&validate_ingress(&ing)),
            vec![
                "spec.rules[0].http.paths[0].pathType: Required value: must be specified",
                "spec.rules[0].http.paths[1].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                "spec.rules[0].http.paths[2].path: Invalid value: \"relative\": must be an absolute path",
                "spec.rules[0].http.paths[3].path: Invalid value: \"/a//b\": must not contain '//'",
            ]
        );
    }

    #[test]
    fn ingress_backends_need_a_service_name_and_exactly_one_port_reference() {
        let path = |backend: serde_json::Value| serde_json::json!({"path": "/", "pathType": "Prefix", "backend": backend});
        let ing = ingress(serde_json::json!({"rules": [{"http": {"paths": [
            path(service_backend("", serde_json::json!({"number": 80}))),
            path(service_backend("web", serde_json::json!({"name": "http", "number": 80}))),
            path(serde_json::json!({"service": {"name": "web"}})),
            path(serde_json::json!({"resource": {"kind": "Bucket", "name": "b"}})),
            path(serde_json::json!({})),
        ]}}]}));
        assert_eq!(
            strings(&validate_ingress(&ing)),
            vec![
                "spec.rules[0].http.paths[0].backend.service.name: Required value",
                "spec.rules[0].http.paths[1].backend: Invalid value: \"\": cannot set both port name & port number",
                "spec.rules[0].http.paths[2].backend: Required value: port name or number is required",
                "spec.rules[0].http.paths[3].backend.resource: Unsupported value: a resource backend is not supported yet",
                "spec.rules[0].http.paths[4].backend: Invalid value: \"\": resource or service backend is required",
            ]
        );
    }

    #[test]
    fn ingress_hosts_are_dns_names_with_at_most_a_leading_wildcard() {
        let rule = |host: &str| serde_json::json!({"host": host});
        let ing = ingress(serde_json::json!({
            "defaultBackend": service_backend("web", serde_json::json!({"number": 80})),
            "rules": [rule("10.0.0.1"), rule("::1"), rule("foo.*.example.com"), rule("*.ok.example"),
                      rule("Bad_Host")]}));
        let errs = strings(&validate_ingress(&ing));
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert_eq!(
            errs[0],
            "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"
        );
        assert_eq!(
            errs[1],
            "spec.rules[1].host: Invalid value: \"::1\": must be a DNS name, not an IP address"
        );
        assert!(
            errs[2].starts_with(
                "spec.rules[2].host: Invalid value: \"foo.*.example.com\": a wildcard DNS-1123 subdomain must start with '*.'"
            ),
            "{}",
            errs[2]
        );
        assert!(
            errs[3].starts_with(
                "spec.rules[4].host: Invalid value: \"Bad_Host\": a lowercase RFC 1123 subdomain"
            ),
            "{}",
            errs[3]
        );
        assert!(
            is_ip_address("010.001.1.1"),
            "leading zeros are still an IP"
        );
        assert!(!is_ip_address("1.2.3.256"));
    }

    #[test]
    fn an_ingress_needs_rules_or_a_default_backend_and_tls_is_not_supported_yet() {
        let ing =
            ingress(serde_json::json!({"tls": [{"hosts": ["example.com"], "secretName": "c"}]}));
        assert_eq!(
            strings(&validate_ingress(&ing)),
            vec![
                "spec: Invalid value: []: either `defaultBackend` or `rules` must be specified",
                "spec.tls: Unsupported value: TLS termination is not supported yet",
            ]
        );
    }

    #[test]
    fn services_accept_cluster_ip_and_node_port_and_refuse_node_ports_elsewhere() {
        let svc = |ty: &str, node_port: Option<i32>| -> Service {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web"},
                "spec": {"type": ty, "selector": {"app": "web"},
                         "ports": [{"port": 80, "nodePort": node_port}]}}))
            .unwrap()
        };
        assert!(validate_service(&svc("ClusterIP", None)).is_empty());
        assert!(validate_service(&svc("NodePort", None)).is_empty());
        assert!(validate_service(&svc("NodePort", Some(30080))).is_empty());
        assert_eq!(
            strings(&validate_service(&svc("ClusterIP", Some(30080)))),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
        assert_eq!(
            strings(&validate_service(&svc("NodePort", Some(40000)))),
            vec![
                "spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767"
            ]
        );
        assert_eq!(
            strings(&validate_service(&svc("ExternalName", None))),
            vec![
                "spec.type: Unsupported value: \"ExternalName\" (not supported yet): supported values: \"ClusterIP\", \"NodePort\""
            ]
        );
    }
}

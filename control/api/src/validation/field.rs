//! What a validation failure is ([`FieldError`]), how its field path is built (`spec` +
//! `containers` + 0 → `spec.containers[0]`), and the small checks every kind's validator
//! shares: each pushes a [`FieldError`] onto the caller's list instead of returning early,
//! so one request reports every problem at once.

use std::fmt;

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
pub(super) fn quote(s: &str) -> String {
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

pub(super) fn check(errs: &mut Vec<FieldError>, field: &str, value: &str, problems: Vec<String>) {
    if !problems.is_empty() {
        errs.push(FieldError::invalid_str(field, value, problems.join("; ")));
    }
}

pub(super) fn check_non_negative(errs: &mut Vec<FieldError>, field: String, v: Option<i64>) {
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

pub(super) fn check_port(errs: &mut Vec<FieldError>, field: String, port: i32) {
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(
            field,
            port,
            "must be between 1 and 65535, inclusive",
        ));
    }
}

pub(super) fn check_one_of(
    errs: &mut Vec<FieldError>,
    field: String,
    value: Option<&str>,
    allowed: &[&str],
) {
    if let Some(v) = value
        && !allowed.contains(&v)
    {
        errs.push(FieldError::not_supported(field, v, allowed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

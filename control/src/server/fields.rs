//! Field selectors (`?fieldSelector=spec.nodeName=n1,status.phase!=Running`): the fields
//! Kubernetes supports for the kinds ketch serves. Anything else is refused by name rather
//! than silently matching everything.

use crate::attrs::{Attrs, supported_field};

use super::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    path: String,
    value: String,
    equal: bool,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<Term>);

impl FieldSelector {
    /// # Errors
    /// `BadRequest` naming a malformed term or a field this kind cannot be selected by.
    pub fn parse(plural: &str, text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for raw in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, value, equal) = if let Some((p, v)) = raw.split_once("!=") {
                (p, v, false)
            } else if let Some((p, v)) = raw.split_once("==") {
                (p, v, true)
            } else if let Some((p, v)) = raw.split_once('=') {
                (p, v, true)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "fieldSelector: invalid term {raw:?}: expected field=value, field==value or field!=value"
                )));
            };
            let path = path.trim();
            if !supported_field(plural, path) {
                return Err(ApiError::BadRequest(format!(
                    "fieldSelector: field label not supported for {plural}: {path}"
                )));
            }
            terms.push(Term {
                path: path.to_string(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(Self(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, attrs: &Attrs) -> bool {
        self.0
            .iter()
            .all(|t| (attrs.field(&t.path) == t.value) == t.equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::attrs_of;
    use serde_json::json;

    #[test]
    fn node_name_and_phase_select_pods() {
        let s = FieldSelector::parse("pods", "spec.nodeName=n1,status.phase!=Failed").unwrap();
        let pod = |v: serde_json::Value| attrs_of("pods", &v);
        assert!(s.matches(&pod(
            json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
        )));
        assert!(!s.matches(&pod(json!({"spec": {"nodeName": "n2"}}))));
        assert!(!s.matches(&pod(
            json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Failed"}})
        )));
        // An unset field compares as the empty string, as in Kubernetes.
        assert!(
            FieldSelector::parse("pods", "spec.nodeName=")
                .unwrap()
                .matches(&pod(json!({})))
        );
    }

    #[test]
    fn unsupported_fields_and_malformed_terms_are_refused() {
        assert!(FieldSelector::parse("pods", "spec.image=x").is_err());
        assert!(FieldSelector::parse("pods", "metadata.name").is_err());
        assert!(FieldSelector::parse("configmaps", "metadata.name=a").is_ok());
    }
}

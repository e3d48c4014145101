//! Label selectors: the `LabelSelector` spec type and the parsed [`Selector`] used for matching.
//!
//! Two spellings reach ketch: the structured `matchLabels`/`matchExpressions` form in object specs,
//! and the query-string form (`app=web,tier in (fe,be),!canary`) in `?labelSelector=` and
//! `ketch get -l`. Both are converted into one [`Selector`] so matching is implemented once.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validation::{is_qualified_name, is_valid_label_value};

/// The selector shape found in Deployment/ReplicaSet specs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// True when the selector has no terms (and therefore would select everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

/// One `matchExpressions` term.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    #[serde(default)]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[serde(default)]
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A selector parsing or conversion failure; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// How a [`Requirement`] compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// The label's value, read as an integer, is greater than the one value (node selectors).
    Gt,
    /// The label's value, read as an integer, is less than the one value (node selectors).
    Lt,
}

/// One term of a selector; all terms must hold for a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        if let Some(msg) = is_qualified_name(key).into_iter().next() {
            return Err(SelectorError(format!("invalid label key {key:?}: {msg}")));
        }
        for v in &values {
            if let Some(msg) = is_valid_label_value(v).into_iter().next() {
                return Err(SelectorError(format!(
                    "invalid label value {v:?} for key {key:?}: {msg}"
                )));
            }
        }
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => Err(SelectorError(format!(
                "key {key:?}: values must be non-empty for 'in' and 'notin'"
            ))),
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => Err(SelectorError(
                format!("key {key:?}: values must be empty for 'exists' and 'doesnotexist'"),
            )),
            Operator::Gt | Operator::Lt
                if values.len() != 1 || values[0].parse::<i64>().is_err() =>
            {
                Err(SelectorError(format!(
                    "key {key:?}: 'Gt' and 'Lt' need exactly one integer value"
                )))
            }
            _ => Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            }),
        }
    }

    /// Whether a label set satisfies this term. Negative terms hold when the label is absent,
    /// as in Kubernetes.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }

    /// Whether this term holds when its key has `value` (`None`: absent). Node selectors
    /// use it for `matchFields`, whose one key is the node's name rather than a label.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        let int = |v: &str| v.parse::<i64>().ok();
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(has),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !has(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            // A value that is not an integer matches neither, as in Kubernetes.
            Operator::Gt | Operator::Lt => {
                let (Some(have), Some(bound)) = (value.and_then(int), int(&self.values[0])) else {
                    return false;
                };
                if self.operator == Operator::Gt {
                    have > bound
                } else {
                    have < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.key;
        match self.operator {
            Operator::Equals => write!(f, "{k}={}", self.values[0]),
            Operator::NotEquals => write!(f, "{k}!={}", self.values[0]),
            Operator::In => write!(f, "{k} in ({})", self.values.join(",")),
            Operator::NotIn => write!(f, "{k} notin ({})", self.values.join(",")),
            Operator::Exists => write!(f, "{k}"),
            Operator::DoesNotExist => write!(f, "!{k}"),
            Operator::Gt => write!(f, "{k}>{}", self.values[0]),
            Operator::Lt => write!(f, "{k}<{}", self.values[0]),
        }
    }
}

/// A parsed selector: the conjunction of its requirements. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// Parses the query-string form: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`,
    /// `!a`, separated by commas; whitespace around tokens is ignored.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(Selector { requirements });
        }
        for part in split_top_level(input)? {
            requirements.push(parse_requirement(part)?);
        }
        Ok(Selector { requirements })
    }

    /// Converts the spec form, checking operators and value counts.
    pub fn from_label_selector(ls: &LabelSelector) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in &ls.match_labels {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in &ls.match_expressions {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError(format!(
                        "key {:?}: unsupported operator {other:?} (use In, NotIn, Exists or DoesNotExist)",
                        expr.key
                    )));
                }
            };
            requirements.push(Requirement::new(&expr.key, op, expr.values.clone())?);
        }
        Ok(Selector { requirements })
    }

    /// Converts a node selector term's `matchExpressions` or `matchFields`, which add `Gt`
    /// and `Lt` to the label selector's operators.
    pub fn from_node_requirements(
        reqs: &[crate::core::NodeSelectorRequirement],
    ) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::with_capacity(reqs.len());
        for r in reqs {
            let op = match r.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                "Gt" => Operator::Gt,
                "Lt" => Operator::Lt,
                other => {
                    return Err(SelectorError(format!(
                        "key {:?}: unsupported operator {other:?} (use In, NotIn, Exists, DoesNotExist, Gt or Lt)",
                        r.key
                    )));
                }
            };
            requirements.push(Requirement::new(&r.key, op, r.values.clone())?);
        }
        Ok(Selector { requirements })
    }

    /// Whether every requirement holds for the label set.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when there are no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

/// Splits on commas that are not inside `( … )`, so `a in (x,y),b` yields two parts.
fn split_top_level(input: &str) -> Result<Vec<&str>, SelectorError> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => {
                depth += 1;
                if depth > 1 {
                    return Err(SelectorError(format!("nested '(' in selector {input:?}")));
                }
            }
            ')' => {
                if depth == 0 {
                    return Err(SelectorError(format!(
                        "unmatched ')' in selector {input:?}"
                    )));
                }
                depth -= 1;
            }
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError(format!("unclosed '(' in selector {input:?}")));
    }
    parts.push(&input[start..]);
    Ok(parts)
}

fn parse_requirement(raw: &str) -> Result<Requirement, SelectorError> {
    let part = raw.trim();
    let ctx = |msg: String| SelectorError(format!("invalid selector requirement {part:?}: {msg}"));
    if part.is_empty() {
        return Err(SelectorError(
            "empty selector requirement (check for a stray comma)".to_string(),
        ));
    }
    if let Some(rest) = part.strip_prefix('!') {
        if rest.trim().contains(['=', '(', ')', ' ']) {
            return Err(ctx("'!' must be followed by a label key only".into()));
        }
        return Requirement::new(rest.trim(), Operator::DoesNotExist, vec![]).map_err(|e| ctx(e.0));
    }
    for (token, op) in [
        ("!=", Operator::NotEquals),
        ("==", Operator::Equals),
        ("=", Operator::Equals),
    ] {
        if let Some((key, value)) = part.split_once(token) {
            let value = value.trim();
            if value.contains(['=', '!', '(', ')']) {
                return Err(ctx(format!("unexpected characters in value {value:?}")));
            }
            return Requirement::new(key.trim(), op, vec![value.to_string()]).map_err(|e| ctx(e.0));
        }
    }
    if let Some(open) = part.find('(') {
        let head = part[..open].trim_end();
        let (key, op) = if let Some(key) = head.strip_suffix("notin") {
            (key, Operator::NotIn)
        } else if let Some(key) = head.strip_suffix("in") {
            (key, Operator::In)
        } else {
            return Err(ctx("expected 'in' or 'notin' before '('".into()));
        };
        // The operator must be a separate word: `foo in (x)`, not `fooin (x)`.
        if !key.ends_with(char::is_whitespace) || key.trim().is_empty() {
            return Err(ctx(
                "expected '<key> in (...)' or '<key> notin (...)'".into()
            ));
        }
        let Some(inner) = part[open + 1..].strip_suffix(')') else {
            return Err(ctx("unexpected text after ')'".into()));
        };
        let values: Vec<String> = inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        return Requirement::new(key.trim(), op, values).map_err(|e| ctx(e.0));
    }
    if part.contains(char::is_whitespace) {
        return Err(ctx(
            "expected '=', '==', '!=', 'in (...)', 'notin (...)' or a bare key".into(),
        ));
    }
    Requirement::new(part, Operator::Exists, vec![]).map_err(|e| ctx(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_inequality_terms_match_as_in_kubernetes() {
        let s = Selector::parse("app=web, tier==fe,env!=prod").unwrap();
        assert_eq!(s.requirements.len(), 3);
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "fe"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn set_based_terms_match_and_negations_hold_when_the_label_is_absent() {
        let s = Selector::parse("tier in (fe, be),env notin (prod),canary,!legacy").unwrap();
        assert!(s.matches(&labels(&[("tier", "be"), ("canary", "")])));
        assert!(!s.matches(&labels(&[("tier", "db"), ("canary", "")])));
        assert!(!s.matches(&labels(&[("tier", "fe"), ("canary", ""), ("legacy", "1")])));
        assert!(!s.matches(&labels(&[("tier", "fe"), ("canary", ""), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("tier", "fe")])));
    }

    #[test]
    fn the_empty_selector_matches_everything() {
        let s = Selector::parse("  ").unwrap();
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[("a", "b")])));
        assert!(
            Selector::from_label_selector(&LabelSelector::default())
                .unwrap()
                .matches(&BTreeMap::new())
        );
    }

    #[test]
    fn parse_errors_name_the_offending_part() {
        let err = Selector::parse("app=web,tier in fe")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"tier in fe\""), "{err}");
        let err = Selector::parse("app=web,,x").unwrap_err().to_string();
        assert!(err.contains("stray comma"), "{err}");
        let err = Selector::parse("Bad Key=1").unwrap_err().to_string();
        assert!(err.contains("\"Bad Key=1\""), "{err}");
        let err = Selector::parse("a in ()").unwrap_err().to_string();
        assert!(err.contains("non-empty"), "{err}");
        assert!(Selector::parse("a in (x").is_err());
        assert!(Selector::parse("a=b=c").is_err());
        assert!(
            Selector::parse("a==").is_ok(),
            "an empty value is a valid label value"
        );
    }

    #[test]
    fn node_requirements_add_gt_and_lt_on_integer_values() {
        use crate::core::NodeSelectorRequirement;
        let req = |key: &str, op: &str, values: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let s = Selector::from_node_requirements(&[
            req("cores", "Gt", &["4"]),
            req("gen", "Lt", &["10"]),
            req("zone", "In", &["a", "b"]),
        ])
        .unwrap();
        assert_eq!(s.to_string(), "cores>4,gen<10,zone in (a,b)");
        assert!(s.matches(&labels(&[("cores", "8"), ("gen", "3"), ("zone", "a")])));
        assert!(!s.matches(&labels(&[("cores", "4"), ("gen", "3"), ("zone", "a")])));
        assert!(!s.matches(&labels(&[("cores", "8"), ("gen", "10"), ("zone", "a")])));
        assert!(!s.matches(&labels(&[("cores", "many"), ("gen", "3"), ("zone", "a")])));
        assert!(!s.matches(&labels(&[("gen", "3"), ("zone", "a")])));
        let err = Selector::from_node_requirements(&[req("cores", "Gt", &["4", "5"])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("exactly one integer"), "{err}");
        assert!(Selector::from_node_requirements(&[req("cores", "Gte", &["4"])]).is_err());
        let name =
            Selector::from_node_requirements(&[req("metadata.name", "In", &["n1"])]).unwrap();
        assert!(name.requirements[0].matches_value(Some("n1")));
        assert!(!name.requirements[0].matches_value(Some("n2")));
    }

    #[test]
    fn prefixed_keys_are_accepted() {
        let s = Selector::parse("app.kubernetes.io/name=web").unwrap();
        assert!(s.matches(&labels(&[("app.kubernetes.io/name", "web")])));
        assert_eq!(s.to_string(), "app.kubernetes.io/name=web");
    }

    #[test]
    fn label_selector_specs_convert_and_reject_bad_operators() {
        let ls = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: vec!["fe".into()],
            }],
        };
        let s = Selector::from_label_selector(&ls).unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert_eq!(s.to_string(), "app=web,tier in (fe)");
        let bad = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Has".into(),
                values: vec![],
            }],
            ..Default::default()
        };
        let err = Selector::from_label_selector(&bad).unwrap_err().to_string();
        assert!(err.contains("unsupported operator \"Has\""), "{err}");
    }
}

//! The query parameters of the API, defined once: the client serializes these structs into a
//! request's query string and the API server (the node agent, for a log) parses the query
//! string back into them with [`from_query`], so each parameter's Kubernetes name
//! (`labelSelector`, `resourceVersion`, `tailLines`, …) is written here and nowhere else
//! (kube-rs keeps its `kube-core/src/params.rs` for the same reason).
//!
//! The encoding is `application/x-www-form-urlencoded` through `serde_urlencoded`, the
//! library reqwest serializes a query with: percent-escapes and `+` decode, a malformed
//! escape stays as written, invalid UTF-8 becomes U+FFFD. Parsing keeps the rules the server
//! has always had, so no client that worked stops working:
//!
//! * an unknown parameter is ignored, as in Kubernetes;
//! * a parameter given twice counts once, with its last value;
//! * a flag (`watch`, `allowWatchBookmarks`, `follow`, `timestamps`) is on for `true` or `1`
//!   and off for anything else; kube-apiserver parses with Go's `strconv.ParseBool` and
//!   refuses other spellings;
//! * an empty selector, `resourceVersion` or `container` is the same as none;
//! * `timeoutSeconds` must be a whole number of seconds, or the request is refused, as
//!   kube-apiserver does;
//! * a `tailLines` that is not a number ≥ 0 is ignored (kube-apiserver refuses it).
//!
//! The structs hold strings where the server interprets the value later (a selector, a
//! resourceVersion, a propagation policy), so its error names what was wrong in its own words.

use std::collections::BTreeMap;

use serde::de::value::MapDeserializer;
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

/// Which objects a list or a watch returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    /// A label selector (`app=web,tier in (fe,be)`); see [`crate::selector`].
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub label_selector: Option<String>,
    /// A field selector (`spec.nodeName=n1`); the fields each kind supports are the API
    /// server's.
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub field_selector: Option<String>,
}

/// How a read is served: once or as a watch stream, and from which version. This is all the
/// API server needs to decide whether a request must go to the raft leader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadParams {
    /// Stream the changes instead of answering once.
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub watch: bool,
    /// A watch resumes after this version; `0` asks for any version (this server's applied
    /// state, without a read barrier), as in Kubernetes.
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_version: Option<String>,
}

/// Every parameter the API server reads from the query of a request on a resource path. It
/// parses them all before it knows the verb, so a malformed `timeoutSeconds` is refused
/// whatever the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryParams {
    #[serde(flatten)]
    pub list: ListParams,
    #[serde(flatten)]
    pub read: ReadParams,
    /// A list returns at most this many items and a `continue` token for the rest (`0`, a
    /// negative number or none: everything). Ignored by watches, as in Kubernetes.
    #[serde(
        default,
        deserialize_with = "count_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<u64>,
    /// The `metadata.continue` of the previous page of a list.
    #[serde(
        default,
        rename = "continue",
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub continue_token: Option<String>,
    /// End a watch after this many seconds.
    #[serde(
        default,
        deserialize_with = "seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_seconds: Option<u64>,
    /// A quiet watch sends a `BOOKMARK` event now and then with the latest version.
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub allow_watch_bookmarks: bool,
    /// A delete's `Foreground`, `Background` or `Orphan` (the body's `DeleteOptions` take
    /// precedence). Kept as given, even empty, for the delete handler to check.
    #[serde(
        default,
        deserialize_with = "string",
        skip_serializing_if = "Option::is_none"
    )]
    pub propagation_policy: Option<String>,
    /// Present with any value (Kubernetes sends `All`): the server refuses it, as dry runs
    /// are not supported yet.
    #[serde(
        default,
        deserialize_with = "string",
        skip_serializing_if = "Option::is_none"
    )]
    pub dry_run: Option<String>,
}

/// What a container's log request asks for (`pods/{name}/log`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogParams {
    /// Required when the Pod has more than one container.
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub container: Option<String>,
    /// Keep streaming new lines.
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub follow: bool,
    /// Only the last N lines.
    #[serde(
        default,
        deserialize_with = "count_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub tail_lines: Option<u64>,
    /// Prefix each line with the time it was written.
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub timestamps: bool,
}

/// A query string the server cannot read; the message names the parameter
/// (`timeoutSeconds: invalid value "x"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(String);

/// Parses a query string (without the `?`) into `T`, by the rules in the module docs.
///
/// # Errors
/// A value `T` refuses, such as a `timeoutSeconds` that is not a number. [`ReadParams`] and
/// [`LogParams`] refuse nothing: every one of their fields is lenient.
pub fn from_query<T: DeserializeOwned>(query: &str) -> Result<T, ParamError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| ParamError(e.to_string()))?;
    // One value per name, the last one; a struct's derived Deserialize would refuse a
    // repeated field instead.
    let map: BTreeMap<String, String> = pairs.into_iter().collect();
    let values = MapDeserializer::<_, serde::de::value::Error>::new(map.into_iter());
    // The path names the parameter a value was refused for.
    serde_path_to_error::deserialize(values).map_err(|e| ParamError(e.to_string()))
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(String::deserialize(d)?).filter(|s| !s.is_empty()))
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    Ok(s == "true" || s == "1")
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("invalid value {s:?}")))
}

fn count_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = String::deserialize(d)?;
    Ok(s.parse::<i64>().ok().and_then(|n| u64::try_from(n).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_query<T: Serialize>(params: &T) -> String {
        serde_urlencoded::to_string(params).unwrap()
    }

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(params: T) {
        let query = to_query(&params);
        assert_eq!(from_query::<T>(&query).unwrap(), params, "{query}");
    }

    fn everything() -> QueryParams {
        QueryParams {
            list: ListParams {
                label_selector: Some("app=web,tier in (fe,be),!canary".into()),
                field_selector: Some("spec.nodeName=n1,status.phase!=Failed".into()),
            },
            read: ReadParams {
                watch: true,
                resource_version: Some("42".into()),
            },
            limit: Some(500),
            continue_token: Some("abc".into()),
            timeout_seconds: Some(30),
            allow_watch_bookmarks: true,
            propagation_policy: Some("Foreground".into()),
            dry_run: Some("All".into()),
        }
    }

    #[test]
    fn what_the_client_serializes_the_server_parses_back() {
        round_trip(everything());
        round_trip(QueryParams::default());
        round_trip(ListParams {
            label_selector: Some("a=b & c".into()),
            field_selector: None,
        });
        round_trip(LogParams {
            container: Some("web".into()),
            follow: true,
            tail_lines: Some(10),
            timestamps: true,
        });
        round_trip(LogParams::default());
    }

    #[test]
    fn parameters_have_their_kubernetes_names_and_unset_ones_are_left_out() {
        let names = |query: String| -> Vec<String> {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap();
            pairs.into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(
            names(to_query(&everything())),
            [
                "labelSelector",
                "fieldSelector",
                "watch",
                "resourceVersion",
                "limit",
                "continue",
                "timeoutSeconds",
                "allowWatchBookmarks",
                "propagationPolicy",
                "dryRun",
            ]
        );
        let log = LogParams {
            container: Some("c".into()),
            follow: true,
            tail_lines: Some(1),
            timestamps: true,
        };
        assert_eq!(
            names(to_query(&log)),
            ["container", "follow", "tailLines", "timestamps"]
        );
        assert_eq!(to_query(&QueryParams::default()), "");
        assert_eq!(to_query(&LogParams::default()), "");
    }

    #[test]
    fn percent_escapes_and_plus_decode_and_a_malformed_escape_stays_as_written() {
        let q: QueryParams =
            from_query("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=true&fieldSelector=%zz%4")
                .unwrap();
        assert_eq!(
            q.list.label_selector.as_deref(),
            Some("app=web,tier in (a)")
        );
        assert_eq!(q.list.field_selector.as_deref(), Some("%zz%4"));
        assert!(q.read.watch);
    }

    #[test]
    fn flags_are_on_for_true_or_1_only() {
        for (value, on) in [
            ("true", true),
            ("1", true),
            ("false", false),
            ("0", false),
            ("yes", false),
            ("", false),
        ] {
            let q: ReadParams = from_query(&format!("watch={value}")).unwrap();
            assert_eq!(q.watch, on, "watch={value}");
        }
        let q: ReadParams = from_query("watch").unwrap();
        assert!(!q.watch);
    }

    #[test]
    fn unknown_parameters_are_ignored_and_a_repeated_one_keeps_its_last_value() {
        let q: QueryParams =
            from_query("pretty=true&resourceVersion=1&&resourceVersion=2&limit=5").unwrap();
        assert_eq!(q.read.resource_version.as_deref(), Some("2"));
        assert_eq!(
            q,
            QueryParams {
                read: ReadParams {
                    resource_version: Some("2".into()),
                    ..ReadParams::default()
                },
                limit: Some(5),
                ..QueryParams::default()
            }
        );
    }

    #[test]
    fn empty_selectors_and_versions_are_none_but_an_empty_policy_is_kept() {
        let q: QueryParams =
            from_query("labelSelector=&fieldSelector=&resourceVersion=&propagationPolicy=&dryRun")
                .unwrap();
        assert_eq!(q.list, ListParams::default());
        assert_eq!(q.read.resource_version, None);
        assert_eq!(q.propagation_policy.as_deref(), Some(""));
        assert_eq!(q.dry_run.as_deref(), Some(""));
    }

    #[test]
    fn a_malformed_timeout_is_refused_by_name() {
        for bad in ["x", "-1", "", "1.5"] {
            let err =
                from_query::<QueryParams>(&format!("watch=true&timeoutSeconds={bad}")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("timeoutSeconds: invalid value {bad:?}")
            );
        }
        let ok: QueryParams = from_query("timeoutSeconds=5").unwrap();
        assert_eq!(ok.timeout_seconds, Some(5));
    }

    #[test]
    fn read_and_log_params_refuse_nothing() {
        let garbage = "watch=maybe&resourceVersion=%ff%fe&timeoutSeconds=x&follow=2\
                       &tailLines=-3&container=&timestamps=%&=&&x";
        assert_eq!(
            from_query::<ReadParams>(garbage).unwrap(),
            ReadParams {
                watch: false,
                resource_version: Some("\u{fffd}\u{fffd}".into()),
            }
        );
        assert_eq!(
            from_query::<LogParams>(garbage).unwrap(),
            LogParams::default()
        );
        for (tail, want) in [("12", Some(12)), ("-1", None), ("x", None), ("", None)] {
            let q: LogParams = from_query(&format!("tailLines={tail}")).unwrap();
            assert_eq!(q.tail_lines, want, "tailLines={tail}");
        }
    }
}

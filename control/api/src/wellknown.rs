//! Every `ketch.dev/…` name ketch reads or writes: annotations users set on Pods and
//! Services, annotations and the extended resource the agent puts on its Node, and the
//! labels ketch gives the containerd objects it owns. One definition each, used by the
//! scheduler, the agent, the gateway and admission.
//!
//! The Pod annotations are parsed here too ([`PodAnnotations::parse`]), by admission (so a
//! bad value is a 422 naming the annotation, not a container that fails later) and by the
//! agent (which then cannot disagree). A `ketch.dev/…` annotation no kind knows is refused
//! by name: a misspelt or invented knob must not be silently ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::format;
use crate::validation::{self, FieldError};

/// The prefix of every ketch-defined name.
pub const PREFIX: &str = "ketch.dev/";

/// Pod annotation: the per-request CPU deadline of a Wasm component (`30s`, `500ms`).
pub const REQUEST_TIMEOUT: &str = "ketch.dev/request-timeout";
/// The longest [`REQUEST_TIMEOUT`] a Pod may ask for (Knative's default
/// `max-revision-timeout-seconds`): an instance slot held longer is a slot captured.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Pod annotation: requests in flight per Pod (a positive integer).
pub const MAX_CONCURRENCY: &str = "ketch.dev/max-concurrency";
/// Pod annotation: comma-separated hosts a Wasm component may call over HTTP.
pub const ALLOWED_OUTBOUND_HOSTS: &str = "ketch.dev/allowed-outbound-hosts";
/// Service annotation: the path prefix the gateway routes to the Service on any host.
pub const PATH_PREFIX: &str = "ketch.dev/path-prefix";
/// Service annotation, `"true"` or `"false"`: whether a public gateway listener (one not on
/// loopback) routes `Host: <svc>.<ns>.<domain>` to the Service. Ingress rules, NodePorts and
/// [`PATH_PREFIX`] expose a Service on their own; in-cluster callers reach every Service.
pub const EXPOSE: &str = "ketch.dev/expose";
/// Node annotation (written by its agent): the agent's HTTP endpoint (logs, Pod proxy).
pub const AGENT_ENDPOINT: &str = "ketch.dev/agent-endpoint";
/// Node annotation (written by its agent): the URL of its public gateway listener.
pub const GATEWAY_ENDPOINT: &str = "ketch.dev/gateway-endpoint";
/// Node annotation (written by its agent): the URL other nodes' gateways deliver to its Pods
/// at (its peer listener, mutual TLS).
pub const GATEWAY_PEER_ENDPOINT: &str = "ketch.dev/gateway-peer-endpoint";
/// Node extended resource: Wasm instances the node can hold at once.
pub const WASM_INSTANCES: &str = "ketch.dev/wasm-instances";

/// containerd label of a container ketch runs: the Pod's uid.
pub const LABEL_POD_UID: &str = "ketch.dev/pod-uid";
/// containerd label: `namespace/name` of the Pod.
pub const LABEL_POD: &str = "ketch.dev/pod";
/// containerd label: the container's name in the Pod.
pub const LABEL_CONTAINER: &str = "ketch.dev/container";
/// containerd label: the node whose agent owns the container.
pub const LABEL_NODE: &str = "ketch.dev/node";

/// Node taint (Kubernetes' name): the node's Ready condition is `False`.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Node taint (Kubernetes' name): the node's Ready condition is `Unknown` (its agent went
/// silent).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `NoSchedule` on a node that went down and came back again and again lately (ketch's
/// flap damping; the node lifecycle controller adds and removes it).
pub const TAINT_FLAPPING: &str = "ketch.dev/flapping";
/// Node taint (Kubernetes' name), `NoSchedule`: the node is cordoned (`spec.unschedulable`).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// Node label (Kubernetes' name): the node's hostname, its own topology domain.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// Node label (Kubernetes' name): the failure zone, for the eviction brake and spreading.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// The `ketch.dev/…` annotations a Pod (or a Pod template) may carry.
pub const POD_ANNOTATIONS: [&str; 3] = [REQUEST_TIMEOUT, MAX_CONCURRENCY, ALLOWED_OUTBOUND_HOSTS];
/// The `ketch.dev/…` annotations a Service may carry.
pub const SERVICE_ANNOTATIONS: [&str; 2] = [PATH_PREFIX, EXPOSE];
/// The `ketch.dev/…` annotations a Node may carry.
pub const NODE_ANNOTATIONS: [&str; 3] = [AGENT_ENDPOINT, GATEWAY_ENDPOINT, GATEWAY_PEER_ENDPOINT];

/// The Pod annotations, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAnnotations {
    /// [`REQUEST_TIMEOUT`].
    pub request_timeout: Option<Duration>,
    /// [`MAX_CONCURRENCY`].
    pub max_concurrency: Option<usize>,
    /// [`ALLOWED_OUTBOUND_HOSTS`], trimmed, empty entries dropped.
    pub allowed_outbound_hosts: Vec<String>,
}

impl PodAnnotations {
    /// Parses a Pod's (or template's) annotations; other keys are not looked at.
    ///
    /// # Errors
    /// One `(annotation, message)` per value that does not parse.
    pub fn parse(
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let mut errs = Vec::new();
        let request_timeout = annotations.get(REQUEST_TIMEOUT).and_then(|v| {
            match format::parse_duration(v) {
                None => errs.push((
                    REQUEST_TIMEOUT,
                    format!("invalid duration {v:?} (use e.g. 30s or 500ms)"),
                )),
                Some(d) if d > MAX_REQUEST_TIMEOUT => errs.push((
                    REQUEST_TIMEOUT,
                    format!(
                        "{v:?} is longer than the limit of {}s",
                        MAX_REQUEST_TIMEOUT.as_secs()
                    ),
                )),
                Some(d) => return Some(d),
            }
            None
        });
        let max_concurrency = annotations.get(MAX_CONCURRENCY).and_then(|v| {
            let n = v.trim().parse::<usize>().ok().filter(|n| *n > 0);
            if n.is_none() {
                errs.push((MAX_CONCURRENCY, format!("{v:?} is not a positive integer")));
            }
            n
        });
        let allowed_outbound_hosts = annotations
            .get(ALLOWED_OUTBOUND_HOSTS)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if errs.is_empty() {
            Ok(PodAnnotations {
                request_timeout,
                max_concurrency,
                allowed_outbound_hosts,
            })
        } else {
            Err(errs)
        }
    }
}

/// Which `ketch.dev/…` annotations an object may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationScope {
    /// Pods and the Pod templates of workloads: [`POD_ANNOTATIONS`], values checked.
    Pod,
    /// [`SERVICE_ANNOTATIONS`].
    Service,
    /// [`NODE_ANNOTATIONS`].
    Node,
    /// Every other kind: none.
    Other,
}

impl AnnotationScope {
    fn known(self) -> &'static [&'static str] {
        match self {
            AnnotationScope::Pod => &POD_ANNOTATIONS,
            AnnotationScope::Service => &SERVICE_ANNOTATIONS,
            AnnotationScope::Node => &NODE_ANNOTATIONS,
            AnnotationScope::Other => &[],
        }
    }
}

/// The errors of `annotations` (at `path`, e.g. `metadata.annotations`) for an object of
/// `scope`: a `ketch.dev/…` key the scope does not know, or a Pod annotation whose value
/// does not parse.
pub fn validate_ketch_annotations(
    scope: AnnotationScope,
    annotations: &BTreeMap<String, String>,
    path: &str,
) -> Vec<FieldError> {
    let known = scope.known();
    let mut errs: Vec<FieldError> = annotations
        .keys()
        .filter(|k| k.starts_with(PREFIX) && !known.contains(&k.as_str()))
        .map(|k| {
            if known.is_empty() {
                let detail = if POD_ANNOTATIONS.contains(&k.as_str()) {
                    "a Pod annotation: set it on the Pod, or on the Pod template \
                     (spec.template.metadata.annotations)"
                } else {
                    "ketch defines no ketch.dev/ annotation for this kind"
                };
                FieldError::forbidden(validation::key(path, k), detail)
            } else {
                FieldError::not_supported(path, k, known)
            }
        })
        .collect();
    if scope == AnnotationScope::Service
        && let Some(v) = annotations.get(EXPOSE)
        && v != "true"
        && v != "false"
    {
        errs.push(FieldError::invalid_str(
            validation::key(path, EXPOSE),
            v,
            "must be \"true\" or \"false\"".to_string(),
        ));
    }
    if scope == AnnotationScope::Pod
        && let Err(bad) = PodAnnotations::parse(annotations)
    {
        errs.extend(bad.into_iter().map(|(key, msg)| {
            FieldError::invalid_str(validation::key(path, key), &annotations[key], msg)
        }));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pod_annotations_parse_into_the_knobs_they_set() {
        let a = PodAnnotations::parse(&ann(&[
            (REQUEST_TIMEOUT, "500ms"),
            (MAX_CONCURRENCY, " 8 "),
            (ALLOWED_OUTBOUND_HOSTS, "api.example.com, ,*.svc"),
            ("app", "x"),
        ]))
        .unwrap();
        assert_eq!(a.request_timeout, Some(Duration::from_millis(500)));
        assert_eq!(a.max_concurrency, Some(8));
        assert_eq!(a.allowed_outbound_hosts, ["api.example.com", "*.svc"]);
        assert_eq!(
            PodAnnotations::parse(&BTreeMap::new()).unwrap(),
            PodAnnotations::default()
        );
    }

    #[test]
    fn a_bad_pod_annotation_value_is_refused_naming_the_annotation() {
        let errs = validate_ketch_annotations(
            AnnotationScope::Pod,
            &ann(&[(REQUEST_TIMEOUT, "soon"), (MAX_CONCURRENCY, "0")]),
            "metadata.annotations",
        );
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.annotations[ketch.dev/request-timeout]",
                "metadata.annotations[ketch.dev/max-concurrency]"
            ]
        );
        assert!(errs[0].to_string().contains("30s or 500ms"), "{}", errs[0]);
        // Hours (or the ~31 years the parser takes) would hold an instance slot for good.
        let errs = validate_ketch_annotations(
            AnnotationScope::Pod,
            &ann(&[(REQUEST_TIMEOUT, "2h")]),
            "metadata.annotations",
        );
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("limit of 600s"), "{}", errs[0]);
    }

    #[test]
    fn an_unknown_ketch_annotation_is_refused_by_name_and_others_pass() {
        let errs = validate_ketch_annotations(
            AnnotationScope::Pod,
            &ann(&[
                ("ketch.dev/max-instance-reuse", "5"),
                ("example.com/anything", "x"),
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ]),
            "spec.template.metadata.annotations",
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].to_string(),
            "spec.template.metadata.annotations: Unsupported value: \"ketch.dev/max-instance-reuse\": \
             supported values: \"ketch.dev/request-timeout\", \"ketch.dev/max-concurrency\", \
             \"ketch.dev/allowed-outbound-hosts\""
        );
        // A Pod annotation means nothing on a Service, and the reverse.
        assert_eq!(
            validate_ketch_annotations(
                AnnotationScope::Service,
                &ann(&[(REQUEST_TIMEOUT, "1s"), (PATH_PREFIX, "/x/")]),
                "metadata.annotations"
            )
            .len(),
            1
        );
        let errs = validate_ketch_annotations(
            AnnotationScope::Service,
            &ann(&[(EXPOSE, "yes")]),
            "metadata.annotations",
        );
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].to_string().contains("ketch.dev/expose"),
            "{}",
            errs[0]
        );
        assert_eq!(
            validate_ketch_annotations(
                AnnotationScope::Service,
                &ann(&[(EXPOSE, "true")]),
                "metadata.annotations"
            ),
            []
        );
        assert_eq!(
            validate_ketch_annotations(
                AnnotationScope::Node,
                &ann(&[
                    (AGENT_ENDPOINT, "http://n:1"),
                    (GATEWAY_ENDPOINT, "http://n:2")
                ]),
                "metadata.annotations"
            ),
            []
        );
        assert_eq!(
            validate_ketch_annotations(
                AnnotationScope::Other,
                &ann(&[(PATH_PREFIX, "/")]),
                "metadata.annotations"
            )
            .len(),
            1
        );
        // A Pod knob on a Deployment's own metadata says where it belongs.
        let errs = validate_ketch_annotations(
            AnnotationScope::Other,
            &ann(&[(REQUEST_TIMEOUT, "1s")]),
            "metadata.annotations",
        );
        assert!(
            errs[0]
                .to_string()
                .contains("spec.template.metadata.annotations"),
            "{}",
            errs[0]
        );
    }
}

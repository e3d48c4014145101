//! Kubernetes REST paths → which resource, namespace, name and subresource a request means.
//! Parsed by hand rather than by router patterns because `/api/v1/namespaces/x/status`
//! (a namespace's status) and `/api/v1/namespaces/x/pods` (a list) have the same shape.

use ketch_api::resource::{ResourceInfo, by_path};

use super::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub info: &'static ResourceInfo,
    /// Set for namespaced paths (`/namespaces/{ns}/...`).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status: bool,
    /// `pods/{name}/log`, `pods/{name}/proxy/{path}` (served by the Pod's node agent) or
    /// `pods/{name}/binding`.
    pub pod_sub: Option<PodSub>,
}

/// Pod subresources: `log` and `proxy` are proxied to the node agent running the Pod;
/// `binding` (the scheduler's assignment) and `eviction` (a delete under the Pod's
/// disruption budget) are store writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSub {
    Log,
    /// The path after `proxy/` (without a leading slash).
    Proxy(String),
    Binding,
    Eviction,
}

impl ResourcePath {
    /// The store key prefix for a collection request, or the key for a named one.
    pub fn key(&self) -> String {
        key_of(self.info, self.namespace.as_deref(), self.name.as_deref())
    }
}

/// `{plural}/{namespace}/{name}`; a collection prefix when `name` is `None`
/// (`{plural}/` for all namespaces, `{plural}/{ns}/` for one).
pub fn key_of(info: &ResourceInfo, namespace: Option<&str>, name: Option<&str>) -> String {
    match (namespace, name) {
        (ns, Some(name)) => format!("{}/{}/{}", info.plural, ns.unwrap_or(""), name),
        (Some(ns), None) => format!("{}/{}/", info.plural, ns),
        (None, None) => format!("{}/", info.plural),
    }
}

/// Parse the part after `/api/` or `/apis/`. `core` is true for `/api`.
pub fn parse(core: bool, rest: &str) -> Result<ResourcePath, ApiError> {
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let (group, version, segs) = if core {
        match segs.as_slice() {
            [version, tail @ ..] => ("", *version, tail),
            _ => return Err(not_found_path(rest)),
        }
    } else {
        match segs.as_slice() {
            [group, version, tail @ ..] => (*group, *version, tail),
            _ => return Err(not_found_path(rest)),
        }
    };
    let lookup = |plural: &str| {
        by_path(group, version, plural).ok_or_else(|| ApiError::NotFound {
            resource: "the server could not find the requested resource".into(),
            name: if group.is_empty() {
                format!("{version}/{plural}")
            } else {
                format!("{group}/{version}/{plural}")
            },
        })
    };
    let owned = |s: &str| Some(s.to_string());
    let path = match segs {
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => {
            let info = lookup(plural)?;
            if !info.namespaced {
                return Err(ApiError::BadRequest(format!(
                    "{} is cluster-scoped: use /{}{}/{} without a namespace",
                    info.plural,
                    if core { "api/" } else { "apis/" },
                    info.api_version(),
                    info.plural
                )));
            }
            let (name, status, pod_sub) = name_and_sub(tail, rest)?;
            ResourcePath {
                info,
                namespace: owned(ns),
                name,
                status,
                pod_sub,
            }
        }
        [plural, tail @ ..] if !plural.is_empty() => {
            let info = lookup(plural)?;
            let (name, status, pod_sub) = name_and_sub(tail, rest)?;
            if info.namespaced && name.is_some() {
                return Err(ApiError::BadRequest(format!(
                    "{} is namespaced: use .../namespaces/{{namespace}}/{}/{{name}}",
                    info.plural, info.plural
                )));
            }
            ResourcePath {
                info,
                namespace: None,
                name,
                status,
                pod_sub,
            }
        }
        _ => return Err(not_found_path(rest)),
    };
    if (path.status && !path.info.has_status)
        || (path.pod_sub.is_some() && path.info.plural != "pods")
    {
        return Err(not_found_path(rest));
    }
    Ok(path)
}

type NameAndSub = (Option<String>, bool, Option<PodSub>);

fn name_and_sub(tail: &[&str], rest: &str) -> Result<NameAndSub, ApiError> {
    let name = |n: &str| Some(n.to_string());
    match tail {
        [] => Ok((None, false, None)),
        [n] => Ok((name(n), false, None)),
        [n, "status"] => Ok((name(n), true, None)),
        [n, "log"] => Ok((name(n), false, Some(PodSub::Log))),
        [n, "binding"] => Ok((name(n), false, Some(PodSub::Binding))),
        [n, "eviction"] => Ok((name(n), false, Some(PodSub::Eviction))),
        [n, "proxy", path @ ..] => Ok((name(n), false, Some(PodSub::Proxy(path.join("/"))))),
        _ => Err(not_found_path(rest)),
    }
}

fn not_found_path(rest: &str) -> ApiError {
    ApiError::NotFound {
        resource: "path".into(),
        name: rest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_collection_object_and_status_paths_parse() {
        let p = parse(true, "v1/namespaces/default/pods").unwrap();
        assert_eq!(
            (p.info.plural, p.namespace.as_deref(), p.name.as_deref()),
            ("pods", Some("default"), None)
        );
        let p = parse(false, "apps/v1/namespaces/ns1/deployments/web/status").unwrap();
        assert_eq!(
            (p.info.plural, p.name.as_deref(), p.status),
            ("deployments", Some("web"), true)
        );
        assert_eq!(p.key(), "deployments/ns1/web");
    }

    #[test]
    fn a_namespace_status_path_is_not_a_list_of_status() {
        let p = parse(true, "v1/namespaces/foo/status").unwrap();
        assert_eq!(
            (p.info.plural, p.name.as_deref(), p.status),
            ("namespaces", Some("foo"), true)
        );
        let p = parse(true, "v1/namespaces/foo").unwrap();
        assert_eq!(p.key(), "namespaces//foo");
    }

    #[test]
    fn all_namespaces_list_and_cluster_scoped_objects_parse() {
        let p = parse(true, "v1/pods").unwrap();
        assert_eq!(p.key(), "pods/");
        let p = parse(true, "v1/nodes/n1").unwrap();
        assert_eq!(p.key(), "nodes//n1");
    }

    #[test]
    fn unknown_resources_and_misplaced_scopes_are_errors() {
        assert!(matches!(
            parse(true, "v1/widgets"),
            Err(ApiError::NotFound { .. })
        ));
        assert!(matches!(
            parse(true, "v1/pods/x"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse(true, "v1/namespaces/a/nodes"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(parse(true, "v1/configmaps/x/status").is_err());
        assert!(parse(true, "v1/namespaces/d/services/x/log").is_err());
    }

    #[test]
    fn pod_log_and_proxy_subresources_parse() {
        let p = parse(true, "v1/namespaces/d/pods/web/log").unwrap();
        assert_eq!(p.pod_sub, Some(PodSub::Log));
        let p = parse(true, "v1/namespaces/d/pods/web/proxy/a/b").unwrap();
        assert_eq!(p.pod_sub, Some(PodSub::Proxy("a/b".into())));
        let p = parse(true, "v1/namespaces/d/pods/web/proxy").unwrap();
        assert_eq!(p.pod_sub, Some(PodSub::Proxy(String::new())));
        let p = parse(true, "v1/namespaces/d/pods/web/binding").unwrap();
        assert_eq!(p.pod_sub, Some(PodSub::Binding));
        assert!(parse(true, "v1/namespaces/d/services/web/binding").is_err());
        let p = parse(true, "v1/namespaces/d/pods/web/eviction").unwrap();
        assert_eq!(p.pod_sub, Some(PodSub::Eviction));
        assert!(parse(true, "v1/namespaces/d/services/web/eviction").is_err());
    }
}

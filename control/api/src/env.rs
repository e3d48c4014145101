//! Resolving a container's environment from the Pod, its ConfigMaps and Secrets: a pure
//! function of what was fetched, so every rule is unit-tested without a server.
//!
//! Rules follow the kubelet: `envFrom` first (in order, with `prefix`), then `env` (later
//! entries win); `$(VAR)` in a `value` expands to an earlier variable (`$$(VAR)` escapes);
//! a missing optional source or key is skipped, a missing required one fails the container
//! with `CreateContainerConfigError` and a message naming it.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::{Container, Pod, Secret};
use base64::Engine as _;

/// ConfigMaps and Secrets (decoded) a container references, by name; absent = not found.
#[derive(Debug, Clone, Default)]
pub struct EnvSources {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

/// Names of the ConfigMaps and Secrets a container's env references (to fetch them first).
pub fn referenced(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for from in &container.env_from {
        if let Some(r) = &from.config_map_ref {
            cms.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.insert(r.name.clone());
        }
    }
    for var in &container.env {
        if let Some(src) = &var.value_from {
            if let Some(r) = &src.config_map_key_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &src.secret_key_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// A Secret's data, base64-decoded (non-UTF-8 values are decoded lossily), plus any
/// `stringData` the server kept.
///
/// # Errors
/// A value that is not valid base64, naming the key.
pub fn secret_data(secret: &Secret) -> Result<BTreeMap<String, String>, String> {
    let mut out = secret.string_data.clone();
    for (k, v) in &secret.data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|e| {
                format!(
                    "secret {:?} key {k:?} is not valid base64: {e}",
                    secret.metadata.name()
                )
            })?;
        out.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
    }
    Ok(out)
}

/// Resolves `container`'s environment. `pod_ip` / `host_ip` are what `status.podIP` /
/// `status.hostIP` resolve to.
///
/// # Errors
/// A message for `CreateContainerConfigError` naming the missing source or key.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    sources: &EnvSources,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = out.iter_mut().find(|(name, _)| *name == k) {
            slot.1 = v;
        } else {
            out.push((k, v));
        }
    };
    for from in &container.env_from {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, r, map) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => ("configmap", r, sources.config_maps.get(&r.name)),
            (None, Some(r)) => ("secret", r, sources.secrets.get(&r.name)),
            (None, None) => continue,
        };
        match map {
            Some(map) => {
                for (k, v) in map {
                    set(&mut out, format!("{prefix}{k}"), v.clone());
                }
            }
            None if r.optional == Some(true) => {}
            None => return Err(format!("{kind} {:?} not found", r.name)),
        }
    }
    for var in &container.env {
        let value = if let Some(v) = &var.value {
            Some(expand(v, &out))
        } else if let Some(src) = &var.value_from {
            if let Some(r) = &src.config_map_key_ref {
                lookup(
                    "configmap",
                    &sources.config_maps,
                    &r.name,
                    &r.key,
                    r.optional,
                )?
            } else if let Some(r) = &src.secret_key_ref {
                lookup("secret", &sources.secrets, &r.name, &r.key, r.optional)?
            } else if let Some(f) = &src.field_ref {
                Some(field(pod, &f.field_path, pod_ip, host_ip).ok_or_else(|| {
                    format!(
                        "env {:?}: fieldRef {:?} is not supported",
                        var.name, f.field_path
                    )
                })?)
            } else {
                Some(String::new())
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            set(&mut out, var.name.clone(), v);
        }
    }
    Ok(out)
}

fn lookup(
    kind: &str,
    maps: &BTreeMap<String, BTreeMap<String, String>>,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, String> {
    let optional = optional == Some(true);
    match maps.get(name) {
        None if optional => Ok(None),
        None => Err(format!("{kind} {name:?} not found")),
        Some(m) => match m.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(format!("couldn't find key {key} in {kind} {name:?}")),
        },
    }
}

fn field(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let m = &pod.metadata;
    let bracket = |prefix: &str| -> Option<&str> {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
    };
    Some(match path {
        "metadata.name" => m.name().to_string(),
        "metadata.namespace" => m.namespace().to_string(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "status.podIP" => pod_ip.to_string(),
        "status.hostIP" => host_ip.to_string(),
        _ => {
            if let Some(k) = bracket("metadata.labels") {
                m.labels.get(k).cloned().unwrap_or_default()
            } else if let Some(k) = bracket("metadata.annotations") {
                m.annotations.get(k).cloned().unwrap_or_default()
            } else {
                return None;
            }
        }
    })
}

/// Kubernetes' `$(VAR)` expansion (its `third_party/forked/golang/expansion`), the one
/// implementation for env values (against the variables defined before them) and a
/// container's `command`/`args` (against its whole env): `$(NAME)` → the value of `NAME`;
/// an undefined `$(NAME)` stays as written; `$$` → `$`, so `$$(NAME)` is a literal
/// `$(NAME)`; any other `$` (`$NAME`, `${NAME}`, `$?`, a trailing `$`, an unclosed `$(`) is
/// kept. The name runs to the first `)`, and the result is not expanded again.
pub fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix("$(")
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        EnvFromRef, EnvFromSource, EnvVar, EnvVarSource, KeySelector, ObjectFieldSelector, PodSpec,
    };
    use crate::meta::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn from(name: &str, src: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(src),
        }
    }

    fn key_ref(name: &str, key: &str, optional: Option<bool>) -> KeySelector {
        KeySelector {
            name: name.into(),
            key: key.into(),
            optional,
        }
    }

    fn sources() -> EnvSources {
        let mut s = EnvSources::default();
        s.config_maps.insert(
            "cfg".into(),
            BTreeMap::from([("MODE".into(), "fast".into()), ("LEVEL".into(), "3".into())]),
        );
        s.secrets.insert(
            "creds".into(),
            BTreeMap::from([("password".into(), "hunter2".into())]),
        );
        s
    }

    #[test]
    fn values_config_map_keys_secret_keys_and_field_refs_resolve() {
        let c = Container {
            name: "app".into(),
            env: vec![
                var("PLAIN", "x"),
                from(
                    "MODE",
                    EnvVarSource {
                        config_map_key_ref: Some(key_ref("cfg", "MODE", None)),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "PASSWORD",
                    EnvVarSource {
                        secret_key_ref: Some(key_ref("creds", "password", None)),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "POD",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            api_version: None,
                        }),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "IP",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "status.podIP".into(),
                            api_version: None,
                        }),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "NODE",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "spec.nodeName".into(),
                            api_version: None,
                        }),
                        ..EnvVarSource::default()
                    },
                ),
                var("URL", "http://$(POD):80/$$(POD)"),
            ],
            ..Container::default()
        };
        let env = resolve(&pod(), &c, &sources(), "127.0.0.1", "10.0.0.1").unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PLAIN"), Some("x"));
        assert_eq!(get("MODE"), Some("fast"));
        assert_eq!(get("PASSWORD"), Some("hunter2"));
        assert_eq!(get("POD"), Some("web-1"));
        assert_eq!(get("IP"), Some("127.0.0.1"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("URL"), Some("http://web-1:80/$(POD)"));
    }

    #[test]
    fn env_from_applies_prefixes_and_env_overrides_it() {
        let c = Container {
            name: "app".into(),
            env_from: vec![EnvFromSource {
                prefix: Some("CFG_".into()),
                config_map_ref: Some(EnvFromRef {
                    name: "cfg".into(),
                    optional: None,
                }),
                secret_ref: None,
            }],
            env: vec![var("CFG_MODE", "slow")],
            ..Container::default()
        };
        let env = resolve(&pod(), &c, &sources(), "", "").unwrap();
        assert_eq!(
            env,
            vec![
                ("CFG_LEVEL".to_string(), "3".to_string()),
                ("CFG_MODE".to_string(), "slow".to_string()),
            ]
        );
    }

    #[test]
    fn missing_optional_references_are_skipped() {
        let c = Container {
            name: "app".into(),
            env_from: vec![EnvFromSource {
                prefix: None,
                config_map_ref: None,
                secret_ref: Some(EnvFromRef {
                    name: "absent".into(),
                    optional: Some(true),
                }),
            }],
            env: vec![
                from(
                    "A",
                    EnvVarSource {
                        config_map_key_ref: Some(key_ref("cfg", "NOPE", Some(true))),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "B",
                    EnvVarSource {
                        secret_key_ref: Some(key_ref("absent", "k", Some(true))),
                        ..EnvVarSource::default()
                    },
                ),
            ],
            ..Container::default()
        };
        assert_eq!(resolve(&pod(), &c, &sources(), "", "").unwrap(), vec![]);
    }

    #[test]
    fn a_missing_required_key_names_the_key_and_its_source() {
        let c = Container {
            name: "app".into(),
            env: vec![from(
                "A",
                EnvVarSource {
                    config_map_key_ref: Some(key_ref("cfg", "NOPE", None)),
                    ..EnvVarSource::default()
                },
            )],
            ..Container::default()
        };
        let err = resolve(&pod(), &c, &sources(), "", "").unwrap_err();
        assert_eq!(err, "couldn't find key NOPE in configmap \"cfg\"");
        let c = Container {
            name: "app".into(),
            env: vec![from(
                "A",
                EnvVarSource {
                    secret_key_ref: Some(key_ref("gone", "k", None)),
                    ..EnvVarSource::default()
                },
            )],
            ..Container::default()
        };
        let err = resolve(&pod(), &c, &sources(), "", "").unwrap_err();
        assert_eq!(err, "secret \"gone\" not found");
    }

    /// The cases of Kubernetes' `expand_test.go` (`doExpansionTest`), same context.
    #[test]
    fn expansion_follows_kubernetes() {
        let ctx: Vec<(String, String)> = [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cases = [
            ("whole string", "$(VAR_A)", "A"),
            ("repeat", "$(VAR_A)-$(VAR_A)", "A-A"),
            ("beginning", "$(VAR_A)-1", "A-1"),
            ("middle", "___$(VAR_B)___", "___B___"),
            ("end", "___$(VAR_C)", "___C"),
            ("compound", "$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("escape & expand", "$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            (
                "compound escape",
                "$$(VAR_A)_$$(VAR_B)",
                "$(VAR_A)_$(VAR_B)",
            ),
            ("mixed in escapes", "f000-$$VAR_A", "f000-$VAR_A"),
            ("backslash escape ignored", "foo\\$(VAR_C)bar", "foo\\Cbar"),
            (
                "backslash escape ignored",
                "foo\\\\$(VAR_C)bar",
                "foo\\\\Cbar",
            ),
            (
                "lots of backslashes",
                "foo\\\\\\\\$(VAR_A)bar",
                "foo\\\\\\\\Abar",
            ),
            (
                "nested var references",
                "$(VAR_A$(VAR_B))",
                "$(VAR_A$(VAR_B))",
            ),
            ("nested, second type", "$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("value is a reference", "$(VAR_REF)", "$(VAR_A)"),
            (
                "value is a reference x 2",
                "%%$(VAR_REF)--$(VAR_REF)%%",
                "%%$(VAR_A)--$(VAR_A)%%",
            ),
            ("empty var", "foo$(VAR_EMPTY)bar", "foobar"),
            (
                "unterminated expression",
                "foo$(VAR_Awhoops!",
                "foo$(VAR_Awhoops!",
            ),
            (
                "expression without operator",
                "f00__(VAR_A)__",
                "f00__(VAR_A)__",
            ),
            ("shell special vars pass through", "$?_boo_$!", "$?_boo_$!"),
            ("bare operators are ignored", "$VAR_A", "$VAR_A"),
            (
                "undefined vars are passed through",
                "$(VAR_DNE)",
                "$(VAR_DNE)",
            ),
            (
                "even operators, undefined",
                "$$$$$$(BIG_MONEY)",
                "$$$(BIG_MONEY)",
            ),
            ("even operators, defined", "$$$$$$(VAR_A)", "$$$(VAR_A)"),
            (
                "odd operators, undefined",
                "$$$$$$$(GOOD_ODDS)",
                "$$$$(GOOD_ODDS)",
            ),
            ("odd operators, defined", "$$$$$$$(VAR_A)", "$$$A"),
            ("missing open expression", "$VAR_A)", "$VAR_A)"),
            ("shell syntax ignored", "${VAR_A}", "${VAR_A}"),
            (
                "trailing incomplete expression",
                "$(VAR_B)_______$(A",
                "B_______$(A",
            ),
            (
                "trailing incomplete, no content",
                "$(VAR_C)_______$(",
                "C_______$(",
            ),
            (
                "operator at end is preserved",
                "$(VAR_A)foobar$",
                "Afoobar$",
            ),
            (
                "shell escaped incomplete expr",
                "foo-\\$(VAR_A",
                "foo-\\$(VAR_A",
            ),
            ("lots of $( in middle", "--$($($($($--", "--$($($($($--"),
            (
                "lots of $( in beginning",
                "$($($($($--foo$(",
                "$($($($($--foo$(",
            ),
            ("lots of $( at end", "foo0--$($($($(", "foo0--$($($($("),
            ("escaped operators in names", "$(foo$$var)", "$(foo$$var)"),
            ("newline not expanded", "\n", "\n"),
            ("empty input", "", ""),
            ("multibyte text", "é$(VAR_A)ü", "éAü"),
        ];
        for (name, input, want) in cases {
            assert_eq!(expand(input, &ctx), want, "{name}: {input:?}");
        }
    }

    #[test]
    fn env_values_see_only_the_variables_defined_before_them() {
        // Kubernetes' TestMapReference, plus a forward reference that stays as written.
        let c = Container {
            name: "app".into(),
            env: vec![
                var("EARLY", "$(LATE)"),
                var("FOO", "bar"),
                var("ZOO", "$(FOO)-1"),
                var("BLU", "$(ZOO)-2"),
                var("LATE", "x"),
            ],
            ..Container::default()
        };
        let env = resolve(&pod(), &c, &sources(), "", "").unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ZOO"), Some("bar-1"));
        assert_eq!(get("BLU"), Some("bar-1-2"));
        assert_eq!(get("EARLY"), Some("$(LATE)"));
    }

    #[test]
    fn secret_data_is_base64_decoded() {
        let s = Secret {
            data: BTreeMap::from([("k".into(), "aHVudGVyMg==".into())]),
            ..Secret::default()
        };
        assert_eq!(secret_data(&s).unwrap()["k"], "hunter2");
        let bad = Secret {
            data: BTreeMap::from([("k".into(), "!!".into())]),
            ..Secret::default()
        };
        assert!(secret_data(&bad).unwrap_err().contains("key \"k\""));
    }
}

//! Manifests on disk → objects to apply: files, directories (`*.yaml`, `*.yml`, `*.json`,
//! sorted, not recursive) or stdin; every object tagged with where it came from, so an
//! error names the file and document. Then kubectl's apply of one object: create it, or
//! update it with a three-way merge against the manifest last applied.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use ketch_api::decode::parse_documents;
use ketch_api::resource::{ResourceInfo, by_kind};
use ketch_client::Client;
use serde_json::Value;

use crate::printer::display_name;

/// One object read from a manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `app.yaml` or `app.yaml#2` (1-based document index) or `-` for stdin.
    pub source: String,
    pub info: &'static ResourceInfo,
    pub object: Value,
}

impl Manifest {
    pub fn name(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }
}

/// Expand `-f` arguments into the files they name.
///
/// # Errors
/// Naming a path that does not exist or a directory with no manifests.
pub fn expand_paths(args: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            out.push(arg.clone());
            continue;
        }
        let meta = std::fs::metadata(arg).map_err(|e| anyhow!("{}: {e}", arg.display()))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(arg)
                .map_err(|e| anyhow!("{}: {e}", arg.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(anyhow!(
                    "{}: no .yaml, .yml or .json files in this directory",
                    arg.display()
                ));
            }
            out.extend(files);
        } else {
            out.push(arg.clone());
        }
    }
    Ok(out)
}

/// Parse manifest text; `source` names it in errors.
///
/// # Errors
/// With the source, line and column of malformed YAML/JSON, or naming an object whose
/// apiVersion/kind ketch does not serve.
pub fn parse_manifests(source: &str, text: &str) -> anyhow::Result<Vec<Manifest>> {
    let docs = parse_documents(text).map_err(|e| anyhow!("{source}: {e}"))?;
    let many = docs.len() > 1;
    docs.into_iter()
        .enumerate()
        .map(|(i, object)| {
            let source = if many { format!("{source}#{}", i + 1) } else { source.to_string() };
            let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
            let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
            if api_version.is_empty() || kind.is_empty() {
                return Err(anyhow!("{source}: apiVersion and kind are required"));
            }
            let info = by_kind(api_version, kind).ok_or_else(|| {
                anyhow!(
                    "{source}: unknown kind {kind:?} in apiVersion {api_version:?}: ketch serves {}",
                    ketch_api::resource::RESOURCES
                        .iter()
                        .map(|r| format!("{}/{}", r.api_version(), r.kind))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            Ok(Manifest { source, info, object })
        })
        .collect()
}

/// Whether an image names a local Wasm file (`file:...` or a path ending in `.wasm`).
pub fn is_local_image(image: &str) -> bool {
    image.starts_with("file:")
        || (!image.contains("://") && image.ends_with(".wasm") && !image.contains('@'))
}

/// Rewrite local `file:` images of a workload manifest to absolute paths, resolved against
/// `base` (the manifest's directory), so the node agent finds them whatever its working
/// directory. A local image that does not exist is an error naming the field.
///
/// # Errors
/// Naming the field and path of a missing file.
pub fn resolve_local_images(m: &mut Manifest, base: &Path) -> anyhow::Result<()> {
    let pointer = match m.info.plural {
        "pods" => "/spec",
        "deployments" | "replicasets" => "/spec/template/spec",
        _ => return Ok(()),
    };
    let field_prefix = pointer.trim_start_matches('/').replace('/', ".");
    let Some(spec) = m.object.pointer_mut(pointer) else {
        return Ok(());
    };
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for (i, c) in containers.iter_mut().enumerate() {
            let Some(image) = c.get("image").and_then(Value::as_str) else {
                continue;
            };
            if !is_local_image(image) {
                continue;
            }
            let path = image
                .strip_prefix("file://")
                .or_else(|| image.strip_prefix("file:"))
                .unwrap_or(image);
            let full = base.join(path);
            let canonical = std::fs::canonicalize(&full).map_err(|e| {
                anyhow!(
                    "{}: {field_prefix}.{list}[{i}].image: {image:?} does not exist ({}: {e})",
                    m.source,
                    full.display()
                )
            })?;
            c["image"] = Value::String(format!("file:{}", canonical.display()));
        }
    }
    Ok(())
}

/// Read and parse every manifest the `-f` arguments name.
///
/// # Errors
/// As [`expand_paths`] and [`parse_manifests`].
pub fn load(args: &[PathBuf]) -> anyhow::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for path in expand_paths(args)? {
        let (source, text) = read_source(&path)?;
        let base = match path.parent() {
            Some(p) if path.as_os_str() != "-" && !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        for mut m in parse_manifests(&source, &text)? {
            resolve_local_images(&mut m, &base)?;
            out.push(m);
        }
    }
    Ok(out)
}

fn read_source(path: &Path) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| anyhow!("stdin: {e}"))?;
        return Ok(("-".into(), text));
    }
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// What `apply` did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

/// The annotation holding the manifest as last applied (kubectl's name, so habits and
/// tools carry over). It lets `apply` delete fields removed from the manifest while keeping
/// fields that others (controllers, `ketch scale`) set.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A JSON merge patch that turns what was last applied into `desired`: every field of
/// `desired`, plus `null` for fields the last applied manifest had and `desired` dropped.
/// Fields nobody applied (set by controllers or other clients) are not touched.
pub fn three_way_patch(last: Option<&Value>, desired: &Value) -> Value {
    match desired {
        Value::Object(want) => {
            let had = last.and_then(Value::as_object);
            let mut patch = serde_json::Map::new();
            for (k, v) in want {
                let prev = had.and_then(|h| h.get(k));
                let entry = if v.is_object() {
                    three_way_patch(prev, v)
                } else {
                    v.clone()
                };
                patch.insert(k.clone(), entry);
            }
            if let Some(had) = had {
                for k in had.keys().filter(|k| !want.contains_key(*k)) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(patch)
        }
        other => other.clone(),
    }
}

/// A Secret's `stringData` folded into `data` (base64; it wins on conflict), which is what
/// the API server's admission does. `apply` sends and diffs the folded form, so a key removed
/// from `stringData` is removed from `data`, where the server keeps it (diffed as
/// `stringData`, the removal would patch a field the server never stores).
pub fn fold_string_data(secret: &mut Value) {
    use base64::Engine as _;
    let Some(obj) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = obj.remove("stringData") else {
        return;
    };
    let data = obj
        .entry("data")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let text = v.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            data.insert(k, Value::String(encoded));
        }
    }
}

/// What `apply` records in [`LAST_APPLIED`]: the manifest as applied, except that a
/// Secret's values are left out (each `data` key kept with an empty value). The record only
/// needs the keys: [`three_way_patch`] deletes what the last apply had and the manifest
/// dropped, and never reads a recorded value; and the annotation is shown by `get -o yaml`
/// and copied by tools, where Secret values must not travel. (kubectl records the values.)
pub fn applied_record(info: &ResourceInfo, desired: &Value) -> String {
    let mut record = desired.clone();
    if info.kind == "Secret"
        && let Some(obj) = record.as_object_mut()
    {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(values)) = obj.get_mut(field) {
                for v in values.values_mut() {
                    *v = Value::String(String::new());
                }
            }
        }
    }
    serde_json::to_string(&record).expect("JSON values serialize")
}

/// Create the object, or update it when it exists with a three-way merge (see
/// [`three_way_patch`]) as a compare-and-set on the version just read, retried on a
/// concurrent write. `default_ns` applies when the object names none.
///
/// # Errors
/// The server's refusal ([`ketch_client::Error::Api`]), a transport error, or an object that
/// kept changing through every attempt.
pub async fn apply(client: &Client, m: &Manifest, default_ns: &str) -> anyhow::Result<Applied> {
    let ns = m
        .info
        .namespaced
        .then(|| m.namespace().unwrap_or(default_ns).to_string());
    let mut desired = m.object.clone();
    if m.info.kind == "Secret" {
        fold_string_data(&mut desired);
    }
    if let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = annotations.as_object_mut() {
            a.remove(LAST_APPLIED);
        }
    }
    let record = applied_record(m.info, &desired);
    if let Some(a) = desired
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.insert(LAST_APPLIED.into(), Value::String(record));
    }
    let Some(name) = m.name().filter(|n| !n.is_empty()) else {
        // generateName objects are always new.
        client.create(m.info, ns.as_deref(), &desired).await?;
        return Ok(Applied::Created);
    };
    for _ in 0..5 {
        let existing = match client.get(m.info, ns.as_deref(), name).await {
            Ok(v) => v,
            Err(e) if e.code() == Some(404) => {
                match client.create(m.info, ns.as_deref(), &desired).await {
                    Ok(_) => return Ok(Applied::Created),
                    Err(e) if e.code() == Some(409) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let last: Option<Value> = existing
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(LAST_APPLIED))
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok());
        let rv = existing
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(Value::Null);
        let mut patch = three_way_patch(last.as_ref(), &desired);
        if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), rv.clone());
        }
        match client
            .merge_patch(m.info, ns.as_deref(), name, &patch, false)
            .await
        {
            Ok(updated) => {
                let same = updated.pointer("/metadata/resourceVersion") == Some(&rv);
                return Ok(if same {
                    Applied::Unchanged
                } else {
                    Applied::Configured
                });
            }
            Err(e) if e.code() == Some(409) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow!(
        "{}: the object kept changing while applying; try again",
        display_name(m.info, name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_sources_are_numbered_and_unknown_kinds_named() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";
        let ms = parse_manifests("app.yaml", text).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[1].source, "app.yaml#2");
        let err = parse_manifests(
            "x.yaml",
            "apiVersion: v1\nkind: Widget\nmetadata: {name: a}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("x.yaml: unknown kind \"Widget\""),
            "{err}"
        );
    }

    #[test]
    fn malformed_yaml_names_file_line_and_column() {
        let err = parse_manifests("bad.yaml", "apiVersion: v1\nkind: [\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.yaml: line "), "{err}");
        assert!(err.contains("column"), "{err}");
    }

    #[test]
    fn local_wasm_images_resolve_against_the_manifest_directory() {
        let dir = std::env::temp_dir().join(format!("ketch-manifest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.wasm"), b"\0asm").unwrap();
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: a, image: file:./app.wasm}\n      - {name: b, image: registry.example/x:1}\n";
        let mut m = parse_manifests("app.yaml", text).unwrap().remove(0);
        resolve_local_images(&mut m, &dir).unwrap();
        let image = m
            .object
            .pointer("/spec/template/spec/containers/0/image")
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(
            image,
            format!(
                "file:{}",
                dir.canonicalize().unwrap().join("app.wasm").display()
            )
        );
        assert_eq!(
            m.object
                .pointer("/spec/template/spec/containers/1/image")
                .unwrap(),
            "registry.example/x:1"
        );
        let missing = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: nope.wasm}\n";
        let mut m = parse_manifests("pod.yaml", missing).unwrap().remove(0);
        let err = resolve_local_images(&mut m, &dir).unwrap_err().to_string();
        assert!(
            err.contains("pod.yaml: spec.containers[0].image: \"nope.wasm\" does not exist"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_three_way_patch_sets_desired_fields_and_deletes_only_what_was_applied_before() {
        use serde_json::json;
        let last = json!({"spec": {"replicas": 3, "paused": false}, "metadata": {"labels": {"a": "1", "b": "2"}}});
        let desired = json!({"spec": {"replicas": 4}, "metadata": {"labels": {"a": "1"}}});
        let patch = three_way_patch(Some(&last), &desired);
        assert_eq!(
            patch,
            json!({"spec": {"replicas": 4, "paused": null}, "metadata": {"labels": {"a": "1", "b": null}}})
        );
        // Without a record, nothing is deleted: fields set by others survive.
        assert_eq!(three_way_patch(None, &desired), desired);
    }

    /// Applies `manifest` over `live` the way [`apply`] does (fold, record, three-way patch
    /// against the live record, the server's merge and `stringData` fold); returns the new
    /// live object.
    fn apply_secret_over(live: &Value, manifest: &Value) -> Value {
        use ketch_api::resource::SECRETS;
        let mut desired = manifest.clone();
        fold_string_data(&mut desired);
        let record = applied_record(&SECRETS, &desired);
        desired["metadata"]["annotations"] = serde_json::json!({ (LAST_APPLIED): record });
        let last: Option<Value> = live
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(LAST_APPLIED))
            .and_then(Value::as_str)
            .map(|s| serde_json::from_str(s).unwrap());
        let patch = three_way_patch(last.as_ref(), &desired);
        let mut next = live.clone();
        ketch_control::store::apply::merge_patch(&mut next, &patch);
        fold_string_data(&mut next);
        next
    }

    #[test]
    fn applying_a_secret_records_its_keys_but_never_its_values() {
        use serde_json::json;
        let manifest = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"user": "YWRtaW4="}, "stringData": {"password": "hunter2"}});
        let live = apply_secret_over(&json!({}), &manifest);
        let record = live["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap();
        assert!(
            !record.contains("hunter2")
                && !record.contains("aHVudGVyMg")
                && !record.contains("YWRtaW4"),
            "{record}"
        );
        assert!(!record.contains("stringData"), "{record}");
        assert_eq!(
            serde_json::from_str::<Value>(record).unwrap()["data"],
            json!({"user": "", "password": ""})
        );
        assert_eq!(
            live["data"],
            json!({"user": "YWRtaW4=", "password": "aHVudGVyMg=="})
        );
    }

    #[test]
    fn reapplying_a_secret_removes_the_keys_dropped_from_data_or_string_data_only() {
        use serde_json::json;
        let v1 = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"a": "MQ==", "b": "Mg=="}, "stringData": {"c": "3", "d": "4"}});
        let mut live = apply_secret_over(&json!({}), &v1);
        // Someone else adds a key: apply never applied it, so apply never removes it.
        live["data"]["other"] = json!("OQ==");
        let v2 = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"a": "MTE="}, "stringData": {"d": "44"}});
        let live = apply_secret_over(&live, &v2);
        assert_eq!(
            live["data"],
            json!({"a": "MTE=", "d": "NDQ=", "other": "OQ=="}),
            "b (from data) and c (from stringData) are gone, the values changed"
        );
        // A key moved from data to stringData stays, with the new value.
        let v3 = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "stringData": {"a": "x", "d": "44"}});
        let live = apply_secret_over(&live, &v3);
        assert_eq!(
            live["data"],
            json!({"a": "eA==", "d": "NDQ=", "other": "OQ=="})
        );
    }
}

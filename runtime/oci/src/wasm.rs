//! Wasm components as OCI artifacts, in the layout of the CNCF TAG Runtime's Wasm OCI
//! artifact spec (<https://tag-runtime.cncf.io/wgs/wasm/deliverables/wasm-oci-artifact/>):
//! an image manifest whose config has media type [`CONFIG_MEDIA_TYPE`] (JSON: `created`,
//! `architecture: "wasm"`, `os: "wasip2"`, `layerDigests`, `component` with its imports and
//! exports) and exactly one [`LAYER_MEDIA_TYPE`] layer holding the component's bytes.
//!
//! oci-client's `WASM_*` constants are the older wasm-to-oci media types, which is why they
//! are not used here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_client::Reference;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest,
};
use serde::{Deserialize, Serialize};

use super::{PullPolicy, Registries, sha256_digest};
use ketch_api::format::{self, error_chain};

/// The config media type of a Wasm artifact.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of the one layer: the component's bytes.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// `architecture` of every Wasm artifact.
pub const ARCHITECTURE: &str = "wasm";
/// `os` of a component (a core module would be `wasip1`).
pub const COMPONENT_OS: &str = "wasip2";

/// The artifact's config blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// RFC 3339 time of the push.
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    /// The manifest's layer digests, in order (makes each config, and so the artifact's
    /// identity, unique to its content).
    pub layer_digests: Vec<String>,
    /// Required when `os` is `wasip2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentInfo>,
}

/// What a component imports and exports (top-level names, e.g.
/// `wasi:http/incoming-handler@0.2.0`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// The world it targets, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Why a Wasm artifact could not be pushed or pulled.
#[derive(Debug, thiserror::Error)]
pub enum WasmOciError {
    #[error("invalid reference {reference:?}: {message}")]
    Reference { reference: String, message: String },
    #[error("{0}")]
    Auth(#[from] super::AuthError),
    #[error("{what} {reference}: {message}")]
    Registry {
        what: &'static str,
        reference: String,
        message: String,
    },
    #[error("image {reference} is not present on this node and imagePullPolicy is Never")]
    NeverPull { reference: String },
    #[error(
        "{reference} is not a Wasm component artifact: its config media type is \
         {media_type:?}, not {CONFIG_MEDIA_TYPE:?}"
    )]
    NotWasm {
        reference: String,
        media_type: String,
    },
    #[error("{reference}: {message}")]
    Invalid { reference: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// The `world` a component targets, from what it exports.
fn target_of(exports: &[String]) -> Option<String> {
    let http = exports
        .iter()
        .find(|e| e.starts_with("wasi:http/incoming-handler@"))?;
    let version = http.rsplit_once('@').map(|(_, v)| v)?;
    Some(format!("wasi:http/proxy@{version}"))
}

/// Checks that `bytes` are a valid WebAssembly component and lists its top-level imports
/// and exports.
///
/// # Errors
/// A message saying what the bytes are instead (not Wasm, a core module, invalid).
pub fn inspect_component(bytes: &[u8]) -> Result<ComponentInfo, String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly file (no \\0asm header)".into());
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => {}
        [0x01, 0x00, 0x00, 0x00] => {
            return Err("a core WebAssembly module, not a component: build it for \
                        wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
                .into());
        }
        v => return Err(format!("unknown WebAssembly version/layer {v:02x?}")),
    }
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    validator
        .validate_all(bytes)
        .map_err(|e| format!("invalid component: {e}"))?;
    let mut info = ComponentInfo::default();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("invalid component: {e}"))? {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(r) if depth == 1 => {
                for i in r {
                    let i = i.map_err(|e| format!("invalid component: {e}"))?;
                    info.imports.push(i.name.name.to_string());
                }
            }
            wasmparser::Payload::ComponentExportSection(r) if depth == 1 => {
                for e in r {
                    let e = e.map_err(|e| format!("invalid component: {e}"))?;
                    info.exports.push(e.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    info.target = target_of(&info.exports);
    Ok(info)
}

/// The config, manifest and layer of an artifact for `component` (already inspected).
pub struct Artifact {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub layer_digest: String,
    /// `sha256:` of `manifest`: what a digest reference names.
    pub manifest_digest: String,
}

/// Lays out `component` as a CNCF Wasm artifact created at `created` (RFC 3339).
pub fn artifact(component: &[u8], info: ComponentInfo, created: String) -> Artifact {
    let layer_digest = sha256_digest(component);
    let config = WasmConfig {
        created,
        author: None,
        architecture: ARCHITECTURE.into(),
        os: COMPONENT_OS.into(),
        layer_digests: vec![layer_digest.clone()],
        component: Some(info),
    };
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = OciImageManifest {
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
        config: OciDescriptor {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: sha256_digest(&config),
            size: config.len() as i64,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: LAYER_MEDIA_TYPE.into(),
            digest: layer_digest.clone(),
            size: component.len() as i64,
            ..Default::default()
        }],
        ..Default::default()
    };
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    Artifact {
        manifest_digest: sha256_digest(&manifest),
        config,
        manifest,
        layer_digest,
    }
}

/// Parses an image reference (`registry/repo:tag`, `…@sha256:…`).
///
/// # Errors
/// [`WasmOciError::Reference`].
pub fn parse_reference(reference: &str) -> Result<Reference, WasmOciError> {
    reference
        .parse()
        .map_err(|e: oci_client::ParseError| WasmOciError::Reference {
            reference: reference.to_string(),
            message: e.to_string(),
        })
}

/// Pushes `component` (already checked with [`inspect_component`]) to `reference`; returns
/// the manifest's digest.
///
/// # Errors
/// [`WasmOciError`] with the registry's message.
pub async fn push(
    registries: &Registries,
    reference: &Reference,
    component: Vec<u8>,
    info: ComponentInfo,
) -> Result<String, WasmOciError> {
    let created = ketch_api::time::now();
    let a = artifact(&component, info, created);
    let (client, auth) = registries.client(reference)?;
    let whole = reference.whole();
    let reg = |what: &'static str| {
        let whole = whole.clone();
        move |e: oci_client::errors::OciDistributionError| WasmOciError::Registry {
            what,
            reference: whole,
            message: error_chain(&e),
        }
    };
    client
        .auth(reference, &auth, oci_client::RegistryOperation::Push)
        .await
        .map_err(reg("pushing"))?;
    client
        .push_blob(reference, component, &a.layer_digest)
        .await
        .map_err(reg("pushing the component to"))?;
    let config_digest = sha256_digest(&a.config);
    client
        .push_blob(reference, a.config, &config_digest)
        .await
        .map_err(reg("pushing the config to"))?;
    client
        .push_manifest_raw(
            reference,
            a.manifest,
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .map_err(reg("pushing the manifest to"))?;
    Ok(a.manifest_digest)
}

/// What kind of artifact a registry reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A CNCF Wasm component artifact: runs on the Wasm runtime.
    Wasm,
    /// An OCI or Docker container image (or an index of them): runs as a Linux container.
    Image,
}

/// The config media types of container images.
const IMAGE_CONFIG_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Classifies a manifest (raw JSON as served) by its media type and config media type.
///
/// # Errors
/// A message naming the media type ketch does not know how to run.
pub fn classify_manifest(raw: &[u8]) -> Result<ArtifactKind, String> {
    let v: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let media_type = v["mediaType"].as_str().unwrap_or_default();
    if v.get("manifests").is_some()
        || media_type == OCI_IMAGE_INDEX_MEDIA_TYPE
        || media_type == IMAGE_MANIFEST_LIST_MEDIA_TYPE
    {
        // An index selects per platform; Wasm artifacts are single manifests.
        return Ok(ArtifactKind::Image);
    }
    let config = v["config"]["mediaType"].as_str().unwrap_or_default();
    if config == CONFIG_MEDIA_TYPE {
        Ok(ArtifactKind::Wasm)
    } else if IMAGE_CONFIG_MEDIA_TYPES.contains(&config) {
        Ok(ArtifactKind::Image)
    } else {
        Err(format!(
            "artifact with config media type {config:?}: neither a container image nor a \
             Wasm component ({CONFIG_MEDIA_TYPE})"
        ))
    }
}

/// Manifest media types asked for when resolving or pulling.
const ACCEPTED: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Fetches `reference`'s manifest and verifies its digest: the content must hash to what the
/// registry says and, for a digest reference, to the digest asked for.
async fn fetch_manifest(
    client: &oci_client::Client,
    auth: &oci_client::secrets::RegistryAuth,
    reference: &Reference,
) -> Result<(bytes::Bytes, String), WasmOciError> {
    let whole = reference.whole();
    let (raw, digest) = client
        .pull_manifest_raw(reference, auth, &ACCEPTED)
        .await
        .map_err(|e| WasmOciError::Registry {
            what: "pulling",
            reference: whole.clone(),
            message: error_chain(&e),
        })?;
    let actual = sha256_digest(&raw);
    if let Some(want) = reference.digest()
        && want != actual
    {
        return Err(WasmOciError::Invalid {
            reference: whole,
            message: format!(
                "digest mismatch: the registry served a manifest whose digest is {actual}, not {want}"
            ),
        });
    }
    if digest != actual {
        return Err(WasmOciError::Invalid {
            reference: whole,
            message: format!(
                "manifest digest mismatch: the registry said {digest}, the content is {actual}"
            ),
        });
    }
    Ok((raw, actual))
}

/// Asks the registry what `image` is (one manifest request).
///
/// # Errors
/// [`WasmOciError`] with the registry's message, or naming an unknown media type.
pub async fn resolve_kind(
    registries: &Registries,
    image: &str,
) -> Result<ArtifactKind, WasmOciError> {
    let reference = parse_reference(image)?;
    let (client, auth) = registries.client(&reference)?;
    let (raw, _) = fetch_manifest(&client, &auth, &reference).await?;
    classify_manifest(&raw).map_err(|message| WasmOciError::Invalid {
        reference: reference.whole(),
        message,
    })
}

/// A component on this node's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalComponent {
    /// The component's bytes (`<store>/blobs/sha256/<hex>.wasm`).
    pub path: PathBuf,
    /// `sha256:` of the component: the layer digest, and the compiled cache's key.
    pub digest: String,
    /// `sha256:` of the manifest.
    pub manifest_digest: String,
    /// Bytes fetched from the registry by this call (0: all were here already).
    pub fetched: u64,
    /// Whether the registry was asked at all.
    pub pulled: bool,
}

/// The record of where a reference pointed when last pulled.
#[derive(Debug, Serialize, Deserialize)]
struct RefRecord {
    reference: String,
    manifest: String,
    layer: String,
}

/// Wasm components pulled from registries, on disk by digest: `blobs/sha256/<hex>.wasm` holds
/// each component once, however many references name it; `refs/<sha256 of the reference>.json`
/// records which manifest and component a reference resolved to, so `IfNotPresent` and
/// `Never` need no registry.
pub struct WasmStore {
    dir: PathBuf,
    registries: Arc<Registries>,
    /// The largest component pulled: what the engine that loads them accepts
    /// (`ketch_wasm::MAX_COMPONENT_BYTES` on a node), checked before and during a download.
    max_component_bytes: u64,
    /// One pull per reference at a time; others wait and find it present.
    locks: super::KeyedLocks,
}

impl std::fmt::Debug for WasmStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> WasmOciError {
    move |source| WasmOciError::Io { context, source }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees a
/// partial file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WasmOciError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let tmp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
    // Created exclusively (O_EXCL): never written through someone else's file or symlink.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(format!("renaming to {}", path.display()))(e)
    })
}

impl WasmStore {
    /// A store under `dir` (created on first pull) that refuses components larger than
    /// `max_component_bytes`.
    pub fn new(dir: PathBuf, registries: Arc<Registries>, max_component_bytes: u64) -> Self {
        WasmStore {
            dir,
            registries,
            max_component_bytes,
            locks: super::KeyedLocks::default(),
        }
    }

    /// Where the component with `digest` (`sha256:<hex>`) is kept.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir
            .join("blobs")
            .join("sha256")
            .join(format!("{hex}.wasm"))
    }

    fn ref_path(&self, whole: &str) -> PathBuf {
        let key = sha256_digest(whole.as_bytes());
        self.dir
            .join("refs")
            .join(format!("{}.json", key.trim_start_matches("sha256:")))
    }

    /// The component `image` named when last pulled, if it is still on disk.
    pub fn local(&self, image: &str) -> Option<LocalComponent> {
        let whole = parse_reference(image).ok()?.whole();
        let text = std::fs::read(self.ref_path(&whole)).ok()?;
        let r: RefRecord = serde_json::from_slice(&text).ok()?;
        let path = self.blob_path(&r.layer);
        path.is_file().then_some(LocalComponent {
            path,
            digest: r.layer,
            manifest_digest: r.manifest,
            fetched: 0,
            pulled: false,
        })
    }

    /// Makes the component `image` names available on disk per `policy`: a present one is
    /// reused (`IfNotPresent`, `Never`); otherwise the manifest is fetched and verified, the
    /// config must be a Wasm artifact's, and the component is downloaded only if no
    /// reference brought that digest to this node before (then verified against it).
    ///
    /// # Errors
    /// [`WasmOciError`]: the registry's message, a digest mismatch, not a Wasm artifact,
    /// `Never` with nothing here, disk errors.
    pub async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        progress: &Arc<dyn Fn(String) + Send + Sync>,
    ) -> Result<LocalComponent, WasmOciError> {
        let reference = parse_reference(image)?;
        let whole = reference.whole();
        let lock = self.locks.get(&whole).await;
        let _guard = lock.lock().await;
        if policy != PullPolicy::Always
            && let Some(local) = self.local(image)
        {
            return Ok(local);
        }
        if policy == PullPolicy::Never {
            return Err(WasmOciError::NeverPull { reference: whole });
        }
        progress(format!("Pulling image \"{image}\""));
        let (client, auth) = self.registries.client(&reference)?;
        let (raw, manifest_digest) = fetch_manifest(&client, &auth, &reference).await?;
        let invalid = |message: String| WasmOciError::Invalid {
            reference: whole.clone(),
            message,
        };
        let manifest: OciImageManifest =
            serde_json::from_slice(&raw).map_err(|e| invalid(format!("manifest: {e}")))?;
        if manifest.config.media_type != CONFIG_MEDIA_TYPE {
            return Err(WasmOciError::NotWasm {
                reference: whole,
                media_type: manifest.config.media_type,
            });
        }
        let [layer] = manifest.layers.as_slice() else {
            return Err(invalid(format!(
                "a Wasm artifact has exactly one layer, this one has {}",
                manifest.layers.len()
            )));
        };
        if layer.media_type != LAYER_MEDIA_TYPE {
            return Err(invalid(format!(
                "layer media type {:?}, not {LAYER_MEDIA_TYPE:?}",
                layer.media_type
            )));
        }
        let size = u64::try_from(layer.size).unwrap_or(0);
        let max = self.max_component_bytes;
        if size > max {
            return Err(invalid(format!(
                "the component is {size} bytes, more than the limit of {max} bytes"
            )));
        }
        let path = self.blob_path(&layer.digest);
        let mut fetched = 0;
        // Two references to one component (a tag and a digest) download it once.
        let blob_lock = self.locks.get(&layer.digest).await;
        let _blob_guard = blob_lock.lock().await;
        if !path.is_file() {
            let pull_err = |e: &dyn std::error::Error| WasmOciError::Registry {
                what: "pulling the component of",
                reference: whole.clone(),
                message: error_chain(e),
            };
            let mut stream = client
                .pull_blob_stream(&reference, layer)
                .await
                .map_err(|e| pull_err(&e))?
                .stream;
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            let mut gate = super::Progress::new(size, std::time::Instant::now());
            while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
                let chunk = chunk.map_err(|e| pull_err(&e))?;
                if bytes.len() as u64 + chunk.len() as u64 > max {
                    return Err(invalid(format!(
                        "the component is larger than the limit of {max} bytes"
                    )));
                }
                bytes.extend_from_slice(&chunk);
                if let Some(pct) = gate.advance(chunk.len() as u64, std::time::Instant::now()) {
                    progress(format!(
                        "Pulling image \"{image}\": component {}… {pct}% of {}",
                        layer.digest.get(..19).unwrap_or(&layer.digest),
                        format::bytes(size)
                    ));
                }
            }
            let actual = sha256_digest(&bytes);
            if actual != layer.digest {
                return Err(invalid(format!(
                    "layer digest mismatch: the manifest says {}, the content is {actual}",
                    layer.digest
                )));
            }
            write_atomic(&path, &bytes)?;
            fetched = bytes.len() as u64;
        }
        let record = RefRecord {
            reference: whole.clone(),
            manifest: manifest_digest.clone(),
            layer: layer.digest.clone(),
        };
        write_atomic(
            &self.ref_path(&whole),
            &serde_json::to_vec(&record).unwrap_or_default(),
        )?;
        Ok(LocalComponent {
            path,
            digest: layer.digest.clone(),
            manifest_digest,
            fetched,
            pulled: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit a node gives its store (ketch-wasm's).
    const LIMIT: u64 = 64 << 20;

    #[test]
    fn manifests_are_classified_by_their_config_media_type() {
        let manifest = |config: &str| {
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_IMAGE_MEDIA_TYPE,
                "config": {"mediaType": config, "digest": "sha256:00", "size": 1},
                "layers": []
            }))
            .unwrap()
        };
        assert_eq!(
            classify_manifest(&manifest(CONFIG_MEDIA_TYPE)),
            Ok(ArtifactKind::Wasm)
        );
        assert_eq!(
            classify_manifest(&manifest("application/vnd.oci.image.config.v1+json")),
            Ok(ArtifactKind::Image)
        );
        assert_eq!(
            classify_manifest(&manifest("application/vnd.docker.container.image.v1+json")),
            Ok(ArtifactKind::Image)
        );
        let index = br#"{"schemaVersion": 2, "manifests": []}"#;
        assert_eq!(classify_manifest(index), Ok(ArtifactKind::Image));
        // The old wasm-to-oci type is named, not guessed at.
        let old = classify_manifest(&manifest("application/vnd.wasm.config.v1+json")).unwrap_err();
        assert!(old.contains("application/vnd.wasm.config.v1+json"), "{old}");
        assert!(classify_manifest(b"<html>").is_err());
    }

    #[test]
    fn the_store_finds_components_by_reference_only_when_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = WasmStore::new(
            dir.path().to_path_buf(),
            Arc::new(Registries::default()),
            LIMIT,
        );
        assert_eq!(store.local("127.0.0.1:5000/app:1"), None);
        let digest = sha256_digest(b"component");
        let record = RefRecord {
            reference: "127.0.0.1:5000/app:1".into(),
            manifest: "sha256:m".into(),
            layer: digest.clone(),
        };
        write_atomic(
            &store.ref_path("127.0.0.1:5000/app:1"),
            &serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        // A record without its component is not "present".
        assert_eq!(store.local("127.0.0.1:5000/app:1"), None);
        write_atomic(&store.blob_path(&digest), b"component").unwrap();
        let local = store.local("127.0.0.1:5000/app:1").unwrap();
        assert_eq!(local.digest, digest);
        assert_eq!(local.manifest_digest, "sha256:m");
        assert!(!local.pulled);
        assert_eq!(store.local("127.0.0.1:5000/app:2"), None);
    }

    #[test]
    fn files_that_are_not_components_are_named_for_what_they_are() {
        assert!(
            inspect_component(b"hello")
                .unwrap_err()
                .contains("not a WebAssembly file")
        );
        let module = b"\0asm\x01\0\0\0";
        assert!(
            inspect_component(module)
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        let broken = b"\0asm\x0d\0\x01\0\xff\xff";
        assert!(
            inspect_component(broken)
                .unwrap_err()
                .starts_with("invalid component")
        );
    }

    #[test]
    fn a_component_lists_its_imports_and_exports() {
        let bytes = std::fs::read(ketch_test_guests::HELLO).unwrap();
        let info = inspect_component(&bytes).unwrap();
        assert!(
            info.exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler@0.2")),
            "{info:?}"
        );
        assert!(
            info.imports.iter().any(|i| i.starts_with("wasi:")),
            "{info:?}"
        );
        assert!(
            info.target
                .as_deref()
                .unwrap()
                .starts_with("wasi:http/proxy@0.2")
        );
    }

    #[test]
    fn the_artifact_follows_the_cncf_layout() {
        let info = ComponentInfo {
            exports: vec!["wasi:http/incoming-handler@0.2.0".into()],
            imports: vec![],
            target: Some("wasi:http/proxy@0.2.0".into()),
        };
        let a = artifact(b"\0asm", info.clone(), "2026-01-01T00:00:00Z".into());
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], OCI_IMAGE_MEDIA_TYPE);
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.wasm.config.v0+json"
        );
        assert_eq!(m["config"]["digest"], sha256_digest(&a.config));
        assert_eq!(m["layers"].as_array().unwrap().len(), 1);
        assert_eq!(m["layers"][0]["mediaType"], "application/wasm");
        assert_eq!(m["layers"][0]["digest"], sha256_digest(b"\0asm"));
        assert_eq!(m["layers"][0]["size"], 4);
        assert_eq!(a.manifest_digest, sha256_digest(&a.manifest));
        let c: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(c["architecture"], "wasm");
        assert_eq!(c["os"], "wasip2");
        assert_eq!(c["created"], "2026-01-01T00:00:00Z");
        assert_eq!(c["layerDigests"][0], sha256_digest(b"\0asm"));
        assert_eq!(
            c["component"]["exports"][0],
            "wasi:http/incoming-handler@0.2.0"
        );
        assert_eq!(c["component"]["target"], "wasi:http/proxy@0.2.0");
    }

    /// A registry on loopback that serves one artifact (`repo:tag`) and lies where asked:
    /// a layer blob that is not the bytes its digest names, or a manifest under the wrong
    /// `Docker-Content-Digest`. Registries verify digests on push, so a real one cannot be
    /// made to do this; a corrupted cache or proxy in between can.
    async fn lying_registry(lie_about_layer: bool, lie_about_manifest: bool) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let info = ComponentInfo {
            exports: vec![],
            imports: vec![],
            target: None,
        };
        let component = b"\0asm\x0d\0\x01\0".to_vec();
        let a = artifact(&component, info, "2026-01-01T00:00:00Z".into());
        let manifest_digest = if lie_about_manifest {
            sha256_digest(b"something else")
        } else {
            a.manifest_digest.clone()
        };
        let layer: Vec<u8> = if lie_about_layer {
            b"\0asm\x0d\0\x01\x01".to_vec()
        } else {
            component
        };
        let layer_digest = a.layer_digest.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (manifest, config) = (a.manifest.clone(), a.config.clone());
        let config_digest = sha256_digest(&config);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (manifest, config, layer) = (manifest.clone(), config.clone(), layer.clone());
                let (md, cd, ld) = (
                    manifest_digest.clone(),
                    config_digest.clone(),
                    layer_digest.clone(),
                );
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut have = 0;
                    loop {
                        let Ok(n) = conn.read(&mut buf[have..]).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        have += n;
                        let text = String::from_utf8_lossy(&buf[..have]).to_string();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                        buf.drain(..end + 4);
                        have -= end + 4;
                        let (status, ctype, digest, body): (&str, &str, String, Vec<u8>) =
                            if path.ends_with("/manifests/1") || path.ends_with(&md) {
                                ("200 OK", OCI_IMAGE_MEDIA_TYPE, md.clone(), manifest.clone())
                            } else if path.ends_with(&cd) {
                                ("200 OK", CONFIG_MEDIA_TYPE, cd.clone(), config.clone())
                            } else if path.ends_with(&ld) {
                                ("200 OK", LAYER_MEDIA_TYPE, ld.clone(), layer.clone())
                            } else if path == "/v2/" {
                                ("200 OK", "application/json", String::new(), b"{}".to_vec())
                            } else {
                                (
                                    "404 Not Found",
                                    "application/json",
                                    String::new(),
                                    b"{}".to_vec(),
                                )
                            };
                        let head = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\ndocker-content-digest: {digest}\r\ndocker-distribution-api-version: registry/2.0\r\n\r\n",
                            body.len()
                        );
                        if conn.write_all(head.as_bytes()).await.is_err()
                            || conn.write_all(&body).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn pull(addr: &str) -> Result<LocalComponent, WasmOciError> {
        let dir = tempfile::tempdir().unwrap();
        let store = WasmStore::new(
            dir.path().to_path_buf(),
            Arc::new(Registries::new(vec![], None)),
            LIMIT,
        );
        let quiet: Arc<dyn Fn(String) + Send + Sync> = Arc::new(|_| {});
        store
            .ensure(&format!("{addr}/apps/x:1"), PullPolicy::Always, &quiet)
            .await
    }

    #[tokio::test]
    async fn content_that_does_not_match_its_digest_is_refused() {
        let honest = lying_registry(false, false).await;
        let got = pull(&honest).await.expect("the honest registry's artifact");
        assert_eq!(got.fetched, 8);
        let layer = lying_registry(true, false).await;
        // oci-client checks the stream against the digest too; ketch checks again (a
        // client without that check would still not get the bytes through).
        let err = pull(&layer).await.unwrap_err().to_string();
        assert!(err.contains("digest"), "{err}");
        let manifest = lying_registry(false, true).await;
        let err = pull(&manifest).await.unwrap_err().to_string();
        assert!(err.contains("digest"), "{err}");
    }
}

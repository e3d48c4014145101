//! Image pulls into containerd. containerd 1.6 has no server-side pull (its Transfer service
//! is 2.x only), so ketch does what containerd's Go client does: fetch the manifest, config
//! and layers from the registry with `oci-client`, write them to containerd's content store
//! (containerd verifies each digest on commit), unpack the layers into overlayfs snapshots
//! named by chain ID through the diff service, and record the image. Everything is written
//! under a lease until the image record and the garbage-collection labels that keep its
//! content and snapshots alive exist.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_client::services::v1 as api;
use containerd_client::services::v1::snapshots as snap;
use containerd_client::types::Descriptor;
use futures_util::StreamExt as _;
use oci_client::Reference;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use ketch_api::format::error_chain;
use ketch_oci::{Progress, Registries, sha256_digest as sha256};

use crate::containerd::{Containerd, ContainerdError, SNAPSHOTTER, call, found};

/// The longest one image pull may take (a stalled registry must not hold a Pod forever).
const PULL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// Chunk size of content-store writes.
const WRITE_CHUNK: usize = 1 << 20;

pub use ketch_oci::PullPolicy;

/// Why an image could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {message}")]
    Reference { reference: String, message: String },
    #[error("pulling {reference}: {message}")]
    Registry { reference: String, message: String },
    #[error("pulling {reference}: {source}")]
    Auth {
        reference: String,
        #[source]
        source: ketch_oci::AuthError,
    },
    #[error("image {reference} is not present on this node and imagePullPolicy is Never")]
    NeverPull { reference: String },
    #[error("image {reference}: {message}")]
    Invalid { reference: String, message: String },
    #[error("image {reference}: {source}")]
    Containerd {
        reference: String,
        #[source]
        source: ContainerdError,
    },
}

impl ImageError {
    /// The Kubernetes waiting reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::Reference { .. } => "InvalidImageName",
            ImageError::NeverPull { .. } => "ErrImageNeverPull",
            _ => "ErrImagePull",
        }
    }
}

/// An image ready to run: its snapshot chain is unpacked.
#[derive(Debug, Clone)]
pub struct ReadyImage {
    /// The normalized reference (containerd's image name).
    pub name: String,
    /// `sha256:` digest of the manifest (status `imageID`).
    pub digest: String,
    pub config: ImageConfiguration,
    /// The top snapshot: the parent of a container's rootfs.
    pub chain_id: String,
    /// Whether bytes were fetched (`false`: already present).
    pub pulled: bool,
    pub bytes: u64,
}

/// Pulls images into one containerd.
pub struct Images {
    cd: Containerd,
    registries: Arc<Registries>,
    /// One pull per image at a time; concurrent requests wait and reuse it.
    locks: ketch_oci::KeyedLocks,
}

impl std::fmt::Debug for Images {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images").finish_non_exhaustive()
    }
}

/// `sha256:` chain IDs of a layer stack, from its diff IDs (the OCI image spec's
/// `ChainID(L₀|…|Lₙ) = Digest(ChainID(L₀|…|Lₙ₋₁) + " " + DiffID(Lₙ))`).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The OCI architecture name of this machine.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl Images {
    /// `registries`: protocol and credentials per registry.
    pub fn new(cd: Containerd, registries: Arc<Registries>) -> Self {
        Images {
            cd,
            registries,
            locks: ketch_oci::KeyedLocks::default(),
        }
    }

    fn cerr(reference: &str) -> impl Fn(ContainerdError) -> ImageError + Copy + '_ {
        move |source| ImageError::Containerd {
            reference: reference.to_string(),
            source,
        }
    }

    /// Makes `image` ready per `policy`; `progress` receives human-readable steps (Events).
    ///
    /// # Errors
    /// [`ImageError`], whose [`ImageError::reason`] is the waiting reason to report.
    pub async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        progress: &Arc<dyn Fn(String) + Send + Sync>,
    ) -> Result<ReadyImage, ImageError> {
        let reference: Reference = image.parse().map_err(|e| ImageError::Reference {
            reference: image.to_string(),
            message: format!("{e}"),
        })?;
        let name = reference.whole();
        let lock = self.locks.get(&name).await;
        let _guard = lock.lock().await;
        if policy != PullPolicy::Always
            && let Some(ready) = self.local(&name).await?
        {
            return Ok(ready);
        }
        if policy == PullPolicy::Never {
            return Err(ImageError::NeverPull { reference: name });
        }
        progress(format!("Pulling image \"{image}\""));
        let started = std::time::Instant::now();
        let ready = tokio::time::timeout(PULL_TIMEOUT, self.pull(&reference, &name, progress))
            .await
            .map_err(|_| ImageError::Registry {
                reference: name.clone(),
                message: format!(
                    "the pull did not finish within {}",
                    ketch_api::format::duration(PULL_TIMEOUT)
                ),
            })??;
        progress(format!(
            "Successfully pulled image \"{image}\" in {} ({} bytes, {})",
            ketch_api::format::duration(started.elapsed()),
            ready.bytes,
            ready.digest
        ));
        Ok(ready)
    }

    /// Whether `image` is ready to run on this node without pulling.
    pub async fn present(&self, image: &str) -> bool {
        let Ok(reference) = image.parse::<Reference>() else {
            return false;
        };
        matches!(self.local(&reference.whole()).await, Ok(Some(_)))
    }

    /// The image if its record, config and top snapshot are all present.
    async fn local(&self, name: &str) -> Result<Option<ReadyImage>, ImageError> {
        let cerr = Self::cerr(name);
        let got = found(
            self.cd
                .raw()
                .images()
                .get(self.cd.req(api::GetImageRequest {
                    name: name.to_string(),
                }))
                .await
                .map_err(call("get image")),
        )
        .map_err(cerr)?;
        let Some(target) = got
            .and_then(|r| r.into_inner().image)
            .and_then(|i| i.target)
        else {
            return Ok(None);
        };
        let Some(manifest) = self.read_blob(&target.digest).await.map_err(cerr)? else {
            return Ok(None);
        };
        let manifest =
            ImageManifest::from_reader(manifest.as_slice()).map_err(|e| ImageError::Invalid {
                reference: name.to_string(),
                message: format!("stored manifest: {e}"),
            })?;
        let Some(config) = self
            .read_blob(manifest.config().digest().as_ref())
            .await
            .map_err(cerr)?
        else {
            return Ok(None);
        };
        let config = ImageConfiguration::from_reader(config.as_slice()).map_err(|e| {
            ImageError::Invalid {
                reference: name.to_string(),
                message: format!("stored config: {e}"),
            }
        })?;
        let chain = chain_ids(config.rootfs().diff_ids());
        let Some(top) = chain.last().cloned() else {
            return Ok(None);
        };
        if !self.cd.snapshot_exists(&top).await.map_err(cerr)? {
            return Ok(None);
        }
        Ok(Some(ReadyImage {
            name: name.to_string(),
            digest: target.digest,
            config,
            chain_id: top,
            pulled: false,
            bytes: 0,
        }))
    }

    async fn read_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, ContainerdError> {
        let stream = found(
            self.cd
                .raw()
                .content()
                .read(self.cd.req(api::ReadContentRequest {
                    digest: digest.to_string(),
                    offset: 0,
                    size: 0,
                }))
                .await
                .map_err(call("read content")),
        )?;
        let Some(stream) = stream else {
            return Ok(None);
        };
        let mut stream = stream.into_inner();
        let mut out = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(m)) => out.extend_from_slice(&m.data),
                Ok(None) => break,
                Err(s) if s.code() == containerd_client::tonic::Code::NotFound => {
                    return Ok(None);
                }
                Err(s) => return Err(call("read content")(s)),
            }
        }
        Ok(Some(out))
    }

    async fn blob_present(&self, digest: &str) -> Result<bool, ContainerdError> {
        let r = self
            .cd
            .raw()
            .content()
            .info(self.cd.req(api::InfoRequest {
                digest: digest.to_string(),
            }))
            .await
            .map_err(call("content info"));
        Ok(found(r)?.is_some())
    }

    async fn pull(
        &self,
        reference: &Reference,
        name: &str,
        progress: &Arc<dyn Fn(String) + Send + Sync>,
    ) -> Result<ReadyImage, ImageError> {
        let reg = |message: String| ImageError::Registry {
            reference: name.to_string(),
            message,
        };
        let cerr = Self::cerr(name);
        let (oci, auth) = self
            .registries
            .client(reference)
            .map_err(|source| ImageError::Auth {
                reference: name.to_string(),
                source,
            })?;
        let oci = &oci;
        let accepted = [
            OCI_IMAGE_MEDIA_TYPE,
            IMAGE_MANIFEST_MEDIA_TYPE,
            OCI_IMAGE_INDEX_MEDIA_TYPE,
            IMAGE_MANIFEST_LIST_MEDIA_TYPE,
        ];
        let (mut raw, mut digest) = oci
            .pull_manifest_raw(reference, &auth, &accepted)
            .await
            .map_err(|e| reg(error_chain(&e)))?;
        let mut by_digest = reference.clone();
        if let Ok(index) = ImageIndex::from_reader(raw.as_ref())
            && !index.manifests().is_empty()
            && serde_json::from_slice::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| v.get("manifests").cloned())
                .is_some()
        {
            let arch = host_arch();
            let chosen = index
                .manifests()
                .iter()
                .find(|m| {
                    m.platform().as_ref().is_some_and(|p| {
                        p.os().to_string() == "linux" && p.architecture().to_string() == arch
                    })
                })
                .ok_or_else(|| reg(format!("no linux/{arch} image in the index")))?;
            by_digest = reference.clone_with_digest(chosen.digest().to_string());
            (raw, digest) = oci
                .pull_manifest_raw(&by_digest, &auth, &accepted)
                .await
                .map_err(|e| reg(error_chain(&e)))?;
        }
        if sha256(&raw) != digest {
            return Err(reg(format!(
                "manifest digest mismatch: registry said {digest}, content is {}",
                sha256(&raw)
            )));
        }
        let manifest =
            ImageManifest::from_reader(raw.as_ref()).map_err(|e| ImageError::Invalid {
                reference: name.to_string(),
                message: format!("manifest: {e}"),
            })?;
        if manifest.config().media_type().to_string() == ketch_oci::wasm::CONFIG_MEDIA_TYPE {
            return Err(ImageError::Invalid {
                reference: name.to_string(),
                message: format!(
                    "a Wasm component artifact (config media type {}), not a container image: \
                     a Pod runs either Wasm components or Linux containers",
                    ketch_oci::wasm::CONFIG_MEDIA_TYPE
                ),
            });
        }
        let mut config_raw = Vec::new();
        oci.pull_blob(
            &by_digest,
            manifest.config().digest().as_ref(),
            &mut config_raw,
        )
        .await
        .map_err(|e| reg(format!("config: {}", error_chain(&e))))?;
        let config = ImageConfiguration::from_reader(config_raw.as_slice()).map_err(|e| {
            ImageError::Invalid {
                reference: name.to_string(),
                message: format!("config: {e}"),
            }
        })?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::Invalid {
                reference: name.to_string(),
                message: format!(
                    "{} layers but {} diff_ids in the config",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        let chain = chain_ids(&diff_ids);
        let lease = format!("ketch-pull-{}", uuid_like());
        self.cd
            .create_lease(&lease, HashMap::new())
            .await
            .map_err(cerr)?;
        let result = async {
            let mut bytes = 0u64;
            for layer in manifest.layers() {
                let d = layer.digest().to_string();
                if !self.blob_present(&d).await.map_err(cerr)? {
                    let stream = oci
                        .pull_blob_stream(&by_digest, d.as_str())
                        .await
                        .map_err(|e| reg(format!("layer {d}: {}", error_chain(&e))))?;
                    let size = layer.size();
                    let mut gate = Progress::new(size, std::time::Instant::now());
                    let short = d.get(..19).unwrap_or(&d).to_string();
                    let (progress, name) = (progress.clone(), name.to_string());
                    let chunks = stream.stream.map(move |r| {
                        let chunk = r.map_err(|e| error_chain(&e))?;
                        if let Some(pct) =
                            gate.advance(chunk.len() as u64, std::time::Instant::now())
                        {
                            progress(format!(
                                "Pulling image \"{name}\": layer {short}… {pct}% of {}",
                                ketch_api::format::bytes(size)
                            ));
                        }
                        Ok(chunk)
                    });
                    self.write_content(&lease, &d, size, chunks, HashMap::new())
                        .await
                        .map_err(|m| reg(format!("layer {d}: {m}")))?;
                    bytes += size;
                }
            }
            // Unpack bottom-up; an existing chain snapshot is reused (shared base layers).
            let mut parent = String::new();
            for (i, layer) in manifest.layers().iter().enumerate() {
                let id = &chain[i];
                if !self.cd.snapshot_exists(id).await.map_err(cerr)? {
                    self.unpack_layer(&lease, layer, &diff_ids[i], id, &parent)
                        .await?;
                }
                parent.clone_from(id);
            }
            let top = chain.last().cloned().unwrap_or_default();
            // The config keeps the unpacked snapshot alive; the manifest keeps the config and
            // layers alive (containerd's GC reference labels).
            let config_labels = HashMap::from([(
                format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
                top.clone(),
            )]);
            let config_digest = manifest.config().digest().to_string();
            self.put_blob(&lease, &config_digest, config_raw, config_labels)
                .await
                .map_err(|m| reg(format!("config: {m}")))?;
            let mut manifest_labels = HashMap::from([(
                "containerd.io/gc.ref.content.config".to_string(),
                config_digest,
            )]);
            for (i, l) in manifest.layers().iter().enumerate() {
                manifest_labels.insert(
                    format!("containerd.io/gc.ref.content.l.{i}"),
                    l.digest().to_string(),
                );
            }
            bytes += raw.len() as u64;
            self.put_blob(&lease, &digest, raw.to_vec(), manifest_labels)
                .await
                .map_err(|m| reg(format!("manifest: {m}")))?;
            let media_type = manifest
                .media_type()
                .as_ref()
                .map_or(OCI_IMAGE_MEDIA_TYPE.to_string(), |m| m.to_string());
            self.record_image(name, &digest, &media_type, raw.len())
                .await
                .map_err(cerr)?;
            Ok(ReadyImage {
                name: name.to_string(),
                digest: digest.clone(),
                config: config.clone(),
                chain_id: top,
                pulled: true,
                bytes,
            })
        }
        .await;
        if let Err(e) = self.cd.delete_lease(&lease).await {
            tracing::warn!(error = %e, lease, "deleting the pull lease");
        }
        result
    }

    async fn record_image(
        &self,
        name: &str,
        digest: &str,
        media_type: &str,
        size: usize,
    ) -> Result<(), ContainerdError> {
        let image = api::Image {
            name: name.to_string(),
            labels: HashMap::new(),
            target: Some(Descriptor {
                media_type: media_type.to_string(),
                digest: digest.to_string(),
                size: i64::try_from(size).unwrap_or(i64::MAX),
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        let created = self
            .cd
            .raw()
            .images()
            .create(self.cd.req(api::CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            }))
            .await
            .map_err(call("create image"));
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => self
                .cd
                .raw()
                .images()
                .update(self.cd.req(api::UpdateImageRequest {
                    image: Some(image),
                    update_mask: None,
                    source_date_epoch: None,
                }))
                .await
                .map(|_| ())
                .map_err(call("update image")),
            Err(e) => Err(e),
        }
    }

    async fn unpack_layer(
        &self,
        lease: &str,
        layer: &oci_spec::image::Descriptor,
        diff_id: &str,
        chain_id: &str,
        parent: &str,
    ) -> Result<(), ImageError> {
        let name = chain_id.to_string();
        let cerr = Self::cerr(&name);
        let key = format!("extract-{}-{chain_id}", uuid_like());
        let mounts = self
            .cd
            .prepare_snapshot(&key, parent, lease)
            .await
            .map_err(cerr)?;
        let applied = self
            .cd
            .raw()
            .diff()
            .apply(self.cd.leased(
                api::ApplyRequest {
                    diff: Some(Descriptor {
                        media_type: layer.media_type().to_string(),
                        digest: layer.digest().to_string(),
                        size: layer.size() as i64,
                        annotations: HashMap::new(),
                    }),
                    mounts,
                    payloads: HashMap::new(),
                    sync_fs: false,
                },
                lease,
            ))
            .await
            .map_err(call("apply layer"));
        let result = match applied {
            Ok(r) => {
                let got = r.into_inner().applied.map(|d| d.digest).unwrap_or_default();
                if got == diff_id {
                    self.cd
                        .raw()
                        .snapshots()
                        .commit(self.cd.leased(
                            snap::CommitSnapshotRequest {
                                snapshotter: SNAPSHOTTER.into(),
                                name: chain_id.to_string(),
                                key: key.clone(),
                                labels: HashMap::new(),
                            },
                            lease,
                        ))
                        .await
                        .map(|_| ())
                        .map_err(call("commit snapshot"))
                        .or_else(|e| {
                            if e.is_already_exists() {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        })
                        .map_err(cerr)
                } else {
                    Err(ImageError::Invalid {
                        reference: name.clone(),
                        message: format!(
                            "layer {} unpacked to {got}, but the config says {diff_id}",
                            layer.digest()
                        ),
                    })
                }
            }
            Err(e) => Err(cerr(e)),
        };
        if result.is_err() {
            let _ = self.cd.remove_snapshot(&key).await;
        }
        result
    }

    async fn put_blob(
        &self,
        lease: &str,
        digest: &str,
        bytes: Vec<u8>,
        labels: HashMap<String, String>,
    ) -> Result<(), String> {
        let size = bytes.len() as u64;
        let chunks = futures_util::stream::iter(
            bytes
                .chunks(WRITE_CHUNK)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        self.write_content(lease, digest, size, chunks, labels)
            .await
    }

    /// Streams one blob into the content store and commits it with the expected digest, so
    /// containerd verifies it. An existing blob is fine (its labels are replaced).
    async fn write_content(
        &self,
        lease: &str,
        digest: &str,
        total: u64,
        chunks: impl futures_util::Stream<Item = Result<bytes::Bytes, String>> + Send + 'static,
        labels: HashMap<String, String>,
    ) -> Result<(), String> {
        let total_i = i64::try_from(total).map_err(|_| "blob too large".to_string())?;
        // A ref of its own: two agents (or two pulls) writing the same blob do not wait on
        // containerd's ref lock; the second commit finds the blob and succeeds.
        let r#ref = format!("ketch-{digest}-{}", uuid_like());
        let (tx, rx) = tokio::sync::mpsc::channel::<api::WriteContentRequest>(4);
        let requests =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        // The producer runs before the call is awaited: containerd answers (and sends its
        // response headers) only once it has the first message.
        // The first message opens (or resumes) the write.
        let stat = api::WriteContentRequest {
            action: api::WriteAction::Stat as i32,
            r#ref: r#ref.clone(),
            total: total_i,
            expected: digest.to_string(),
            ..Default::default()
        };
        let ref2 = r#ref.clone();
        let expected = digest.to_string();
        let producer = tokio::spawn(async move {
            if tx.send(stat).await.is_err() {
                return Err("content write closed".to_string());
            }
            let mut offset = 0i64;
            let mut chunks = std::pin::pin!(chunks);
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                let len = i64::try_from(chunk.len()).unwrap_or(0);
                let msg = api::WriteContentRequest {
                    action: api::WriteAction::Write as i32,
                    r#ref: ref2.clone(),
                    offset,
                    data: chunk.to_vec(),
                    ..Default::default()
                };
                offset += len;
                if tx.send(msg).await.is_err() {
                    return Err("content write closed".to_string());
                }
            }
            let commit = api::WriteContentRequest {
                action: api::WriteAction::Commit as i32,
                r#ref: ref2,
                offset,
                total: total_i,
                expected,
                labels,
                ..Default::default()
            };
            tx.send(commit)
                .await
                .map_err(|_| "content write closed".to_string())
        });
        let mut responses = match self
            .cd
            .raw()
            .content()
            .write(self.cd.leased(requests, lease))
            .await
        {
            Ok(r) => Ok(r),
            // Another pull (of this or another image sharing the blob) committed it first:
            // containerd can say so before it reads a byte.
            Err(s) if s.code() == containerd_client::tonic::Code::AlreadyExists => {
                producer.abort();
                return Ok(());
            }
            Err(s) => Err(s.message().to_string()),
        };
        let mut outcome: Result<(), String> = Ok(());
        match &mut responses {
            Ok(stream) => {
                let stream = stream.get_mut();
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(s) if s.code() == containerd_client::tonic::Code::AlreadyExists => {
                            break;
                        }
                        Err(s) => {
                            outcome = Err(s.message().to_string());
                            break;
                        }
                    }
                }
            }
            Err(e) => outcome = Err(e.clone()),
        }
        let produced = producer.await.map_err(|e| e.to_string()).and_then(|r| r);
        match (outcome, produced) {
            (Err(e), _) => Err(e),
            // The server ended the stream early (e.g. the blob already exists).
            (Ok(()), Err(_)) => Ok(()),
            (Ok(()), Ok(())) => Ok(()),
        }
    }
}

/// A random id fragment for lease and snapshot keys.
fn uuid_like() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_formula() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}

//! What a container needs to start: which runtime runs it (a registry reference without a
//! runtime class is resolved at its Pod's first start, from what the node holds or from the
//! artifact's config media type) and its [`WorkloadSpec`] (environment resolved from
//! ConfigMaps and Secrets read through the API, the Pod's `ketch.dev/…` knobs, limits).

use std::sync::Arc;

use ketch_api::core::{ConfigMap, Pod, Secret};
use ketch_api::env::{self, EnvSources};
use ketch_api::runtime::Runtime;
use ketch_api::wellknown::PodAnnotations;
use ketch_oci::PullPolicy;
use ketch_oci::wasm::ArtifactKind;
use ketch_workload::{
    Attachment, OutputSink, ServiceCaller, StartError, StartReason, WorkloadSpec,
};

use super::Ctx;
use crate::events::{EventType, PodRef};

/// The container `name` of `pod`, resolved into a [`WorkloadSpec`]; `pod_ip` is what
/// `status.podIP` says (for `fieldRef`s).
///
/// # Errors
/// Why the container's configuration cannot be used (a missing ConfigMap key, a bad
/// annotation): the container waits in `CreateContainerConfigError` with it.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, each argument a distinct input"
)]
pub(super) async fn workload_spec(
    ctx: &Ctx,
    pod: &Pod,
    pref: &PodRef,
    name: &str,
    image: &str,
    pod_ip: &str,
    output: Arc<dyn OutputSink>,
    network: Option<Attachment>,
) -> Result<WorkloadSpec, String> {
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|x| x.name == name))
        .ok_or_else(|| format!("container {name:?} is no longer in the pod spec"))?
        .clone();
    let ns = pref.namespace.as_str();
    let (cms, secrets) = env::referenced(&container);
    let mut sources = EnvSources::default();
    for name in cms {
        match ctx.client.api::<ConfigMap>(Some(ns)).get(&name).await {
            Ok(cm) => {
                sources.config_maps.insert(name, cm.data);
            }
            Err(e) if e.code() == Some(404) => {}
            Err(e) => return Err(format!("reading configmap {name:?}: {e}")),
        }
    }
    for name in secrets {
        match ctx.client.api::<Secret>(Some(ns)).get(&name).await {
            Ok(s) => {
                sources.secrets.insert(name, env::secret_data(&s)?);
            }
            Err(e) if e.code() == Some(404) => {}
            Err(e) => return Err(format!("reading secret {name:?}: {e}")),
        }
    }
    let env = env::resolve(pod, &container, &sources, pod_ip, &ctx.host_ip)?;
    // Admission refuses bad values; a Pod stored by an older ketch may still have one.
    let knobs = PodAnnotations::parse(&pod.metadata.annotations).map_err(|errs| {
        errs.into_iter()
            .map(|(key, msg)| format!("annotation {key}: {msg}"))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let memory_limit = match container
        .resources
        .as_ref()
        .and_then(|r| r.limits.get("memory"))
    {
        None => None,
        Some(q) => Some(
            q.value()
                .ok()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| format!("resources.limits.memory: invalid quantity {:?}", q.0))?,
        ),
    };
    Ok(WorkloadSpec {
        namespace: ns.to_string(),
        pod_name: pref.name.clone(),
        pod_uid: pref.uid.clone(),
        container: name.to_string(),
        image: image.to_string(),
        app: ketch_workload::workload_identity(ns, &pod.metadata, &pref.name),
        env,
        memory_limit,
        request_timeout: knobs.request_timeout,
        max_concurrency: knobs.max_concurrency,
        allowed_outbound_hosts: knobs.allowed_outbound_hosts,
        output,
        services: Some(ctx.gateway.clone() as Arc<dyn ServiceCaller>),
        definition: Arc::new(container),
        pod_spec: Arc::new(pod.spec.clone().unwrap_or_default()),
        network,
        progress: {
            let (recorder, pref) = (ctx.recorder.clone(), pref.clone());
            Arc::new(move |m: String| {
                recorder.record(&pref, EventType::Normal, "Pulling", m);
            })
        },
    })
}

/// What container `i`'s registry image is — a Wasm component artifact or a container image
/// — from what this node already has (unless `imagePullPolicy: Always`), else from the
/// manifest's config media type (one registry request).
///
/// # Errors
/// `ErrImagePull` when the registry cannot say, `CreateContainerError` for a container
/// image on a node without containers.
pub(super) async fn resolve_runtime(
    ctx: &Ctx,
    pod: &Pod,
    i: usize,
    image: &str,
) -> Result<Runtime, StartError> {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.get(i))
        .and_then(|c| c.image_pull_policy.clone());
    let policy = PullPolicy::of(policy.as_deref(), image);
    let pull_err = |message: String| StartError {
        reason: StartReason::ErrImagePull,
        message,
    };
    let kind = if policy != PullPolicy::Always && ctx.wasm.has_image(image).await {
        ArtifactKind::Wasm
    } else if policy != PullPolicy::Always
        && let Some((rt, _)) = &ctx.containers
        && rt.has_image(image).await
    {
        ArtifactKind::Image
    } else if policy == PullPolicy::Never {
        return Err(pull_err(format!(
            "image {image} is not present on this node and imagePullPolicy is Never"
        )));
    } else {
        ketch_oci::wasm::resolve_kind(&ctx.registries, image)
            .await
            .map_err(|e| pull_err(e.to_string()))?
    };
    match kind {
        ArtifactKind::Wasm => Ok(Runtime::Wasm),
        ArtifactKind::Image if ctx.containers.is_some() => Ok(Runtime::Container),
        ArtifactKind::Image => Err(StartError {
            reason: StartReason::CreateContainerError,
            message: format!(
                "image {image} is a container image (not a Wasm component artifact with \
                 config media type {}), and this node does not run Linux containers \
                 (no containerd)",
                ketch_oci::wasm::CONFIG_MEDIA_TYPE
            ),
        }),
    }
}

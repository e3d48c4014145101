//! Which workload runtime a Pod needs: the scheduler places it on a node that offers that
//! runtime (`status.runtimeHandlers`), and the node agent starts it with that runtime.

use std::fmt;

use crate::core::PodSpec;

/// The runtime class name that forces the Wasm runtime.
pub const WASM_RUNTIME_CLASS: &str = "wasm";

/// Which workload runtime a pod needs; nodes advertise theirs in `status.runtimeHandlers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Wasm,
    Container,
}

impl Runtime {
    /// The `runtimeHandlers[].name` a node lists when it offers this runtime.
    pub fn handler_name(self) -> &'static str {
        match self {
            Runtime::Wasm => "wasm",
            Runtime::Container => "container",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.handler_name())
    }
}

/// The runtime a pod needs, deciding Wasm images by [`is_local_wasm_reference`]: a Pod of
/// registry references counts as a container Pod here (the scheduler refines that with
/// [`placement_runtime`], the agent by the artifact's media type).
pub fn pod_runtime(spec: &PodSpec) -> Runtime {
    pod_runtime_with(spec, is_local_wasm_reference)
}

/// The runtime a pod needs, with the image classifier supplied by the caller.
///
/// `runtimeClassName: wasm` always wins; otherwise the pod is Wasm only if it has
/// containers and every one (init containers included) is a Wasm image.
pub fn pod_runtime_with(spec: &PodSpec, is_wasm_image: impl Fn(&str) -> bool) -> Runtime {
    if spec.runtime_class_name.as_deref() == Some(WASM_RUNTIME_CLASS) {
        return Runtime::Wasm;
    }
    let mut all = spec
        .containers
        .iter()
        .chain(&spec.init_containers)
        .peekable();
    if all.peek().is_none() {
        return Runtime::Container;
    }
    if all.all(|c| c.image.as_deref().is_some_and(&is_wasm_image)) {
        Runtime::Wasm
    } else {
        Runtime::Container
    }
}

/// How a Pod's runtime is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeChoice {
    /// From the spec alone: `runtimeClassName: wasm`, local `.wasm` files, or no containers.
    Known(Runtime),
    /// Every image is a registry reference and no runtime class is named: what the artifact
    /// is (a CNCF Wasm component or a container image, by its config media type) decides,
    /// and only the node that pulls it can tell.
    ByArtifact,
}

/// Every container's image (app containers, then init containers; `""` when unset).
fn images(spec: &PodSpec) -> Vec<&str> {
    spec.containers
        .iter()
        .chain(&spec.init_containers)
        .map(|c| c.image.as_deref().unwrap_or(""))
        .collect()
}

/// How `spec`'s runtime is decided (see [`RuntimeChoice`]).
pub fn pod_runtime_choice(spec: &PodSpec) -> RuntimeChoice {
    if spec.runtime_class_name.as_deref() == Some(WASM_RUNTIME_CLASS) {
        return RuntimeChoice::Known(Runtime::Wasm);
    }
    let images = images(spec);
    if images.is_empty() || images.iter().any(|i| i.is_empty()) {
        return RuntimeChoice::Known(Runtime::Container);
    }
    if images.iter().all(|i| is_local_wasm_reference(i)) {
        RuntimeChoice::Known(Runtime::Wasm)
    } else if images.iter().any(|i| is_local_wasm_reference(i)) {
        // Mixed: validation rejects it; a container Pod if it gets here.
        RuntimeChoice::Known(Runtime::Container)
    } else {
        RuntimeChoice::ByArtifact
    }
}

/// The runtime the scheduler places a Pod for. A [`RuntimeChoice::ByArtifact`] Pod needs a
/// node offering Linux containers whenever the cluster has one: such a node runs either kind
/// of artifact, while a Wasm-only node would have to refuse a container image after binding.
/// In a cluster without container nodes it is placed as Wasm, so a Wasm artifact needs no
/// `runtimeClassName` there either.
pub fn placement_runtime(choice: RuntimeChoice, cluster_offers_containers: bool) -> Runtime {
    match choice {
        RuntimeChoice::Known(r) => r,
        RuntimeChoice::ByArtifact if cluster_offers_containers => Runtime::Container,
        RuntimeChoice::ByArtifact => Runtime::Wasm,
    }
}

/// A local Wasm module reference: `file:...` or a path ending in `.wasm`.
pub fn is_local_wasm_reference(image: &str) -> bool {
    image.starts_with("file:") || image.ends_with(".wasm")
}

/// The index of the first container (init containers after the app containers) whose image
/// is a local Wasm module while another one is not: a Pod cannot mix the two runtimes (a
/// Wasm component runs in the agent's process, a Linux container in its own network
/// namespace, so they could not share the Pod's network as Kubernetes sidecars do).
pub fn mixed_runtime_container(spec: &PodSpec) -> Option<usize> {
    if spec.runtime_class_name.as_deref() == Some(WASM_RUNTIME_CLASS) {
        return None;
    }
    let images = images(spec);
    let wasm = images.iter().position(|i| is_local_wasm_reference(i))?;
    let other = images.iter().position(|i| !is_local_wasm_reference(i))?;
    Some(wasm.max(other))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Container;

    fn spec(images: &[&str], class: Option<&str>) -> PodSpec {
        PodSpec {
            runtime_class_name: class.map(str::to_string),
            containers: images
                .iter()
                .enumerate()
                .map(|(i, image)| Container {
                    name: format!("c{i}"),
                    image: Some(image.to_string()),
                    ..Container::default()
                })
                .collect(),
            ..PodSpec::default()
        }
    }

    #[test]
    fn registry_references_are_decided_by_the_artifact() {
        use RuntimeChoice::*;
        let choice = |images: &[&str], class| pod_runtime_choice(&spec(images, class));
        assert_eq!(choice(&["127.0.0.1:5000/app:1"], None), ByArtifact);
        assert_eq!(
            choice(&["ghcr.io/a/b@sha256:00", "busybox"], None),
            ByArtifact
        );
        assert_eq!(
            choice(&["127.0.0.1:5000/app:1"], Some("wasm")),
            Known(Runtime::Wasm)
        );
        assert_eq!(choice(&["file:/a.wasm"], None), Known(Runtime::Wasm));
        assert_eq!(
            choice(&["file:/a.wasm", "busybox"], None),
            Known(Runtime::Container)
        );
        assert_eq!(choice(&[], None), Known(Runtime::Container));
        assert_eq!(choice(&[""], None), Known(Runtime::Container));
    }

    #[test]
    fn artifact_pods_go_to_container_nodes_when_there_are_any() {
        use RuntimeChoice::*;
        assert_eq!(placement_runtime(ByArtifact, true), Runtime::Container);
        assert_eq!(placement_runtime(ByArtifact, false), Runtime::Wasm);
        assert_eq!(placement_runtime(Known(Runtime::Wasm), true), Runtime::Wasm);
        assert_eq!(
            placement_runtime(Known(Runtime::Container), false),
            Runtime::Container
        );
    }
}

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

/// The runtime a pod needs, deciding Wasm images by [`is_local_wasm_reference`].
pub fn pod_runtime(spec: &PodSpec) -> Runtime {
    pod_runtime_with(spec, is_local_wasm_reference)
}

/// The runtime a pod needs, with the image classifier supplied by the caller.
///
/// This is the hook for registry images: once image references are resolved to a manifest,
/// pass a classifier that answers from the media type (`application/wasm` layers) instead of
/// the reference's spelling. `runtimeClassName: wasm` always wins; otherwise the pod is Wasm
/// only if it has containers and every one (init containers included) is a Wasm image.
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
    let images: Vec<&str> = spec
        .containers
        .iter()
        .chain(&spec.init_containers)
        .map(|c| c.image.as_deref().unwrap_or(""))
        .collect();
    let wasm = images.iter().position(|i| is_local_wasm_reference(i))?;
    let other = images.iter().position(|i| !is_local_wasm_reference(i))?;
    Some(wasm.max(other))
}

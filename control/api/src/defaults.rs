//! What admission adds to a Pod, as Kubernetes' mutating admission plugins do: the
//! `NoExecute` tolerations of [`TAINT_NOT_READY`] and [`TAINT_UNREACHABLE`] with a time limit
//! (the DefaultTolerationSeconds plugin), so a Pod on a node that died is evicted and
//! replaced after that many seconds.
//!
//! ketch's limits depend on the runtime, because what a replacement costs does:
//! - a Wasm Pod starts in milliseconds on any node and keeps no local state:
//!   [`WASM_TOLERATION_SECONDS`] (2 s), on top of the node's detection time;
//! - a Linux container may hold local state and pays an image pull on its new node:
//!   [`CONTAINER_TOLERATION_SECONDS`] (30 s; Kubernetes uses 300 s). A Pod of registry
//!   references, whose runtime only its node learns, counts as a container here.
//!
//! A Pod that tolerates either taint for `NoExecute` already keeps its own toleration.

use crate::core::{PodSpec, Toleration};
use crate::runtime::{Runtime, RuntimeChoice, pod_runtime_choice};
use crate::wellknown::{TAINT_NOT_READY, TAINT_UNREACHABLE};

/// Seconds a Wasm Pod stays bound to a not-ready or unreachable node.
pub const WASM_TOLERATION_SECONDS: i64 = 2;
/// Seconds a container Pod stays bound to a not-ready or unreachable node.
pub const CONTAINER_TOLERATION_SECONDS: i64 = 30;

/// Adds the default `NoExecute` tolerations a Pod lacks (idempotent).
pub fn pod_tolerations(spec: &mut PodSpec) {
    let seconds = match pod_runtime_choice(spec) {
        RuntimeChoice::Known(Runtime::Wasm) => WASM_TOLERATION_SECONDS,
        RuntimeChoice::Known(Runtime::Container) | RuntimeChoice::ByArtifact => {
            CONTAINER_TOLERATION_SECONDS
        }
    };
    for key in [TAINT_NOT_READY, TAINT_UNREACHABLE] {
        let covered = spec.tolerations.iter().any(|t| {
            let key_matches = match t.key.as_deref() {
                None | Some("") => t.operator.as_deref() == Some("Exists"),
                Some(k) => k == key,
            };
            let effect_matches = matches!(t.effect.as_deref(), None | Some("") | Some("NoExecute"));
            key_matches && effect_matches
        });
        if !covered {
            spec.tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                value: None,
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(seconds),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Container;

    fn spec(image: &str) -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn seconds(spec: &PodSpec, key: &str) -> Option<i64> {
        spec.tolerations
            .iter()
            .find(|t| t.key.as_deref() == Some(key))
            .and_then(|t| t.toleration_seconds)
    }

    #[test]
    fn wasm_pods_tolerate_a_dead_node_for_seconds_and_containers_longer() {
        let mut wasm = spec("file:/apps/hello.wasm");
        pod_tolerations(&mut wasm);
        assert_eq!(
            seconds(&wasm, TAINT_NOT_READY),
            Some(WASM_TOLERATION_SECONDS)
        );
        assert_eq!(
            seconds(&wasm, TAINT_UNREACHABLE),
            Some(WASM_TOLERATION_SECONDS)
        );
        assert_eq!(wasm.tolerations[0].effect.as_deref(), Some("NoExecute"));
        assert_eq!(wasm.tolerations[0].operator.as_deref(), Some("Exists"));
        let mut container = spec("registry.example/db:16");
        pod_tolerations(&mut container);
        assert_eq!(
            seconds(&container, TAINT_UNREACHABLE),
            Some(CONTAINER_TOLERATION_SECONDS)
        );
        // Idempotent: admitted again (an update), nothing is added twice.
        pod_tolerations(&mut container);
        assert_eq!(container.tolerations.len(), 2);
    }

    #[test]
    fn a_pods_own_toleration_is_kept() {
        let mut own = spec("file:/apps/hello.wasm");
        own.tolerations.push(Toleration {
            key: Some(TAINT_UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(600),
            ..Default::default()
        });
        pod_tolerations(&mut own);
        assert_eq!(seconds(&own, TAINT_UNREACHABLE), Some(600));
        assert_eq!(
            seconds(&own, TAINT_NOT_READY),
            Some(WASM_TOLERATION_SECONDS)
        );
        // Tolerating everything (an empty key with Exists) covers both.
        let mut all = spec("file:/apps/hello.wasm");
        all.tolerations.push(Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        });
        pod_tolerations(&mut all);
        assert_eq!(all.tolerations.len(), 1);
    }
}

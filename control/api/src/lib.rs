//! The ketch object model: Kubernetes-shaped API types, validation and manifest decoding.
//!
//! This crate is pure data and logic — no IO, no async — so the API server, the CLI, the
//! controllers and the tests all agree on exactly one definition of what an object looks like
//! and what makes it valid.
//!
//! * [`meta`], [`core`], [`apps`], [`coordination`], [`discovery`], [`networking`], [`policy`], [`rbac`]: serde types with the exact Kubernetes JSON
//!   shape. Every object struct denies unknown fields, so a manifest using a feature ketch does not
//!   implement is rejected by name instead of silently ignored.
//! * [`authorization`]: the access reviews (`authorization.k8s.io/v1`) and the whoami review
//!   (`authentication.k8s.io/v1`), request bodies the server answers and never stores.
//! * [`quantity`] and [`selector`]: the two mini-languages of the API (`500m`, `app in (a,b)`).
//! * [`validation`]: field checks with Kubernetes' wording (`spec.replicas: Invalid value: ...`).
//! * [`podsecurity`]: Pod Security admission, the Pod Security Standards' levels as a pure
//!   check of a pod spec, chosen per namespace by a label.
//! * [`runtime`]: which workload runtime (Wasm or Linux container) a Pod needs.
//! * [`resource`]: the table of served resources and the [`Resource`] trait.
//! * [`decode`]: YAML/JSON parsing with positions and [`decode::admit`], the single admission gate.
//! * [`defaults`]: what admission adds to a Pod (the tolerations of a dead node).
//! * [`heartbeat`]: the node heartbeat's path and answer.
//! * [`env`]: a container's environment resolved from its Pod, ConfigMaps and Secrets, and
//!   `$(VAR)` expansion, as the kubelet does it.
//! * [`wellknown`]: every `ketch.dev/…` annotation, label and resource name, and the Pod
//!   annotations' parsing (shared by admission and the agent).
//! * [`format`] and [`time`]: the human spellings (`30s`, `64Mi`, an error chain) and the
//!   timestamps (`Time`, `MicroTime`) every crate writes.
//! * [`params`]: the query parameters (`labelSelector`, `watch`, `tailLines`, …), serialized by
//!   the client and parsed by the servers, so each name is written once.

pub mod apps;
pub mod authorization;
mod bounded_yaml;
pub mod coordination;
pub mod core;
pub mod decode;
pub mod defaults;
pub mod discovery;
pub mod env;
pub mod format;
#[cfg(test)]
mod fuzz;
pub mod heartbeat;
pub mod meta;
pub mod networking;
pub mod params;
pub mod podsecurity;
pub mod policy;
pub mod quantity;
pub mod rbac;
pub mod resource;
pub mod runtime;
pub mod selector;
pub mod time;
pub mod validation;
pub mod wellknown;

pub use decode::{Invalid, ParseError, admit, parse_documents};
pub use meta::{ObjectList, ObjectMeta, Status, WatchEvent};
pub use quantity::Quantity;
pub use resource::{RESOURCES, Resource, ResourceInfo};
pub use selector::{LabelSelector, Selector};
pub use validation::FieldError;

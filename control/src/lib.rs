//! The ketch control plane: the replicated object store (openraft + redb) and the
//! Kubernetes-shaped API server in front of it. Scheduler and controllers join here; they
//! talk to the store only through the API.

pub mod attrs;
pub mod authz;
pub mod controllers;
/// Private files and directories: shared with the agent and the client config, so it lives
/// in the client crate.
pub use ketch_client::files;
#[cfg(test)]
mod fuzz;
pub mod liveness;
pub mod runner;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod watch;

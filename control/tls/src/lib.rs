//! The cluster's PKI and TLS.
//!
//! Every ketch connection is TLS 1.2+/rustls with the `ring` provider, verified against one
//! cluster CA that the first server makes ([`ClusterCa`]). Who a peer is comes from its
//! certificate as in Kubernetes (CN = user, O = groups, [`identity_of`]): servers are
//! `system:ketch-server:<id>` in `system:ketch-servers`, nodes `system:node:<name>` in
//! `system:nodes`. Joining servers and agents never send the admin token: they prove a
//! short-lived join token ([`JoinToken`], which also pins the CA by its SHA-256, as k3s and
//! kubeadm do) and get a certificate for a key that never leaves them ([`csr`]).
//!
//! [`serve`] is the TLS listener the API server, the agent endpoint and the gateway's
//! internal port share: it hands the verified client identity to handlers as a request
//! extension ([`PeerIdentity`]).

mod ca;
mod config;
mod identity;
mod limits;
mod pinned;
mod serve;
mod token;

pub use ca::{ClusterCa, Issued, Usage, csr, first_cert_der, sha256_hex};
pub use config::{ClientAuth, client_config, server_config};
pub use identity::{
    Identity, NODES_GROUP, SERVERS_GROUP, identity_of, node_identity, server_identity,
};
pub use limits::{
    CLIENT_POOL_IDLE, ConnectionSlots, H2_KEEPALIVE, HEADER_READ_TIMEOUT, ListenerLimits,
};
pub use pinned::pinned_client_config;
/// The rustls this crate's configs are for, so dependents name the same one.
pub use rustls;
pub use serve::{PeerIdentity, serve};
pub use token::JoinToken;

/// What can go wrong making or loading certificates and TLS configs.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what}: {why}")]
    Pem { what: String, why: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("join token: {0}")]
    Token(String),
}

/// Make ring the process's default rustls provider, once. reqwest 0.13 (built without a
/// provider, so aws-lc-sys is never compiled) asks for the default one whenever a client is
/// built without a config of ours, even for plain `http://`; without one it panics.
pub fn install_default_provider() {
    // Err means one is installed already (ours, or another library's): fine either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The crypto provider every config here is built with: ring (no aws-lc-sys to build), and
/// no process-wide default to depend on.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

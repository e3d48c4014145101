//! Who a certificate names.

use x509_parser::prelude::{FromDer as _, X509Certificate};

/// The group of every control-plane server (raft peers).
pub const SERVERS_GROUP: &str = "system:ketch-servers";
/// The group of every node (agents), as Kubernetes names it.
pub const NODES_GROUP: &str = "system:nodes";

/// A user name and its groups: a certificate's CN and O attributes, as the Kubernetes API
/// server reads client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
}

/// The identity of server `id` (its raft node id).
pub fn server_identity(id: u64) -> Identity {
    Identity {
        name: format!("system:ketch-server:{id}"),
        groups: vec![SERVERS_GROUP.into()],
    }
}

/// The identity of node `name`.
pub fn node_identity(name: &str) -> Identity {
    Identity {
        name: format!("system:node:{name}"),
        groups: vec![NODES_GROUP.into()],
    }
}

impl Identity {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node name when this is a node's identity.
    pub fn node_name(&self) -> Option<&str> {
        self.name
            .strip_prefix("system:node:")
            .filter(|_| self.in_group(NODES_GROUP))
    }
}

/// The identity a DER certificate names, or `None` when it cannot be parsed or has no CN.
/// Only call this on a certificate rustls has verified against the cluster CA.
pub fn identity_of(der: &[u8]) -> Option<Identity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Identity { name, groups })
}

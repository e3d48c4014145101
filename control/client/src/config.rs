//! The client config file (like a kubeconfig): which servers to talk to, the cluster CA
//! that verifies them, and the credential (a token, or a client certificate and key).
//!
//! Location: `$KETCH_CONFIG`, else `~/.ketch/config`. Written by `ketch server` on first
//! start (mode 0600, it holds a credential).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    /// API server base URLs, e.g. `https://127.0.0.1:6443`. The first is tried first.
    pub servers: Vec<String>,
    /// Bearer token sent on every request (empty: the client certificate is the
    /// credential).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// The cluster CA (PEM): the only authority the servers' certificates are checked
    /// against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    /// A client certificate (PEM) and its key, when that is the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

/// What a client verifies servers with, and the certificate it presents.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM.
    pub certificate_authority: String,
    pub client_certificate: Option<String>,
    pub client_key: Option<String>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("client_certificate", &self.client_certificate.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// The TLS settings this config holds, if it names a CA.
    pub fn tls(&self) -> Option<TlsSettings> {
        Some(TlsSettings {
            certificate_authority: self.certificate_authority.clone()?,
            client_certificate: self.client_certificate.clone(),
            client_key: self.client_key.clone(),
        })
    }

    /// `$KETCH_CONFIG`, else `~/.ketch/config`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("KETCH_CONFIG").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        home.join(".ketch").join("config")
    }

    /// # Errors
    /// [`Error::Config`] when the file is missing or malformed (naming the file).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let cfg: ClientConfig = serde_yaml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if cfg.servers.is_empty() {
            return Err(Error::Config(format!(
                "{}: servers: must list at least one server",
                path.display()
            )));
        }
        if cfg.client_certificate.is_some() != cfg.client_key.is_some() {
            return Err(Error::Config(format!(
                "{}: clientCertificate and clientKey go together",
                path.display()
            )));
        }
        Ok(cfg)
    }

    /// Write the config with mode 0600, creating parent directories.
    ///
    /// # Errors
    /// [`Error::Config`] on IO failure.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let fail = |e: std::io::Error| Error::Config(format!("{}: {e}", path.display()));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        let text = serde_yaml::to_string(self).map_err(|e| Error::Config(e.to_string()))?;
        crate::files::write_private(path, text.as_bytes()).map_err(fail)
    }
}

//! The client config file (like a kubeconfig): which servers to talk to and the token.
//!
//! Location: `$KETCH_CONFIG`, else `~/.ketch/config`. Written by `ketch server` on first
//! start (mode 0600, it holds a credential).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    /// API server base URLs, e.g. `http://127.0.0.1:6443`. The first is tried first.
    pub servers: Vec<String>,
    /// Bearer token sent on every request.
    pub token: String,
}

impl ClientConfig {
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
        Ok(cfg)
    }

    /// Write the config with mode 0600, creating parent directories.
    ///
    /// # Errors
    /// [`Error::Config`] on IO failure.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let fail = |e: std::io::Error| Error::Config(format!("{}: {e}", path.display()));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        let text = serde_yaml::to_string(self).map_err(|e| Error::Config(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }
}

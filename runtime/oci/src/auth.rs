//! Registry credentials from a Docker-style `config.json`, the file `docker login`, `podman
//! login` and `skopeo login` write. One lookup serves every pull (containers and Wasm) and
//! `ketch push`.
//!
//! Supported: `auths.<host>.auth` (base64 `user:password`), `auths.<host>.username` +
//! `password`, and `auths.<host>.registrytoken` (a bearer token). oci-client does the
//! registry's token exchange itself when a registry answers with a bearer challenge. Not
//! supported yet, and reported as such instead of pulling anonymously: credential helpers
//! (`credsStore`, `credHelpers`) and `identitytoken` (an OAuth refresh token).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

/// Why credentials could not be read for a registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("reading the registry config {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("registry config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("registry config {}: auths.{host:?}: {message}", path.display())]
    Entry {
        path: PathBuf,
        host: String,
        message: String,
    },
    #[error("not supported yet: {what} (in {})", path.display())]
    Unsupported { what: String, path: PathBuf },
}

/// The parts of a Docker `config.json` ketch reads (everything else is ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    auths: HashMap<String, RawEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// A parsed registry config.
#[derive(Debug, Default)]
pub struct DockerConfig {
    /// Where it was read from (for messages); `None` when there was no file.
    path: Option<PathBuf>,
    raw: RawConfig,
}

/// `docker.io`'s many spellings all mean one registry.
const DOCKER_HUB_ALIASES: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// The registry a config key or reference names, as `host[:port]` in lower case: the scheme
/// and any path are dropped (`https://index.docker.io/v1/` → `docker.io`) and Docker Hub's
/// aliases become `docker.io`.
pub fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        "docker.io".to_string()
    } else {
        host
    }
}

/// The config file used when none is named: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

impl DockerConfig {
    /// Parses the text of a config file read from `path`.
    ///
    /// # Errors
    /// [`AuthError::Parse`] for malformed JSON, naming the file.
    pub fn parse(path: &Path, text: &str) -> Result<Self, AuthError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| AuthError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(DockerConfig {
            path: Some(path.to_path_buf()),
            raw,
        })
    }

    /// Reads `explicit` (which must exist), or the default location (which may be absent: then
    /// every registry is anonymous).
    ///
    /// # Errors
    /// [`AuthError::Read`] / [`AuthError::Parse`].
    pub fn load(explicit: Option<&Path>) -> Result<Self, AuthError> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => match default_config_path() {
                Some(p) => (p, false),
                None => return Ok(DockerConfig::default()),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&path, &text),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(DockerConfig::default())
            }
            Err(e) => Err(AuthError::Read {
                path,
                message: e.to_string(),
            }),
        }
    }

    fn path(&self) -> PathBuf {
        self.path.clone().unwrap_or_default()
    }

    /// The credentials for `registry` (`host[:port]`, as in an image reference).
    ///
    /// # Errors
    /// [`AuthError::Unsupported`] when the config hands this registry to a credential helper
    /// or holds only an identity token; [`AuthError::Entry`] for an undecodable `auth`.
    pub fn auth_for(&self, registry: &str) -> Result<RegistryAuth, AuthError> {
        let want = normalize_host(registry);
        if let Some((key, helper)) = self
            .raw
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_host(k) == want)
        {
            return Err(AuthError::Unsupported {
                what: format!("credential helpers (credHelpers.{key:?} = {helper:?})"),
                path: self.path(),
            });
        }
        // An exact key wins over another spelling of the same registry.
        let entry = self
            .raw
            .auths
            .get(registry)
            .map(|e| (registry, e))
            .or_else(|| {
                self.raw
                    .auths
                    .iter()
                    .find(|(k, _)| normalize_host(k) == want)
                    .map(|(k, e)| (k.as_str(), e))
            });
        if let Some((key, entry)) = entry
            && let Some(auth) = self.entry_auth(key, entry)?
        {
            return Ok(auth);
        }
        if let Some(store) = &self.raw.creds_store {
            return Err(AuthError::Unsupported {
                what: format!("credential helpers (credsStore {store:?})"),
                path: self.path(),
            });
        }
        Ok(RegistryAuth::Anonymous)
    }

    fn entry_auth(&self, key: &str, e: &RawEntry) -> Result<Option<RegistryAuth>, AuthError> {
        let entry_err = |message: String| AuthError::Entry {
            path: self.path(),
            host: key.to_string(),
            message,
        };
        if let Some(token) = e.registrytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(RegistryAuth::Bearer(token.to_string())));
        }
        if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|err| entry_err(format!("auth is not base64: {err}")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| entry_err("auth does not decode to UTF-8 text".into()))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| entry_err("auth must encode \"username:password\"".into()))?;
            return Ok(Some(RegistryAuth::Basic(
                user.to_string(),
                pass.to_string(),
            )));
        }
        if let Some(user) = e.username.as_deref().filter(|u| !u.is_empty()) {
            return Ok(Some(RegistryAuth::Basic(
                user.to_string(),
                e.password.clone().unwrap_or_default(),
            )));
        }
        if e.identitytoken.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(AuthError::Unsupported {
                what: format!("identity tokens (auths.{key:?}.identitytoken)"),
                path: self.path(),
            });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> DockerConfig {
        DockerConfig::parse(Path::new("/cfg/config.json"), json).unwrap()
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn basic(u: &str, p: &str) -> RegistryAuth {
        RegistryAuth::Basic(u.into(), p.into())
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_host("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_host("Docker.IO"), "docker.io");
        assert_eq!(normalize_host("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize_host("ghcr.io/v2/"), "ghcr.io");
    }

    #[test]
    fn basic_auth_from_the_auth_field_or_username_and_password() {
        let c = cfg(&format!(
            r#"{{"auths": {{
                "127.0.0.1:5001": {{"auth": "{}"}},
                "https://index.docker.io/v1/": {{"username": "bob", "password": "pw"}}
            }}}}"#,
            b64("alice:s3cr:et")
        ));
        // The password may contain ':' — only the first one splits.
        assert_eq!(
            c.auth_for("127.0.0.1:5001").unwrap(),
            basic("alice", "s3cr:et")
        );
        assert_eq!(c.auth_for("docker.io").unwrap(), basic("bob", "pw"));
        assert_eq!(c.auth_for("index.docker.io").unwrap(), basic("bob", "pw"));
    }

    #[test]
    fn the_port_is_part_of_the_registry() {
        let c = cfg(&format!(
            r#"{{"auths": {{"localhost:5001": {{"auth": "{}"}}}}}}"#,
            b64("a:b")
        ));
        assert_eq!(c.auth_for("localhost:5001").unwrap(), basic("a", "b"));
        assert_eq!(
            c.auth_for("localhost:5000").unwrap(),
            RegistryAuth::Anonymous
        );
        assert_eq!(c.auth_for("localhost").unwrap(), RegistryAuth::Anonymous);
    }

    #[test]
    fn no_entry_or_no_file_is_anonymous() {
        assert_eq!(
            cfg("{}").auth_for("ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        );
        let missing = DockerConfig::default();
        assert_eq!(
            missing.auth_for("ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn registry_tokens_are_bearer_tokens() {
        let c = cfg(r#"{"auths": {"ghcr.io": {"registrytoken": "tok"}}}"#);
        assert_eq!(
            c.auth_for("ghcr.io").unwrap(),
            RegistryAuth::Bearer("tok".into())
        );
    }

    #[test]
    fn credential_helpers_are_reported_not_ignored() {
        let c = cfg(r#"{"auths": {"ghcr.io": {}}, "credsStore": "desktop"}"#);
        let e = c.auth_for("ghcr.io").unwrap_err();
        assert_eq!(
            e.to_string(),
            "not supported yet: credential helpers (credsStore \"desktop\") (in /cfg/config.json)"
        );
        let c = cfg(r#"{"credHelpers": {"gcr.io": "gcloud"}}"#);
        assert!(matches!(
            c.auth_for("gcr.io"),
            Err(AuthError::Unsupported { .. })
        ));
        // Another registry is not handed to the helper.
        assert_eq!(c.auth_for("ghcr.io").unwrap(), RegistryAuth::Anonymous);
        // Explicit credentials win over a default store.
        let c = cfg(&format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}, "credsStore": "pass"}}"#,
            b64("u:p")
        ));
        assert_eq!(c.auth_for("ghcr.io").unwrap(), basic("u", "p"));
    }

    #[test]
    fn bad_entries_name_the_file_and_the_host() {
        let c = cfg(r#"{"auths": {"ghcr.io": {"auth": "!!!"}}}"#);
        let e = c.auth_for("ghcr.io").unwrap_err().to_string();
        assert!(
            e.contains("/cfg/config.json") && e.contains("ghcr.io"),
            "{e}"
        );
        let c = cfg(&format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
            b64("nocolon")
        ));
        assert!(
            c.auth_for("ghcr.io")
                .unwrap_err()
                .to_string()
                .contains("username:password")
        );
        let c = cfg(r#"{"auths": {"ghcr.io": {"identitytoken": "x"}}}"#);
        assert!(matches!(
            c.auth_for("ghcr.io"),
            Err(AuthError::Unsupported { .. })
        ));
        let e = DockerConfig::parse(Path::new("/x.json"), "{")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x.json"), "{e}");
    }

    #[test]
    fn an_explicit_file_must_exist() {
        let e = DockerConfig::load(Some(Path::new("/nonexistent/ketch/config.json"))).unwrap_err();
        assert!(matches!(e, AuthError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/ketch/config.json"));
    }
}

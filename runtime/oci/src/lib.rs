//! `ketch-oci` is ketch's OCI registry client, shared by container image pulls
//! (`ketch-containers`), Wasm artifact pulls ([`wasm`]) and `ketch push`: which protocol a
//! registry is spoken to with, its credentials ([`auth`]), bounded pull-progress reporting
//! ([`Progress`]), and the CNCF Wasm artifact layout (push, pull into a store by digest,
//! what kind of artifact a reference names). It knows nothing of the agent: `ketch push`
//! links this crate, not the node.

pub mod auth;
pub mod wasm;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

pub use auth::{AuthError, DockerConfig};

/// How ketch reaches registries: plain HTTP for loopback ones (as Docker does) and those
/// named insecure, HTTPS otherwise; credentials from a Docker-style config file.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// Extra `host:port` registries reached over plain HTTP.
    insecure: Vec<String>,
    /// Every registry over plain HTTP (`ketch push --insecure`).
    all_insecure: bool,
    /// The config file named on the command line; `None`: the Docker default location.
    config: Option<PathBuf>,
}

/// Whether `registry` (`host[:port]`) is on a loopback address, where plain HTTP is used as
/// Docker does.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(v6) = registry.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Registries {
    /// `insecure`: extra `host:port` registries reached over plain HTTP; `config`: a Docker
    /// `config.json` to read credentials from instead of the default location.
    pub fn new(insecure: Vec<String>, config: Option<PathBuf>) -> Self {
        Registries {
            insecure,
            all_insecure: false,
            config,
        }
    }

    /// Speaks plain HTTP to every registry.
    #[must_use]
    pub fn all_insecure(mut self) -> Self {
        self.all_insecure = true;
        self
    }

    /// Whether `registry` is spoken to over plain HTTP.
    pub fn plain_http(&self, registry: &str) -> bool {
        self.all_insecure
            || is_loopback_registry(registry)
            || self
                .insecure
                .iter()
                .any(|r| auth::normalize_host(r) == auth::normalize_host(registry))
    }

    /// A client for one operation on `reference`, with the registry's credentials. A fresh
    /// client each time: oci-client keeps the first credentials it saw per registry, and the
    /// config file is re-read so a `docker login` applies without restarting the agent.
    ///
    /// # Errors
    /// [`AuthError`] when the config cannot be read or names an unsupported credential source.
    pub fn client(&self, reference: &Reference) -> Result<(Client, RegistryAuth), AuthError> {
        let registry = reference.resolve_registry();
        let auth = DockerConfig::load(self.config.as_deref())?.auth_for(registry)?;
        // rustls needs a process-wide crypto provider; ring is the one built in (see the
        // workspace Cargo.toml). Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if self.plain_http(registry) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        Ok((client, auth))
    }
}

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// Kubernetes' default: `Always` for `:latest` or an untagged reference, otherwise
    /// `IfNotPresent`.
    pub fn of(policy: Option<&str>, image: &str) -> PullPolicy {
        match policy {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            _ => {
                let last = image.rsplit('/').next().unwrap_or(image);
                if image.contains('@') {
                    PullPolicy::IfNotPresent
                } else if !last.contains(':') || last.ends_with(":latest") {
                    PullPolicy::Always
                } else {
                    PullPolicy::IfNotPresent
                }
            }
        }
    }
}

/// One async mutex per key (an image reference, a digest): concurrent pulls of one thing
/// wait for each other, and the later ones find it present.
#[derive(Debug, Default)]
pub struct KeyedLocks(tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    /// The lock of `key` (made on first use).
    pub async fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0
            .lock()
            .await
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// How often one blob's download may be reported at most.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(3);

/// Decides when a blob download is worth an Event: when it crosses 25, 50, 75 or 100 %, and
/// only if [`PROGRESS_INTERVAL`] has passed since the download began or was last reported.
/// So a blob yields at most four Events, a fast one none (the `Pulled` Event covers it).
#[derive(Debug, Clone)]
pub struct Progress {
    total: u64,
    done: u64,
    /// Quarters reported or skipped so far (0–4).
    quarter: u64,
    last: Instant,
}

impl Progress {
    /// A download of `total` bytes starting at `now`.
    pub fn new(total: u64, now: Instant) -> Self {
        Progress {
            total,
            done: 0,
            quarter: 0,
            last: now,
        }
    }

    /// Counts `n` more bytes at `now`; `Some(percent)` when that is worth reporting.
    pub fn advance(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.done = self.done.saturating_add(n);
        if self.total == 0 {
            return None;
        }
        let quarter = (self.done.min(self.total) * 4 / self.total).min(4);
        if quarter <= self.quarter {
            return None;
        }
        self.quarter = quarter;
        if now.saturating_duration_since(self.last) < PROGRESS_INTERVAL {
            return None;
        }
        self.last = now;
        Some(quarter * 25)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognized() {
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("localhost:5000"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("ghcr.io"));
        assert!(!is_loopback_registry("10.0.0.1:5000"));
    }

    #[test]
    fn plain_http_for_loopback_insecure_or_everything() {
        let r = Registries::new(vec!["reg.lan:5000".into()], None);
        assert!(r.plain_http("127.0.0.1:5000"));
        assert!(r.plain_http("reg.lan:5000"));
        assert!(!r.plain_http("reg.lan:5001"));
        assert!(!r.plain_http("ghcr.io"));
        assert!(r.clone().all_insecure().plain_http("ghcr.io"));
    }

    #[test]
    fn progress_reports_quarters_at_most_every_interval() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut p = Progress::new(100, t0);
        // A quarter within the first interval is skipped, not reported late.
        assert_eq!(p.advance(30, s(1)), None);
        assert_eq!(p.advance(25, s(4)), Some(50));
        assert_eq!(p.advance(10, s(5)), None); // 65 %: no new quarter
        assert_eq!(p.advance(10, s(6)), None); // 75 % but only 2 s after the last
        assert_eq!(p.advance(25, s(10)), Some(100));
        assert_eq!(p.advance(5, s(20)), None); // past 100 %: nothing more
    }

    #[test]
    fn a_fast_download_reports_nothing() {
        let t0 = Instant::now();
        let mut p = Progress::new(1 << 20, t0);
        assert_eq!(p.advance(1 << 20, t0 + Duration::from_millis(50)), None);
        let mut empty = Progress::new(0, t0);
        assert_eq!(empty.advance(0, t0 + Duration::from_secs(9)), None);
    }

    #[test]
    fn pull_policy_defaults_like_kubernetes() {
        assert_eq!(PullPolicy::of(None, "busybox"), PullPolicy::Always);
        assert_eq!(PullPolicy::of(None, "busybox:latest"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::of(None, "busybox:1.36"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::of(None, "127.0.0.1:5000/app"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::of(None, "127.0.0.1:5000/app@sha256:00"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(PullPolicy::of(Some("Never"), "x:latest"), PullPolicy::Never);
    }

    #[test]
    fn digests_are_sha256_hex() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

//! What the verbs share: the connection flags and the client they make, the `-n` flag, kind
//! names, signals, and absolute paths.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::Args;
use clap::builder::{PathBufValueParser, TypedValueParser};
use ketch_api::resource::{ResourceInfo, lookup};
use ketch_client::{Client, ClientConfig};

/// Where the API server is and how to authenticate: flags, then `KETCH_SERVER` /
/// `KETCH_TOKEN`, then the client config file.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// API server URL, e.g. https://127.0.0.1:6443, or a cluster's servers separated by
    /// commas (the CLI uses the first that answers; `ketch agent` moves to the next when
    /// one is unreachable)
    #[arg(long, global = true, env = "KETCH_SERVER")]
    pub server: Option<String>,
    /// Bearer token for the API server
    #[arg(long, global = true, env = "KETCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Client config file [default: $KETCH_CONFIG or ~/.ketch/config]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The cluster CA certificate (PEM) to verify servers with, instead of the client
    /// config's
    #[arg(long, global = true, env = "KETCH_CERTIFICATE_AUTHORITY", value_parser = absolute_path())]
    pub certificate_authority: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct Namespace {
    /// Namespace [default: default]
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
}

impl Namespace {
    /// The namespace named with `-n`, else `default`.
    pub fn or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

pub fn config_path(conn: &Connection) -> PathBuf {
    conn.config
        .clone()
        .unwrap_or_else(ClientConfig::default_path)
}

/// Where to connect and with what: `--server`/`--token`/`--certificate-authority` (or their
/// environment variables), else the client config file.
pub struct Resolved {
    pub servers: Vec<String>,
    /// Empty when the config's client certificate is the credential.
    pub token: String,
    pub tls: Option<ketch_client::TlsSettings>,
}

/// Resolve the connection flags against the client config file.
///
/// # Errors
/// No server or no credential configured, or an unreadable CA file.
pub fn resolve(conn: &Connection) -> anyhow::Result<Resolved> {
    let path = config_path(conn);
    let need_file = conn.server.is_none() || conn.token.is_none();
    let file = match ClientConfig::load(&path) {
        Ok(f) => Some(f),
        Err(e) if need_file => {
            return Err(anyhow::Error::new(e).context(
                "no server configured: start one with `ketch server`, or pass --server and --token (or KETCH_SERVER and KETCH_TOKEN)",
            ));
        }
        Err(_) => None,
    };
    let servers = conn
        .server
        .as_deref()
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .or_else(|| file.as_ref().map(|f| f.servers.clone()))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow!("no server configured"))?;
    let token = conn
        .token
        .clone()
        .or_else(|| file.as_ref().map(|f| f.token.clone()))
        .unwrap_or_default();
    let tls = match &conn.certificate_authority {
        Some(ca) => Some(ketch_client::TlsSettings {
            certificate_authority: std::fs::read_to_string(ca)
                .with_context(|| format!("--certificate-authority {}", ca.display()))?,
            client_certificate: None,
            client_key: None,
        }),
        None => file.as_ref().and_then(ClientConfig::tls),
    };
    let has_cert = tls.as_ref().is_some_and(|t| t.client_certificate.is_some());
    if token.is_empty() && !has_cert {
        return Err(anyhow!(
            "no credential configured: pass --token (or KETCH_TOKEN), or use a client config with a token or a client certificate"
        ));
    }
    Ok(Resolved {
        servers,
        token,
        tls,
    })
}

pub async fn client(conn: &Connection) -> anyhow::Result<Client> {
    let r = resolve(conn)?;
    Ok(Client::connect_any(&r.servers, &r.token, r.tls.as_ref(), PROBE).await?)
}

const PROBE: std::time::Duration = std::time::Duration::from_secs(2);

/// A kind as the user wrote it (plural, singular, short name or kind) → its resource.
pub fn resolve_kind(kind: &str) -> anyhow::Result<&'static ResourceInfo> {
    lookup(kind).ok_or_else(|| {
        anyhow!(
            "the server doesn't have a resource type {kind:?}; known: {}",
            ketch_api::resource::RESOURCES
                .iter()
                .map(|r| r.plural)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// The value parser of every path flag a node keeps (the data dirs of `server`, `up` and
/// `agent`, containerd's socket, the registry credentials): a relative path is made absolute
/// against the current directory when parsed, for every verb the same way. The agent hands
/// paths under its data dir to programs that run in another directory (the CNI plugins,
/// containerd's shims), where a relative path means another place, and the Pod network
/// refuses one (a relative `ketch up` default once turned containers off).
pub fn absolute_path() -> impl TypedValueParser<Value = PathBuf> {
    PathBufValueParser::new().try_map(|p| std::path::absolute(&p))
}

/// SIGTERM and SIGINT, caught from the moment this is created: create it before starting
/// anything, so a signal during startup stops the process cleanly instead of killing it.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT (including one that came before the call).
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn path_flags_are_made_absolute_against_the_current_dir() {
        let cmd = clap::Command::new("t").arg(
            clap::Arg::new("dir")
                .long("dir")
                .default_value(".ketch")
                .value_parser(absolute_path()),
        );
        let dir = |args: &[&str]| {
            let m = cmd.clone().try_get_matches_from(args).unwrap();
            m.get_one::<PathBuf>("dir").unwrap().clone()
        };
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(dir(&["t"]), cwd.join(".ketch"), "the default too");
        assert_eq!(dir(&["t", "--dir", "./data/x"]), cwd.join("data/x"));
        assert_eq!(
            dir(&["t", "--dir", "/var/lib/ketch"]),
            Path::new("/var/lib/ketch")
        );
    }
}

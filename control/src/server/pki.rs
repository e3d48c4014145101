//! A server's TLS material: the cluster CA in `<data-dir>/pki/`, the serving certificate
//! issued from it at every start (so new `--advertise` addresses or `--tls-san` names take
//! effect on restart), and the mutual-TLS client the server reaches peers and agents with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ketch_tls::{ClientAuth, ClusterCa, Identity, Issued, Usage};

use super::ServerError;
use super::auth::write_private;

/// The CA's files, under the data dir.
pub const PKI_DIR: &str = "pki";
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";

fn pki_err(path: &Path) -> impl Fn(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::DataDir {
        path: path.to_path_buf(),
        source,
    }
}

fn tls_err(e: ketch_tls::TlsError) -> ServerError {
    ServerError::Tls(e.to_string())
}

/// `<data-dir>/pki`, created 0700.
fn pki_dir(data_dir: &Path) -> Result<PathBuf, ServerError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = data_dir.join(PKI_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(pki_err(&dir))?;
    Ok(dir)
}

/// The CA stored in the data dir, if there is one.
///
/// # Errors
/// The files exist but cannot be read or parsed.
pub fn load_ca(data_dir: &Path) -> Result<Option<ClusterCa>, ServerError> {
    let dir = data_dir.join(PKI_DIR);
    let (cert, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let cert_pem = match std::fs::read_to_string(&cert) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(pki_err(&cert)(e)),
    };
    let key_pem = std::fs::read_to_string(&key).map_err(pki_err(&key))?;
    ClusterCa::from_pem(&cert_pem, &key_pem)
        .map(Some)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", dir.display())))
}

/// Keep `ca` in the data dir (the key 0600).
///
/// # Errors
/// IO errors writing the files.
pub fn save_ca(data_dir: &Path, cert_pem: &str, key_pem: &str) -> Result<(), ServerError> {
    let dir = pki_dir(data_dir)?;
    write_private(&dir.join(CA_KEY), key_pem.as_bytes()).map_err(pki_err(&dir))?;
    write_private(&dir.join(CA_CERT), cert_pem.as_bytes()).map_err(pki_err(&dir))?;
    Ok(())
}

/// The CA in the data dir, made on first start (also the first start of a data dir an older,
/// plaintext ketch wrote: a one-server cluster just moves to TLS).
///
/// # Errors
/// As [`load_ca`] and [`save_ca`].
pub fn load_or_create_ca(data_dir: &Path) -> Result<ClusterCa, ServerError> {
    if let Some(ca) = load_ca(data_dir)? {
        return Ok(ca);
    }
    let ca = ClusterCa::generate().map_err(tls_err)?;
    save_ca(data_dir, ca.cert_pem(), ca.key_pem())?;
    tracing::info!(hash = ca.hash(), "made the cluster CA");
    Ok(ca)
}

/// The names a server's certificate is valid for: loopback, this host's name, the listen
/// address (unless it is a wildcard), the advertised host, and `extra` (`--tls-san`).
pub fn server_sans(listen: SocketAddr, advertise: &str, extra: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = vec!["127.0.0.1".into(), "::1".into(), "localhost".into()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim().to_lowercase();
        if !h.is_empty() {
            sans.push(h);
        }
    }
    if !listen.ip().is_unspecified() {
        sans.push(listen.ip().to_string());
    }
    sans.push(host_of(advertise).to_string());
    sans.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| !s.is_empty() && seen.insert(s.clone()));
    sans
}

/// The host of `host:port`, `[v6]:port` or a bare host.
pub fn host_of(address: &str) -> &str {
    let a = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address);
    let a = a.split('/').next().unwrap_or(a);
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => a,
    }
}

/// What a running server holds: the CA (to issue certificates for joiners), its own
/// certificate, and the clients and listener config built from them.
pub struct ServerPki {
    pub ca: ClusterCa,
    pub identity: Identity,
    pub serving: Issued,
    /// The listener's config: client certificates optional (users and kubectl may use a
    /// bearer token), verified against the CA when sent.
    pub server_config: Arc<ketch_tls::rustls::ServerConfig>,
    /// The mutual-TLS client (this server's certificate) for peers and agents; it follows no
    /// redirects.
    pub peer_http: reqwest::Client,
}

impl std::fmt::Debug for ServerPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPki")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// A reqwest client trusting only the cluster CA, presenting `identity` (certificate, key).
///
/// # Errors
/// [`ServerError::Tls`] when the PEMs do not make a config.
pub fn mtls_client(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<reqwest::Client, ServerError> {
    let tls = ketch_tls::client_config(ca_pem, identity).map_err(tls_err)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(std::time::Duration::from_secs(5))
        .pool_idle_timeout(ketch_tls::CLIENT_POOL_IDLE)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        // The proxy to agents checks which node answered (`server::proxy`).
        .tls_info(true)
        .build()
        .map_err(|e| ServerError::Tls(format!("building the peer client: {e}")))
}

impl ServerPki {
    /// Issue server `id`'s certificate for `sans` from `ca`.
    ///
    /// # Errors
    /// [`ServerError::Tls`] when issuing or building a config fails.
    pub fn new(ca: ClusterCa, id: u64, sans: &[String]) -> Result<Self, ServerError> {
        let identity = ketch_tls::server_identity(id);
        let serving = ca
            .issue(&identity, sans, Usage::ServerAndClient)
            .map_err(tls_err)?;
        let server_config = ketch_tls::server_config(
            &serving.cert_pem,
            &serving.key_pem,
            ca.cert_pem(),
            ClientAuth::Optional,
        )
        .map_err(tls_err)?;
        let peer_http = mtls_client(ca.cert_pem(), Some((&serving.cert_pem, &serving.key_pem)))?;
        Ok(Self {
            ca,
            identity,
            serving,
            server_config,
            peer_http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("10.0.0.1:6443"), "10.0.0.1");
        assert_eq!(host_of("https://node-a:6443/x"), "node-a");
        assert_eq!(host_of("[::1]:6443"), "::1");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("::1"), "::1");
    }

    #[test]
    fn the_ca_is_made_once_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_ca(dir.path()).unwrap();
        let b = load_or_create_ca(dir.path()).unwrap();
        assert_eq!(a.hash(), b.hash());
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(PKI_DIR).join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CA_KEY), 0o600);
        let pki = std::fs::metadata(dir.path().join(PKI_DIR))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(pki, 0o700);
        let sans = server_sans(
            "0.0.0.0:6443".parse().unwrap(),
            "10.1.2.3:6443",
            &["api.example".into()],
        );
        assert!(
            sans.contains(&"10.1.2.3".to_string()) && sans.contains(&"api.example".to_string())
        );
        assert!(!sans.contains(&"0.0.0.0".to_string()));
        ServerPki::new(a, 5, &sans).unwrap();
    }
}

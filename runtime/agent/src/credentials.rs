//! The node's certificate: how an agent gets it, keeps it and uses it.
//!
//! A new node has only a join token (`ketch token create --join`): it makes a key, asks a
//! server for a certificate naming it `system:node:<name>` (trusting only the CA the token
//! pins), and keeps key, certificate and CA in `<data-dir>/pki/` (0700; the key 0600). At
//! every later start it renews the certificate with the one it has (a node may renew its
//! own), so the validity restarts and new addresses are added; when no server answers, the
//! kept one is used as is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ketch_client::TlsSettings;
use ketch_client::join::{CertificateKind, CertificateRequest, request_certificate};
use ketch_tls::ClientAuth;

use crate::error::AgentError;

/// A node's certificate and key and the cluster CA, PEM.
#[derive(Clone)]
pub struct NodeTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls").finish_non_exhaustive()
    }
}

fn tls_err(what: &str) -> impl Fn(ketch_tls::TlsError) -> AgentError + '_ {
    move |e| AgentError::Config(format!("{what}: {e}"))
}

impl NodeTls {
    /// As the API client's settings: the CA, and the certificate as the credential.
    pub fn settings(&self) -> TlsSettings {
        TlsSettings {
            certificate_authority: self.ca_pem.clone(),
            client_certificate: Some(self.cert_pem.clone()),
            client_key: Some(self.key_pem.clone()),
        }
    }

    /// The endpoint's listener config: the API server's certificate is checked per request.
    pub(crate) fn endpoint(&self) -> Result<Arc<ketch_tls::rustls::ServerConfig>, AgentError> {
        ketch_tls::server_config(
            &self.cert_pem,
            &self.key_pem,
            &self.ca_pem,
            ClientAuth::Optional,
        )
        .map_err(tls_err("the agent endpoint's TLS"))
    }

    /// The gateway's peer listener (client certificates required) and peer client.
    pub(crate) fn gateway(&self) -> Result<ketch_gateway::PeerTls, AgentError> {
        Ok(ketch_gateway::PeerTls {
            server: ketch_tls::server_config(
                &self.cert_pem,
                &self.key_pem,
                &self.ca_pem,
                ClientAuth::Required,
            )
            .map_err(tls_err("the gateway's peer TLS"))?,
            client: ketch_tls::client_config(&self.ca_pem, Some((&self.cert_pem, &self.key_pem)))
                .map_err(tls_err("the gateway's peer TLS"))?,
        })
    }
}

const CA: &str = "ca.crt";
const CERT: &str = "node.crt";
const KEY: &str = "node.key";

fn read(dir: &Path) -> Option<NodeTls> {
    let get = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    Some(NodeTls {
        ca_pem: get(CA)?,
        cert_pem: get(CERT)?,
        key_pem: get(KEY)?,
    })
}

fn save(dir: &Path, tls: &NodeTls) -> Result<(), AgentError> {
    use ketch_client::files::{create_private_dir, write_private};
    let failed = |what: &Path| {
        let context = format!("writing {}", what.display());
        move |source| AgentError::Io { context, source }
    };
    create_private_dir(dir).map_err(failed(dir))?;
    for (name, contents) in [
        (KEY, &tls.key_pem),
        (CERT, &tls.cert_pem),
        (CA, &tls.ca_pem),
    ] {
        let path = dir.join(name);
        write_private(&path, contents.as_bytes()).map_err(failed(&path))?;
    }
    Ok(())
}

/// `<data_dir>/pki`.
pub fn pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki")
}

/// The certificate of node `name`, valid for `addresses`: renewed with the kept one, or
/// obtained with `join_token`, from the first of `servers` that answers.
///
/// # Errors
/// [`AgentError::Config`] when there is no kept certificate and no join token, or every
/// server refused or could not be reached.
pub async fn node_credentials(
    data_dir: &Path,
    servers: &[String],
    join_token: Option<&str>,
    name: &str,
    addresses: &[String],
) -> Result<NodeTls, AgentError> {
    let dir = pki_dir(data_dir);
    let kept = read(&dir);
    let mut failures = Vec::new();
    for server in servers {
        let (csr, key) = ketch_tls::csr(&format!("system:node:{name}"))
            .map_err(tls_err("making the node's key"))?;
        let req = CertificateRequest {
            kind: CertificateKind::Node,
            node_name: Some(name.to_string()),
            server_id: None,
            csr,
            addresses: addresses.to_vec(),
        };
        let got = match (&kept, join_token) {
            (Some(k), _) => renew(server, k, req, key).await,
            (None, Some(token)) => {
                request_certificate(server, token, req, key)
                    .await
                    .map(|(issued, ca)| NodeTls {
                        ca_pem: ca,
                        cert_pem: issued.cert_pem,
                        key_pem: issued.key_pem,
                    })
            }
            (None, None) => {
                return Err(AgentError::Config(format!(
                    "this node has no certificate yet ({} is empty): pass a join token with \
                     --token (print one on a server with `ketch token create --join`)",
                    dir.display()
                )));
            }
        };
        match got {
            Ok(tls) => {
                save(&dir, &tls)?;
                return Ok(tls);
            }
            Err(e) => failures.push(format!("{server}: {e}")),
        }
    }
    match kept {
        Some(k) => {
            tracing::warn!(failures = ?failures, "could not renew the node certificate; using the kept one");
            Ok(k)
        }
        None => Err(AgentError::Config(format!(
            "getting the node's certificate: {}",
            failures.join("; ")
        ))),
    }
}

/// A new certificate for `req`'s key, asked for with the node's current certificate.
async fn renew(
    server: &str,
    kept: &NodeTls,
    req: CertificateRequest,
    key_pem: String,
) -> Result<NodeTls, ketch_client::Error> {
    let client = ketch_client::Client::with_tls(&[server.to_string()], "", Some(&kept.settings()))?;
    let cert = client.request_node_certificate(&req).await?;
    Ok(NodeTls {
        ca_pem: kept.ca_pem.clone(),
        cert_pem: cert,
        key_pem,
    })
}

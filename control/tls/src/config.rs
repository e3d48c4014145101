//! rustls configs from PEM: servers verify clients against the cluster CA, clients verify
//! servers against it.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::{TlsError, provider};

/// Whether a listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Asked for and verified when sent; a client may instead authenticate with a bearer
    /// token (the API server: users with tokens, kubectl).
    Optional,
    /// Every client must present a certificate from the cluster CA (raft peers, the agent
    /// endpoint, gateways between nodes).
    Required,
}

pub(crate) fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_string(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.to_string(),
            why: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: what.to_string(),
        why: e.to_string(),
    })
}

pub(crate) fn roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca_pem, "the cluster CA certificate")? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// A server config presenting `cert_pem` (the leaf, then the CA: clients pinning the CA by
/// its hash find it in the chain) with `key_pem`, verifying client certificates against
/// `ca_pem`. ALPN offers HTTP/2 and HTTP/1.1.
///
/// # Errors
/// [`TlsError`] when a PEM does not parse or the key does not match the certificate.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    auth: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut chain = certs(cert_pem, "the serving certificate")?;
    chain.extend(certs(ca_pem, "the cluster CA certificate")?);
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider());
    let verifier = match auth {
        ClientAuth::Optional => builder.allow_unauthenticated().build(),
        ClientAuth::Required => builder.build(),
    }
    .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key(key_pem, "the serving key")?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client config trusting only the cluster CA `ca_pem`, presenting `identity`
/// (certificate and key PEM) when given. ALPN asks for HTTP/1.1: ketch's clients keep a pool
/// of connections (a watch holds one), as over plain HTTP.
///
/// # Errors
/// [`TlsError`] when a PEM does not parse or the key does not match the certificate.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match identity {
        Some((cert, k)) => builder.with_client_auth_cert(
            certs(cert, "the client certificate")?,
            key(k, "the client key")?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

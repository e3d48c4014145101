//! The node's TLS client for guests' outbound `https://` requests: one rustls
//! `ClientConfig` per [`crate::Engine`], built when the engine is, shared by every request.
//!
//! **Trust.** The platform's roots (`rustls-native-certs`: on Linux the distribution's
//! bundle, e.g. `/etc/ssl/certs`) plus an optional PEM bundle of the node's own
//! ([`crate::EngineConfig::outbound_ca_file`], the agent's `--outbound-ca-file`). There is
//! no compiled-in fallback (`webpki-roots`): a snapshot of Mozilla's roots baked into the
//! binary goes stale with no way for an operator to revoke or update it, while the
//! platform bundle is what the node's own tools trust and what its package manager keeps
//! current. A node where the platform roots cannot be loaded logs a warning and trusts only
//! its CA file; apps that never call HTTPS are unaffected.
//!
//! **Verification.** rustls' webpki verifier: the chain must reach a trusted root, and the
//! certificate must name the URL's host (a DNS name, or an IP address SAN for an IP
//! literal). The server name sent as SNI is the same host (rustls sends none for an IP).
//! ALPN offers only `http/1.1`: the sender is hyper's HTTP/1 client.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::Error as HttpError;

use crate::error::WasmError;

/// Connects guests' outbound requests over TLS. Cheap to clone.
#[derive(Clone)]
pub(crate) struct OutboundTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for OutboundTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundTls").finish_non_exhaustive()
    }
}

impl OutboundTls {
    /// The platform roots plus the PEM certificates of `ca_file`.
    ///
    /// # Errors
    ///
    /// [`WasmError::OutboundCaFile`] when `ca_file` cannot be read, holds no certificate, or
    /// holds one that is not a valid CA certificate: a node told to trust a bundle must not
    /// start without it, or its apps would fail later with certificate errors.
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Self, WasmError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "loading the platform's root certificates");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        if ignored > 0 {
            tracing::debug!(ignored, "platform root certificates rustls cannot use");
        }
        if added == 0 {
            tracing::warn!(
                "no platform root certificates found (is ca-certificates installed?): \
                 Wasm apps' outbound HTTPS trusts only --outbound-ca-file"
            );
        }
        if let Some(path) = ca_file {
            let err = |reason: String| WasmError::OutboundCaFile {
                path: path.to_path_buf(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(e.to_string()))?;
            if certs.is_empty() {
                return Err(err("no PEM CERTIFICATE block in the file".into()));
            }
            for (i, cert) in certs.into_iter().enumerate() {
                roots
                    .add(cert)
                    .map_err(|e| err(format!("certificate {i}: {e}")))?;
            }
        }
        // ring, as for registry pulls: the default aws-lc-rs provider needs cmake and minutes
        // of build. The provider is given explicitly, so no process-wide default is needed.
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| WasmError::Engine(format!("TLS client configuration: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The TLS handshake on `stream` for `host` (the URL's host: a name, or an IP literal
    /// with IPv6 in brackets).
    ///
    /// # Errors
    ///
    /// `HttpRequestUriInvalid` for a host that is no valid server name, and the wasi:http
    /// TLS codes of [`tls_error`] for a failed handshake.
    pub(crate) async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, HttpError> {
        let name = server_name(host).ok_or(HttpError::HttpRequestUriInvalid)?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| tls_error(host, e))
    }
}

/// The name to verify the certificate against: an IP address for an IP literal (rustls
/// then checks the certificate's IP SANs and sends no SNI), else a DNS name.
fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Some(ServerName::from(ip));
    }
    ServerName::try_from(host.to_string()).ok()
}

/// Maps a failed handshake to the wasi:http error the guest sees: a certificate that does
/// not verify → `TlsCertificateError`; an alert from the server → `TlsAlertReceived` with
/// its code; anything else TLS → `TlsProtocolError`; an I/O error underneath (reset,
/// closed) → `ConnectionTerminated`. The guest's error code carries no text, so the
/// reason is logged here.
fn tls_error(host: &str, e: std::io::Error) -> HttpError {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        tracing::info!(host, error = %e, "outbound TLS handshake failed");
        return HttpError::ConnectionTerminated;
    };
    tracing::info!(host, error = %tls, "outbound TLS handshake failed");
    match tls {
        rustls::Error::InvalidCertificate(_) => HttpError::TlsCertificateError,
        rustls::Error::AlertReceived(alert) => HttpError::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => HttpError::TlsProtocolError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_verify_as_addresses_and_names_as_dns_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("api.example.com"),
            Some(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name").is_none());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = OutboundTls::new(Some(&path)).expect_err("empty bundle");
        let text = err.to_string();
        assert!(text.contains("empty.pem"), "{text}");
        assert!(text.contains("no PEM CERTIFICATE"), "{text}");

        let missing = dir.path().join("missing.pem");
        let err = OutboundTls::new(Some(&missing)).expect_err("missing file");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}

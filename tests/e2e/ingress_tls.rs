//! Ingress TLS termination through the real binary: a `kubernetes.io/tls` Secret made with a
//! test CA, an Ingress with `spec.tls` for a host, and a client that trusts only that CA
//! calling the gateway's TLS listener with that SNI host, over HTTP/2 and HTTP/1.1 (ALPN).
//! The client is hyper + tokio-rustls, so it does not depend on reqwest's TLS features.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::gateway::hello_app;
use crate::support::{Server, eventually, free_port, wait_running, write_file};

const HOST: &str = "secure.example.test";
const BROKEN_HOST: &str = "broken.example.test";

/// A test CA that signs server certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ketch e2e ingress CA");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A certificate for `host`: (certificate PEM, key PEM, certificate DER).
    fn issue(&self, host: &str) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }

    /// A client configuration trusting only this CA, offering `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // Every connection a full handshake: a resumed TLS 1.3 session is authenticated by
        // its first handshake and shows that handshake's certificate, even after a rotation.
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}

fn tls_secret(name: &str, crt: &str, key: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": crt, "tls.key": key},
    })
    .to_string()
}

fn tls_ingress(name: &str, host: &str, secret: &str) -> String {
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {
            "tls": [{"hosts": [host], "secretName": secret}],
            "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "hello", "port": {"number": 80}}}}]}}],
        },
    })
    .to_string()
}

/// What one HTTPS exchange saw.
#[derive(Debug)]
struct Answer {
    version: http::Version,
    status: u16,
    body: String,
    /// The certificate the gateway presented.
    cert: CertificateDer<'static>,
}

/// One GET over a fresh TLS connection to the gateway's TLS port, with `sni` as the server
/// name (and Host); HTTP/2 when ALPN picks it, else HTTP/1.1. `Err` with the handshake or
/// request error.
async fn get(
    port: u16,
    sni: &str,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Answer, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, conn) = tls.get_ref();
    let cert = conn.peer_certificates().ok_or("no peer certificate")?[0].clone();
    let h2 = conn.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://{sni}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(req).await
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("http1 handshake: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, sni)
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(req).await
    }
    .map_err(|e| format!("request: {e}"))?;
    let version = resp.version();
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Answer {
        version,
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        cert,
    })
}

#[test]
fn ingress_tls_terminates_at_the_gateway_by_sni_over_h2_and_http1_and_reloads_certificates() {
    let tls_port = free_port();
    let tls_listen = format!("127.0.0.1:{tls_port}");
    let s = Server::start_with(&["--gateway", "127.0.0.1:0", "--gateway-tls", &tls_listen]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca = Ca::new();
    let (crt, key, first_der) = ca.issue(HOST);
    let manifest = format!(
        "{}---\n{}\n---\n{}\n",
        hello_app(1, None),
        tls_secret("secure-tls", &crt, &key),
        tls_ingress("secure", HOST, "secure-tls"),
    );
    let f = write_file(s.dir.path(), "secure.yaml", &manifest);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    wait_running(&s, "app=hello", 1);

    // HTTP/2 by ALPN, with the certificate from the Secret, verified against the test CA.
    let h2 = ca.client(&[b"h2", b"http/1.1"]);
    let answer = eventually(60, "an HTTPS answer from the Pod over h2", || {
        rt.block_on(get(tls_port, HOST, "/", h2.clone()))
            .ok()
            .filter(|a| a.status == 200)
    });
    assert_eq!(answer.version, http::Version::HTTP_2);
    assert!(answer.body.contains("hello from ketch"), "{answer:?}");
    assert_eq!(answer.cert, first_der);

    // HTTP/1.1 when the client offers only that.
    let h1 = ca.client(&[b"http/1.1"]);
    let answer = rt.block_on(get(tls_port, HOST, "/", h1.clone())).unwrap();
    assert_eq!(answer.version, http::Version::HTTP_11);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains("hello from ketch"), "{answer:?}");

    // Another SNI host gets no certificate: the handshake is refused.
    let err = rt
        .block_on(get(tls_port, "other.example.test", "/", h2.clone()))
        .unwrap_err();
    assert!(err.starts_with("handshake:"), "{err}");

    // A new certificate in the Secret: new handshakes see it.
    let (crt2, key2, second_der) = ca.issue(HOST);
    assert_ne!(first_der, second_der);
    let f = write_file(
        s.dir.path(),
        "rotated.yaml",
        &tls_secret("secure-tls", &crt2, &key2),
    );
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let answer = eventually(30, "the rotated certificate", || {
        rt.block_on(get(tls_port, HOST, "/", h1.clone()))
            .ok()
            .filter(|a| a.cert == second_der)
    });
    assert_eq!(answer.status, 200, "{answer:?}");

    // A Secret whose key belongs to another certificate: its host gets no certificate, a
    // Warning Event says why, and the good host keeps working.
    let (crt3, _, _) = ca.issue(BROKEN_HOST);
    let (_, other_key, _) = ca.issue(BROKEN_HOST);
    // YAML documents (a file that starts with `{` is read as one JSON object).
    let manifest = format!(
        "---\n{}\n---\n{}\n",
        tls_secret("broken-tls", &crt3, &other_key),
        tls_ingress("broken", BROKEN_HOST, "broken-tls"),
    );
    let f = write_file(s.dir.path(), "broken.yaml", &manifest);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let event = eventually(30, "an InvalidTLSSecret Event on the Ingress", || {
        let events = s.ok(&["get", "events", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&events).ok()?;
        v["items"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "InvalidTLSSecret" && e["involvedObject"]["name"] == "broken")
            .cloned()
    });
    let message = event["message"].as_str().unwrap();
    assert!(message.contains("broken-tls"), "{message}");
    assert!(message.contains(BROKEN_HOST), "{message}");
    let err = rt
        .block_on(get(tls_port, BROKEN_HOST, "/", h2.clone()))
        .unwrap_err();
    assert!(err.starts_with("handshake:"), "{err}");
    let answer = rt.block_on(get(tls_port, HOST, "/", h2)).unwrap();
    assert_eq!((answer.status, answer.cert), (200, second_der));
}

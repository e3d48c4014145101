//! TLS for apps through the real binary.
//!
//! Ingress TLS termination: a `kubernetes.io/tls` Secret made with a test CA, an Ingress with
//! `spec.tls` for a host, and a client that trusts only that CA calling the gateway's TLS
//! listener with that SNI host, over HTTP/2 and HTTP/1.1 (ALPN). The client is hyper +
//! tokio-rustls, so it does not depend on reqwest's TLS features.
//!
//! Wasm outbound HTTPS: the agent's `--outbound-ca-file` reaches the Wasm engine, so a guest's
//! `https://` call to a server that CA signed succeeds (the rest is ketch-wasm's tests).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::gateway::hello_app;
use crate::support::{Server, eventually, free_port, http, wait_running, write_file};

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

/// An HTTP/2 connection kept open: its sender, for requests later.
async fn open_h2(
    port: u16,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
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

    // A new certificate in the Secret: new handshakes see it, and a connection opened
    // before keeps working.
    let mut kept = rt.block_on(open_h2(tls_port, HOST, h2.clone()));
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
    let status = rt.block_on(async {
        let req = http::Request::get(format!("https://{HOST}/"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        kept.send_request(req).await.map(|r| r.status().as_u16())
    });
    assert_eq!(
        status.unwrap(),
        200,
        "the connection from before the rotation"
    );

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

/// Serves HTTPS on loopback with a certificate for `localhost` from `ca`, answering every
/// request `secure pong!`; its port. The thread and its runtime live until the test ends.
fn https_server(ca: &Ca) -> u16 {
    use rustls::pki_types::pem::PemObject as _;
    let (crt, key, _) = ca.issue("localhost");
    let chain = CertificateDer::pem_slice_iter(crt.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"secure pong!")),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
    });
    port
}

#[test]
fn a_wasm_app_calls_https_trusted_through_the_agents_outbound_ca_file() {
    let ca = Ca::new();
    let port = https_server(&ca);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write_file(dir.path(), "ca.pem", &ca.issuer.pem());
    let s = Server::start_with(&[
        "--gateway",
        "127.0.0.1:0",
        "--outbound-ca-file",
        ca_file.to_str().unwrap(),
        // The test's HTTPS server is on loopback, which apps may not reach by default.
        "--wasm-outbound-allow",
        "127.0.0.0/8",
    ]);
    let gw = s.gateway();
    let caller = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: caller\n  labels: {{app: caller}}\n  annotations:\n    ketch.dev/allowed-outbound-hosts: localhost:{port}\nspec:\n  containers:\n  - name: app\n    image: file:{}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: caller\nspec:\n  selector: {{app: caller}}\n  ports:\n  - port: 80\n",
        ketch_test_guests::OUTBOUND
    );
    let f = write_file(s.dir.path(), "caller.yaml", &caller);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    wait_running(&s, "app=caller", 1);
    let (code, _, body) = eventually(30, "the caller's answer", || {
        let r = http(
            "GET",
            &format!("{gw}/?url=https://localhost:{port}/"),
            &[("host", "caller.default.ketch.localhost")],
            None,
        );
        (r.0 != 503).then_some(r)
    });
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "status: 200\nbody: secure pong!\n");

    // A CA file with no certificate: the node refuses to start, naming the file.
    let bad = write_file(dir.path(), "bad.pem", "not a certificate\n");
    let out = crate::support::ketch_cmd()
        .args(["server", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--gateway", "127.0.0.1:0", "--gateway-tls", "127.0.0.1:0"])
        .arg("--outbound-ca-file")
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("KETCH_CONFIG", dir.path().join("config"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("outbound CA file") && stderr.contains("bad.pem"),
        "{stderr}"
    );
}

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use ketch_test_guests::OUTBOUND;
use ketch_wasm::{AppConfig, OutboundBody, OutboundResolver, Resolution};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::support::{get, handler};

/// Answers one HTTP/1.1 request with `pong!` and reports the request head it read.
async fn one_shot_server(listener: TcpListener) -> String {
    let (mut socket, _) = listener.accept().await.expect("accept");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await.expect("read");
        assert!(n > 0, "connection closed before the request head ended");
        head.extend_from_slice(&buf[..n]);
    }
    socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\npong!")
        .await
        .expect("write");
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn outbound_to_a_host_not_allowed_is_denied_and_nothing_is_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let h = handler(
        OUTBOUND,
        AppConfig {
            allowed_outbound_hosts: vec!["api.example.com".into(), "127.0.0.1".into()],
            ..AppConfig::default()
        },
    )
    .await;
    let (status, body) = get(&h, &format!("/?url=http://127.0.0.1:{port}/secret")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "a connection was made to a denied host");
}

#[tokio::test]
async fn an_allowed_name_that_resolves_to_the_node_itself_is_refused_by_default() {
    // `localhost` is on the allow-list, but the node refuses its own and loopback addresses
    // unless its operator lists them (the shared test engine allows 127.0.0.0/8).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ketch-wasm-shared-cache");
    let mut config = crate::support::small_config(&dir);
    config.egress = ketch_wasm::EgressPolicy::default();
    let engine = ketch_wasm::Engine::new(config).expect("engine");
    let h = engine
        .load_file(std::path::Path::new(OUTBOUND), None)
        .await
        .expect("load")
        .handler(AppConfig {
            allowed_outbound_hosts: vec![format!("localhost:{port}"), format!("127.0.0.1:{port}")],
            ..AppConfig::default()
        })
        .expect("handler");
    for url in [
        format!("http://localhost:{port}/secret"),
        format!("http://127.0.0.1:{port}/secret"),
    ] {
        let (status, body) = get(&h, &format!("/?url={url}")).await;
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("HttpRequestDenied"), "{body}");
    }
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "a connection was made to a refused address"
    );
}

#[tokio::test]
async fn outbound_to_an_allowed_host_reaches_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(one_shot_server(listener));
    let h = handler(
        OUTBOUND,
        AppConfig {
            allowed_outbound_hosts: vec![format!("127.0.0.1:{port}")],
            ..AppConfig::default()
        },
    )
    .await;
    let (status, body) = get(&h, &format!("/?url=http://127.0.0.1:{port}/ping")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "status: 200\nbody: pong!\n");
    let head = server.await.expect("server");
    assert!(head.starts_with("GET /ping HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: 127.0.0.1:{port}")),
        "{head}"
    );
}

/// A test CA and a server certificate it signed for `localhost` and `127.0.0.1`.
struct TestPki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ketch-wasm test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    let key_der =
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("server key DER");
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key_der)
    .expect("server config");
    // Offers h2 as well: the client must pick http/1.1, the only protocol it speaks.
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TestPki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

/// What the HTTPS test server saw of its one connection.
#[derive(Debug)]
struct TlsSeen {
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    head: String,
}

/// Accepts one TLS connection and answers one HTTP/1.1 request with `secure pong!`; `Err`
/// with the handshake error when the client gives up on the certificate.
async fn one_shot_tls_server(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> Result<TlsSeen, std::io::Error> {
    let (socket, _) = listener.accept().await.expect("accept");
    let mut tls = tokio_rustls::TlsAcceptor::from(config)
        .accept(socket)
        .await?;
    let (_, conn) = tls.get_ref();
    let sni = conn.server_name().map(str::to_string);
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).await?;
        assert!(n > 0, "connection closed before the request head ended");
        head.extend_from_slice(&buf[..n]);
    }
    tls.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\nsecure pong!",
    )
    .await?;
    tls.shutdown().await?;
    Ok(TlsSeen {
        sni,
        alpn,
        head: String::from_utf8_lossy(&head).into_owned(),
    })
}

/// An engine whose outbound HTTPS also trusts `ca_pem` (its own cache dir, kept across runs
/// like the shared engine's).
fn engine_trusting(ca_pem: &str, dir: &std::path::Path) -> ketch_wasm::Engine {
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write CA file");
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ketch-wasm-tls-cache");
    let mut config = crate::support::small_config(&cache);
    config.max_instances = 4;
    config.outbound_ca_file = Some(ca_file);
    ketch_wasm::Engine::new(config).expect("engine")
}

#[tokio::test]
async fn https_outbound_to_a_server_the_node_ca_file_trusts_gets_the_response() {
    let pki = test_pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine_trusting(&pki.ca_pem, dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(one_shot_tls_server(listener, pki.server.clone()));
    let h = engine
        .load_file(std::path::Path::new(OUTBOUND), None)
        .await
        .expect("load")
        .handler(AppConfig {
            allowed_outbound_hosts: vec![format!("localhost:{port}")],
            ..AppConfig::default()
        })
        .expect("handler");
    let (status, body) = get(&h, &format!("/?url=https://localhost:{port}/ping")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "status: 200\nbody: secure pong!\n");
    let seen = server.await.expect("server task").expect("handshake");
    assert_eq!(
        seen.sni.as_deref(),
        Some("localhost"),
        "SNI is the URL's host"
    );
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]), "ALPN");
    assert!(
        seen.head.starts_with("GET /ping HTTP/1.1\r\n"),
        "{}",
        seen.head
    );

    // An IP literal is verified against the certificate's IP addresses.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(one_shot_tls_server(listener, pki.server.clone()));
    let h = engine
        .load_file(std::path::Path::new(OUTBOUND), None)
        .await
        .expect("load")
        .handler(AppConfig {
            allowed_outbound_hosts: vec![format!("127.0.0.1:{port}")],
            ..AppConfig::default()
        })
        .expect("handler");
    let (status, body) = get(&h, &format!("/?url=https://127.0.0.1:{port}/ip")).await;
    assert_eq!(status, 200, "{body}");
    let seen = server.await.expect("server task").expect("handshake");
    assert_eq!(seen.sni, None, "no SNI for an IP address");
}

#[tokio::test]
async fn https_outbound_to_an_untrusted_certificate_fails_the_request_with_a_tls_error() {
    let pki = test_pki();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(one_shot_tls_server(listener, pki.server.clone()));
    // The shared engine has no CA file: the test CA is no platform root.
    let h = handler(
        OUTBOUND,
        AppConfig {
            allowed_outbound_hosts: vec![format!("localhost:{port}")],
            ..AppConfig::default()
        },
    )
    .await;
    let (status, body) = get(&h, &format!("/?url=https://localhost:{port}/secret")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("TlsCertificateError"), "{body}");
    let refused = server.await.expect("server task");
    assert!(refused.is_err(), "the client went on: {refused:?}");

    // The node still serves: the next request of the same handler works as before.
    let (status, body) = get(&h, "/?url=https://elsewhere.example/").await;
    assert_eq!(status, 502);
    assert!(body.contains("HttpRequestDenied"), "{body}");
}

#[tokio::test]
async fn https_outbound_to_a_host_not_allowed_is_denied_before_connecting() {
    let pki = test_pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine_trusting(&pki.ca_pem, dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let h = engine
        .load_file(std::path::Path::new(OUTBOUND), None)
        .await
        .expect("load")
        .handler(AppConfig {
            // The port is not the one called: a bare host admits only 443 for https.
            allowed_outbound_hosts: vec!["localhost".into(), "api.example.com".into()],
            ..AppConfig::default()
        })
        .expect("handler");
    let (status, body) = get(&h, &format!("/?url=https://localhost:{port}/secret")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "a connection was made to a denied host");
}

/// Serves `svc.ns` itself and passes everything else on.
struct ClusterResolver;

impl OutboundResolver for ClusterResolver {
    fn resolve(
        &self,
        req: http::Request<OutboundBody>,
    ) -> Pin<Box<dyn Future<Output = Resolution> + Send>> {
        Box::pin(async move {
            if req.uri().host() == Some("svc.ns") {
                let body = Full::new(Bytes::from_static(b"from the cluster"))
                    .map_err(|never| match never {})
                    .boxed_unsync();
                Resolution::Respond(http::Response::new(body))
            } else {
                Resolution::Pass(req)
            }
        })
    }
}

#[tokio::test]
async fn a_resolver_serves_in_cluster_names_and_leaves_the_rest_to_the_allow_list() {
    let h = handler(
        OUTBOUND,
        AppConfig {
            outbound_resolver: Some(Arc::new(ClusterResolver)),
            ..AppConfig::default()
        },
    )
    .await;
    let (status, body) = get(&h, "/?url=http://svc.ns/x").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "status: 200\nbody: from the cluster\n");

    let (status, body) = get(&h, "/?url=http://elsewhere.example/x").await;
    assert_eq!(status, 502);
    assert!(body.contains("HttpRequestDenied"), "{body}");
}

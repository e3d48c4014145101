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

#[tokio::test]
async fn https_outbound_is_refused_clearly_until_tls_is_supported() {
    let h = handler(
        OUTBOUND,
        AppConfig {
            allowed_outbound_hosts: vec!["127.0.0.1:*".into()],
            ..AppConfig::default()
        },
    )
    .await;
    let (status, body) = get(&h, "/?url=https://127.0.0.1:1/").await;
    assert_eq!(status, 502);
    assert!(
        body.contains("https outbound requests are not supported"),
        "{body}"
    );
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

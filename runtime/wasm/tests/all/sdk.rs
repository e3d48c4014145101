//! Components built with ketch-sdk: wasi:keyvalue through the node's store, the imports the
//! SDK adds, and serving an SDK app on a plain wasmtime-wasi-http host (what `wasmtime serve`
//! is), with no ketch code in the path.

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use ketch_test_guests::{EXAMPLE_COUNTER, EXAMPLE_HELLO, EXAMPLE_PLAIN_WASI, HELLO, KV};
use ketch_wasm::{AppConfig, Handler, KeyValueScope, KeyValueStore, MAX_VALUE_BYTES};

use crate::support::{body_string, get, handler, recording_sink};

async fn call(h: &Handler, method: &str, path: &str, body: impl Into<Bytes>) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://app.test{path}"))
        .body(Full::new(body.into()))
        .expect("request");
    let resp = h
        .handle(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    (status, body_string(resp.into_body()).await)
}

async fn kv_handler(store: &KeyValueStore, app: &str) -> Handler {
    handler(
        KV,
        AppConfig {
            key_value: Some(KeyValueScope {
                store: store.clone(),
                app: app.into(),
            }),
            ..AppConfig::default()
        },
    )
    .await
}

#[tokio::test]
async fn every_keyvalue_operation_works_through_the_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyValueStore::new(dir.path().join("keyvalue.redb"));
    let h = kv_handler(&store, "ns/app").await;

    assert_eq!(call(&h, "GET", "/b/_/k", "").await.0, 404);
    assert_eq!(call(&h, "PUT", "/b/_/k", "v1").await.0, 204);
    assert_eq!(call(&h, "GET", "/b/_/k", "").await, (200, "v1".into()));
    assert_eq!(call(&h, "GET", "/exists/_/k", "").await.1, "true");
    assert_eq!(call(&h, "GET", "/exists/_/nope", "").await.1, "false");
    // Buckets are separate namespaces.
    assert_eq!(call(&h, "GET", "/b/other/k", "").await.0, 404);
    assert_eq!(call(&h, "PUT", "/b/other/x", "1").await.0, 204);
    assert_eq!(call(&h, "POST", "/incr/_/n?by=5", "").await.1, "5");
    assert_eq!(call(&h, "POST", "/incr/_/n", "").await.1, "6");
    assert_eq!(
        call(&h, "GET", "/b/_/n", "").await.1,
        "6",
        "counters are decimal text"
    );
    assert_eq!(call(&h, "GET", "/keys/_", "").await.1, "k\nn");
    assert_eq!(
        call(&h, "POST", "/many/_", "a=1\nb=2").await.1,
        "1\n2\n-",
        "set-many then get-many (with a missing key)"
    );
    assert_eq!(call(&h, "DELETE", "/b/_/k", "").await.0, 204);
    assert_eq!(call(&h, "GET", "/keys/_", "").await.1, "a\nb\nn");

    // Limits come back as errors the guest can report.
    let (status, body) = call(&h, "PUT", "/b/_/big", vec![b'x'; MAX_VALUE_BYTES + 1]).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("the limit is 1048576 bytes"), "{body}");
    let (status, body) = call(&h, "PUT", "/b/bad%20name/k", "v").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("bucket name \"bad name\" is invalid"),
        "{body}"
    );
    let (status, body) = call(&h, "POST", "/incr/_/a?by=1", "").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "2"),
        "`a` was set to 1 by set-many"
    );
    call(&h, "PUT", "/b/_/word", "abc").await;
    let (status, body) = call(&h, "POST", "/incr/_/word", "").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("not a decimal u64 counter"), "{body}");
}

#[tokio::test]
async fn data_is_per_app_and_survives_new_handlers_and_a_reopened_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyvalue.redb");
    let store = KeyValueStore::new(&path);
    let a = kv_handler(&store, "ns/a").await;
    assert_eq!(call(&a, "POST", "/incr/_/n", "").await.1, "1");
    assert_eq!(call(&a, "POST", "/incr/_/n", "").await.1, "2");
    // Another app (another namespace or label) has its own buckets.
    let b = kv_handler(&store, "other/a").await;
    assert_eq!(call(&b, "POST", "/incr/_/n", "").await.1, "1");
    drop((a, b, store));

    // A new handler (a replacement Pod) on a store reopened from the same file (an agent
    // restart) sees the same data.
    let store = KeyValueStore::new(&path);
    let a2 = kv_handler(&store, "ns/a").await;
    assert_eq!(call(&a2, "POST", "/incr/_/n", "").await.1, "3");
}

#[tokio::test]
async fn without_a_scope_opening_a_bucket_fails_clearly() {
    let h = handler(KV, AppConfig::default()).await;
    let (status, body) = call(&h, "GET", "/b/_/k", "").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("wasi:keyvalue is not available to this app on this node"),
        "{body}"
    );
}

#[tokio::test]
async fn the_examples_serve_on_ketch() {
    let (sink, log_sink) = recording_sink();
    let hello = handler(
        EXAMPLE_HELLO,
        AppConfig {
            env: vec![
                ("GREETING".into(), "Hi".into()),
                ("POD_NAME".into(), "p-1".into()),
            ],
            log_sink,
            ..AppConfig::default()
        },
    )
    .await;
    assert_eq!(
        get(&hello, "/x?y=1").await,
        (200, "Hi! (from p-1, path /x)\n".into())
    );
    assert_eq!(
        sink.text(ketch_wasm::Stream::Stdout),
        "INFO GET /x served by p-1\n"
    );

    let plain = handler(EXAMPLE_PLAIN_WASI, AppConfig::default()).await;
    let (status, body) = get(&plain, "/p").await;
    assert_eq!(status, 200);
    assert_eq!(body, "Hello! (from unknown, path /p)\n");

    let dir = tempfile::tempdir().unwrap();
    let counter = handler(
        EXAMPLE_COUNTER,
        AppConfig {
            key_value: Some(KeyValueScope {
                store: KeyValueStore::new(dir.path().join("kv.redb")),
                app: "default/counter".into(),
            }),
            ..AppConfig::default()
        },
    )
    .await;
    assert_eq!(get(&counter, "/a").await.1, "/a: 1\n");
    assert_eq!(get(&counter, "/a").await.1, "/a: 2\n");
    assert_eq!(get(&counter, "/b/c").await.1, "/b/c: 1\n");
    assert_eq!(get(&counter, "/_counts").await.1, r#"{"/a":2,"/b/c":1}"#);
    assert_eq!(call(&counter, "DELETE", "/_counts", "").await.0, 204);
    assert_eq!(get(&counter, "/_counts").await.1, "{}");
}

/// The interfaces a component imports, without versions (`wasi:http/types`).
fn imports(path: &str) -> BTreeSet<String> {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, Path::new(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

#[test]
fn the_sdk_adds_no_imports_beyond_wasi_http_cli_and_keyvalue() {
    // A plain std wasi:http guest (no SDK) imports wasi:http plus what Rust's std uses
    // (wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem).
    let plain: BTreeSet<String> = imports(HELLO)
        .union(&imports(EXAMPLE_PLAIN_WASI))
        .cloned()
        .collect();
    let allowed_prefixes = [
        "wasi:http/",
        "wasi:cli/",
        "wasi:io/",
        "wasi:clocks/",
        "wasi:random/",
        "wasi:filesystem/",
    ];
    for i in &plain {
        assert!(
            allowed_prefixes.iter().any(|p| i.starts_with(p)),
            "plain guest imports {i}"
        );
    }

    // The SDK hello adds nothing to that, not even wasi:keyvalue (it never opens a bucket).
    let sdk_hello = imports(EXAMPLE_HELLO);
    let extra: Vec<&String> = sdk_hello.difference(&plain).collect();
    assert!(
        extra.is_empty(),
        "the SDK hello imports more than a plain guest: {extra:?}"
    );

    // The counter adds exactly the wasi:keyvalue interfaces it uses.
    let counter = imports(EXAMPLE_COUNTER);
    let extra: BTreeSet<&str> = counter.difference(&plain).map(String::as_str).collect();
    assert_eq!(
        extra,
        BTreeSet::from(["wasi:keyvalue/atomics", "wasi:keyvalue/store"]),
        "{counter:?}"
    );
}

/// Serves HTTP/1.1 on `listener` until dropped: `GET /slow/..` answers after 500 ms; every
/// response is `pong <path>` plus the request body when there is one.
async fn upstream(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    loop {
        let (mut socket, _) = listener.accept().await.expect("accept");
        tokio::spawn(async move {
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let head_end = loop {
                let n = socket.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed before the head ended");
                data.extend_from_slice(&buf[..n]);
                if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&data[..head_end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while data.len() < head_end + len {
                let n = socket.read(&mut buf).await.expect("read body");
                data.extend_from_slice(&buf[..n]);
            }
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            if path.starts_with("/slow") {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            let body = format!(
                "pong {path}{}",
                String::from_utf8_lossy(&data[head_end..head_end + len])
            );
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(resp.as_bytes()).await.expect("write");
        });
    }
}

#[tokio::test]
async fn the_sdk_sends_outbound_requests_blocking_joined_and_with_json() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(upstream(listener));
    let h = handler(
        ketch_test_guests::FETCH,
        AppConfig {
            allowed_outbound_hosts: vec![format!("127.0.0.1:{port}")],
            ..AppConfig::default()
        },
    )
    .await;
    let up = format!("http://127.0.0.1:{port}");

    assert_eq!(
        get(&h, &format!("/one?url={up}/x")).await,
        (200, "200 pong /x".into())
    );

    // Two 500 ms upstream calls joined in an async handler overlap: well under 1 s.
    let t0 = std::time::Instant::now();
    let (status, body) = get(&h, &format!("/both?a={up}/slow/a&b={up}/slow/b")).await;
    let took = t0.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "200 pong /slow/a\n200 pong /slow/b");
    assert!(
        took < std::time::Duration::from_millis(900),
        "joined requests took {took:?}: they ran one after the other"
    );

    let (status, body) = call(&h, "POST", &format!("/post?url={up}/p"), "hi").await;
    assert_eq!((status, body.as_str()), (200, r#"200 pong /p{"got":"hi"}"#));

    // A host the Pod does not allow: the SDK's Error::Http, answered 502.
    let (status, body) = get(&h, "/one?url=http://10.255.255.1/").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    server.abort();
}

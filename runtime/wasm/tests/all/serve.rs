use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use ketch_test_guests::HELLO;
use ketch_wasm::{AppConfig, Stream};

use crate::support::{ChannelBody, body_string, get, handler, recording_sink};

#[tokio::test]
async fn hello_answers_200_with_its_body_in_process() {
    let h = handler(HELLO, AppConfig::default()).await;
    let (status, body) = get(&h, "/").await;
    assert_eq!(status, 200);
    assert_eq!(body, "hello from ketch\n");
}

#[tokio::test]
async fn env_vars_from_the_app_config_are_visible_to_the_guest_and_nothing_else_is() {
    // The node's own environment is never inherited: only what the config grants.
    let h = handler(
        HELLO,
        AppConfig {
            env: vec![("GREETING".into(), "ahoy".into())],
            ..AppConfig::default()
        },
    )
    .await;
    let (_, body) = get(&h, "/").await;
    assert_eq!(body, "hello from ketch\ngreeting: ahoy\n");

    let plain = handler(HELLO, AppConfig::default()).await;
    assert_eq!(get(&plain, "/").await.1, "hello from ketch\n");
}

#[tokio::test]
async fn guest_stdout_and_stderr_reach_the_log_sink() {
    let (sink, log_sink) = recording_sink();
    let h = handler(
        HELLO,
        AppConfig {
            log_sink,
            ..AppConfig::default()
        },
    )
    .await;
    get(&h, "/logged").await;
    // The guest's stdout is flushed when its instance is torn down, just after the response.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !sink.text(Stream::Stdout).contains("hello: /logged") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stdout never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sink.text(Stream::Stderr).contains("hello: stderr works"));
}

#[tokio::test]
async fn post_echo_streams_the_body_back_while_it_is_still_being_sent() {
    let h = handler(HELLO, AppConfig::default()).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let req = http::Request::post("http://app.test/echo")
        .body(ChannelBody(rx))
        .expect("request");
    tx.send(Bytes::from_static(b"first chunk;"))
        .await
        .expect("send");
    let resp = h.handle(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();

    // The first chunk comes back before the request body is complete: streaming both ways.
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first chunk echoed before the request ended")
        .expect("a frame")
        .expect("no error");
    assert_eq!(frame.into_data().expect("data"), "first chunk;");

    tx.send(Bytes::from_static(b"second chunk"))
        .await
        .expect("send");
    drop(tx);
    assert_eq!(body_string(body).await, "second chunk");
}

#[tokio::test]
async fn a_large_body_is_echoed_intact() {
    let h = handler(HELLO, AppConfig::default()).await;
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let req = http::Request::post("http://app.test/echo")
        .body(http_body_util::Full::new(Bytes::from(payload.clone())))
        .expect("request");
    let resp = h.handle(req).await.expect("response");
    let got = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
}

//! An app built with ketch-sdk runs on a stock wasi:http host, not only on ketch.
//!
//! The first test serves the SDK hello exactly the way `wasmtime serve -Scli` does per
//! request — a linker with `wasmtime_wasi::p2::add_to_linker_async` (the `-Scli` part) and
//! `wasmtime_wasi_http::p2::add_only_http_to_linker_async`, `ProxyPre`, a fresh store per
//! request, `new_incoming_request` + `new_response_outparam` + `call_handle` — with none of
//! ketch's host code (no pooling, limits, log sinks, outbound policy or wasi:keyvalue). The
//! second runs the real `wasmtime serve` (`$WASMTIME`, else PATH). `tests/run` installs
//! wasmtime-cli 48.0.8 (a debug build, ~3 min) and sets `KETCH_REQUIRE_WASMTIME=1`, so in
//! the suite that test cannot skip; run alone without a `wasmtime`, it skips and says so.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use ketch_test_guests::EXAMPLE_HELLO;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

type SendResult = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
);

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: NoOutbound,
}

/// The workspace builds wasmtime-wasi-http without `default-send-request`, so a host must
/// supply `send_request`; the hello never calls it.
struct NoOutbound;

impl WasiHttpHooks for NoOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Result<SendResult, HttpError>> + Send> {
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

#[tokio::test]
async fn the_sdk_hello_runs_on_a_stock_wasmtime_wasi_http_host() {
    let engine = Engine::new(&Config::new()).unwrap();
    let component = Component::from_file(&engine, EXAMPLE_HELLO).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
    let pre = ProxyPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();

    for path in ["/", "/second"] {
        let mut wasi = WasiCtx::builder();
        wasi.env("GREETING", "Hi").inherit_stdout();
        let mut store = Store::new(
            &engine,
            State {
                wasi: wasi.build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                hooks: NoOutbound,
            },
        );
        let req = http::Request::get(format!("http://localhost{path}"))
            .body(Empty::<Bytes>::new().map_err(|never| -> HttpError { match never {} }))
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .unwrap();
        let out = store.data_mut().http().new_response_outparam(tx).unwrap();
        let proxy = pre.instantiate_async(&mut store).await.unwrap();
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
            .unwrap();
        let resp = rx.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("Hi! (from unknown, path {path})\n")
        );
    }
}

#[test]
fn the_sdk_hello_runs_on_wasmtime_serve_when_the_cli_is_installed() {
    let wasmtime = std::env::var("WASMTIME").unwrap_or_else(|_| "wasmtime".into());
    let Ok(version) = Command::new(&wasmtime).arg("--version").output() else {
        assert!(
            std::env::var_os("KETCH_REQUIRE_WASMTIME").is_none(),
            "KETCH_REQUIRE_WASMTIME is set but `{wasmtime}` does not run"
        );
        eprintln!(
            "skipped: no `wasmtime` ($WASMTIME or PATH); the test above covers the same path"
        );
        return;
    };
    assert!(version.status.success());
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.starts_with("wasmtime 48."),
        "`{wasmtime}` is {version}: the peer must be the wasmtime line ketch pins (48)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(&wasmtime)
        .args(["serve", "-Scli", "--env", "GREETING=Hi", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(EXAMPLE_HELLO)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let out = Command::new("curl")
            .args(["-fsS", &format!("http://127.0.0.1:{port}/cli")])
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "wasmtime serve did not answer");
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(body, "Hi! (from unknown, path /cli)\n");
}

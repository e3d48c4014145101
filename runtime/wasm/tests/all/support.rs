use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use ketch_wasm::{App, AppConfig, Engine, EngineConfig, Handler, LogSink, ResponseBody, Stream};

/// An engine shared by the tests that do not inspect load counters (saves compiles and
/// address space). Its cache dir survives runs, so reruns skip compiling.
pub fn shared_engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ketch-wasm-shared-cache");
            Engine::new(small_config(&dir)).expect("engine")
        })
        .clone()
}

pub fn small_config(dir: &Path) -> EngineConfig {
    let mut config = EngineConfig::with_instances(dir, 32);
    // The tests' servers listen on loopback, which guests may not reach by default.
    config.egress.allowed = vec!["127.0.0.0/8".parse().expect("CIDR")];
    config.max_memory_per_instance = 64 << 20;
    config
}

pub async fn load(guest: &str) -> App {
    shared_engine()
        .load_file(Path::new(guest), None)
        .await
        .unwrap_or_else(|e| panic!("loading {guest}: {e}"))
}

pub async fn handler(guest: &str, config: AppConfig) -> Handler {
    load(guest).await.handler(config).expect("handler")
}

pub fn get_request(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("http://app.test{path}"))
        .body(Empty::new())
        .expect("request")
}

pub async fn body_string(body: ResponseBody) -> String {
    let bytes = body.collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

/// GET `path`, expecting a response; returns status and body.
pub async fn get(handler: &Handler, path: &str) -> (u16, String) {
    let resp = handler
        .handle(get_request(path))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, body_string(resp.into_body()).await)
}

/// A `LogSink` that records everything, per stream.
#[derive(Default)]
pub struct RecordingSink(pub Mutex<Vec<(Stream, Vec<u8>)>>);

impl RecordingSink {
    pub fn text(&self, stream: Stream) -> String {
        let writes = self.0.lock().expect("lock");
        let bytes: Vec<u8> = writes
            .iter()
            .filter(|(s, _)| *s == stream)
            .flat_map(|(_, b)| b.clone())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl LogSink for RecordingSink {
    fn write(&self, stream: Stream, bytes: &[u8]) {
        self.0.lock().expect("lock").push((stream, bytes.to_vec()));
    }
}

pub fn recording_sink() -> (Arc<RecordingSink>, Option<Arc<dyn LogSink>>) {
    let sink = Arc::new(RecordingSink::default());
    let dyn_sink: Arc<dyn LogSink> = sink.clone();
    (sink, Some(dyn_sink))
}

/// A request body fed chunk by chunk from the test.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
}

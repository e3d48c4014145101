//! The gateway's access log (`--access-log`): one line per request on stderr, written by a
//! task of its own. A request only formats its line and offers it to a bounded queue; when
//! stderr cannot keep up the line is dropped (and counted in
//! `ketch_gateway_access_log_dropped_total`), so logging never slows the request path.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

/// Lines waiting for the writer.
const QUEUE: usize = 8192;

/// What one line says.
pub(crate) struct Entry<'a> {
    pub request_id: &'a str,
    pub peer: SocketAddr,
    pub method: &'a http::Method,
    pub host: &'a str,
    pub path: &'a str,
    pub code: u16,
    pub service: &'a str,
    pub took: Duration,
}

/// `<RFC 3339 time> access request_id=… peer=… method=GET host=… path=/ code=200
/// service=ns/name micros=…` (logfmt after the time; values with spaces are quoted).
pub(crate) fn format(e: &Entry<'_>, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut line = ketch_api::time::format(now, chrono::SecondsFormat::Millis);
    let quoted = |v: &str| {
        if v.is_empty() || v.contains([' ', '"', '=']) {
            format!("{v:?}")
        } else {
            v.to_string()
        }
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        line,
        " access request_id={} peer={} method={} host={} path={} code={} service={} micros={}",
        quoted(e.request_id),
        e.peer,
        e.method,
        quoted(e.host),
        quoted(e.path),
        e.code,
        quoted(e.service),
        e.took.as_micros()
    );
    line
}

/// The queue to the writer task.
pub(crate) struct AccessLog {
    tx: mpsc::Sender<String>,
    dropped: Counter,
}

impl AccessLog {
    /// Starts the writer task (on the current tokio runtime).
    pub(crate) fn spawn(dropped: Counter) -> Self {
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        tokio::spawn(async move {
            let mut err = tokio::io::stderr();
            let mut batch = String::new();
            while let Some(line) = rx.recv().await {
                batch.push_str(&line);
                while let Ok(more) = rx.try_recv() {
                    batch.push_str(&more);
                }
                if err.write_all(batch.as_bytes()).await.is_err() {
                    return;
                }
                batch.clear();
            }
        });
        Self { tx, dropped }
    }

    pub(crate) fn log(&self, e: &Entry<'_>) {
        if self.tx.try_send(format(e, chrono::Utc::now())).is_err() {
            self.dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_logfmt_after_the_time_with_odd_values_quoted() {
        let now = ketch_api::time::parse("2026-12-06T07:30:00.123Z").unwrap();
        let line = format(
            &Entry {
                request_id: "abc-1",
                peer: "127.0.0.1:5555".parse().unwrap(),
                method: &http::Method::GET,
                host: "hello.default.ketch.localhost:8080",
                path: "/a b",
                code: 200,
                service: "default/hello",
                took: Duration::from_micros(42),
            },
            now,
        );
        assert_eq!(
            line,
            "2026-12-06T07:30:00.123Z access request_id=abc-1 peer=127.0.0.1:5555 method=GET \
             host=hello.default.ketch.localhost:8080 path=\"/a b\" code=200 \
             service=default/hello micros=42\n"
        );
    }
}

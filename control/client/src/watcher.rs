//! A watch that never gives up: list, then watch from the list's resourceVersion; after a
//! dropped connection resume from the last version seen (no gap, no duplicate — the server
//! replays exactly what came after it); after `410 Gone` relist and say so with
//! [`Event::Restarted`], so a cache built from the stream can be replaced whole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use ketch_api::resource::ResourceInfo;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Client, Error, ListParams};

/// What a [`watcher`] reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    /// The full current state, after the first list or a relist; replaces anything known.
    Restarted(Vec<K>),
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct State<K> {
    client: Client,
    info: &'static ResourceInfo,
    ns: Option<String>,
    params: ListParams,
    rv: Option<String>,
    conn: Option<(ByteStream, Vec<u8>)>,
    ready: VecDeque<Result<Event<K>, Error>>,
    backoff: Duration,
    failed: bool,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Follow `info` objects in `ns` (all namespaces when `None`) forever. Starts with a list
/// ([`Event::Restarted`]) unless `from` gives a resourceVersion to resume from. Transport
/// errors are yielded and retried with back-off; the stream never ends by itself.
pub fn watcher<K: DeserializeOwned + Send + 'static>(
    client: Client,
    info: &'static ResourceInfo,
    ns: Option<String>,
    params: ListParams,
    from: Option<String>,
) -> impl Stream<Item = Result<Event<K>, Error>> + Send {
    let state = State {
        client,
        info,
        ns,
        params,
        rv: from,
        conn: None,
        ready: VecDeque::new(),
        backoff: BACKOFF_MIN,
        failed: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(item) = s.ready.pop_front() {
                return Some((item, s));
            }
            if s.failed {
                tokio::time::sleep(s.backoff).await;
                s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
                s.failed = false;
            }
            step(&mut s).await;
        }
    })
}

fn typed<K: DeserializeOwned>(v: Value) -> Result<K, Error> {
    serde_json::from_value(v).map_err(|e| Error::Decode {
        url: "watch".into(),
        message: e.to_string(),
    })
}

fn rv_of(v: &Value) -> Option<String> {
    v.pointer("/metadata/resourceVersion")?
        .as_str()
        .map(str::to_string)
}

/// Advance the state by one network action, queueing what it produced.
async fn step<K: DeserializeOwned>(s: &mut State<K>) {
    let Some(rv) = s.rv.clone() else {
        match s.client.list(s.info, s.ns.as_deref(), &s.params).await {
            Ok(list) => {
                s.rv = rv_of(&list);
                let items = list
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let objects: Result<Vec<K>, Error> = items.into_iter().map(typed).collect();
                s.ready.push_back(objects.map(Event::Restarted));
                s.backoff = BACKOFF_MIN;
            }
            Err(e) => {
                s.ready.push_back(Err(e));
                s.failed = true;
            }
        }
        return;
    };
    let Some((stream, buf)) = s.conn.as_mut() else {
        match s
            .client
            .watch_once(s.info, s.ns.as_deref(), &s.params, Some(&rv))
            .await
        {
            Ok(resp) => s.conn = Some((Box::pin(resp.bytes_stream()), Vec::new())),
            Err(e) if e.code() == Some(410) => s.rv = None,
            Err(e) => {
                s.ready.push_back(Err(e));
                s.failed = true;
            }
        }
        return;
    };
    // Complete lines already buffered come first.
    if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=pos).collect();
        handle_line(s, &line);
        return;
    }
    match stream.next().await {
        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
        Some(Err(e)) => {
            // The connection broke: resume from the last resourceVersion seen.
            s.conn = None;
            s.ready.push_back(Err(Error::Http {
                url: format!("{} (watch)", s.client.base_url()),
                source: e,
            }));
            s.failed = true;
        }
        // The server ended the stream (timeout, lag, restart): resume quietly.
        None => s.conn = None,
    }
}

fn handle_line<K: DeserializeOwned>(s: &mut State<K>, line: &[u8]) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let mut ev: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            s.conn = None;
            s.ready.push_back(Err(Error::Decode {
                url: "watch".into(),
                message: e.to_string(),
            }));
            return;
        }
    };
    let kind = ev
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let object = ev.get_mut("object").map(Value::take).unwrap_or(Value::Null);
    if kind == "ERROR" {
        s.conn = None;
        if object.get("code").and_then(Value::as_u64) == Some(410) {
            s.rv = None;
        } else {
            s.failed = true;
        }
        return;
    }
    if let Some(rv) = rv_of(&object) {
        s.rv = Some(rv);
    }
    s.backoff = BACKOFF_MIN;
    let event = match kind.as_str() {
        "ADDED" => typed(object).map(Event::Added),
        "MODIFIED" => typed(object).map(Event::Modified),
        "DELETED" => typed(object).map(Event::Deleted),
        _ => return, // BOOKMARK: only advances the resume point.
    };
    s.ready.push_back(event);
}

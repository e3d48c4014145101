//! `?watch=true`: newline-delimited JSON events, in revision order, without gaps or
//! duplicates, resumable from any revision the hub still holds (410 Expired otherwise).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ketch_api::params::QueryParams;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::ApiState;
use super::encryption;
use super::error::ApiError;
use super::handlers::Filter;
use super::path::ResourcePath;
use crate::store::command::EventType;
use crate::watch::encode_line;

/// Idle time after which a stream that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

pub async fn watch(
    st: &Arc<ApiState>,
    path: &ResourcePath,
    params: &QueryParams,
) -> Result<Response, ApiError> {
    let filter = Filter::new(path.info, &params.list)?;
    let prefix = path.key();
    // A named watch (`.../pods/web?watch=true`) follows one object; a collection watch a prefix.
    let exact = path.name.is_some();
    let from = match params.read.resource_version.as_deref() {
        None | Some("0") => None,
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "resourceVersion: invalid value {rv:?}: must be a decimal number"
            ))
        })?),
    };
    // Without a resourceVersion, the watch starts with the current state as ADDED events.
    let (initial, from) = match from {
        Some(rv) => (Vec::new(), rv),
        None => {
            st.store.read_barrier().await?;
            let (rev, raw) = st.store.list_raw(&prefix)?;
            let mut lines = Vec::new();
            for bytes in raw {
                let wanted = exact || !filter.is_empty();
                if wanted {
                    let obj: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                        ApiError::Internal(format!("stored object is not JSON: {e}"))
                    })?;
                    if (exact && !key_matches(&obj, path)) || !filter.matches(&obj) {
                        continue;
                    }
                }
                let line = encode_line(EventType::Added, &bytes);
                lines.push(encryption::reveal_line(st, &prefix, line));
            }
            (lines, rev)
        }
    };
    let sub = st
        .hub
        .subscribe(from)
        .map_err(|e| ApiError::Gone(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    // A deadline past what the clock can hold (`timeoutSeconds=18446744073709551615`) is no
    // deadline, not an overflow.
    let deadline = params
        .timeout_seconds
        .and_then(|s| tokio::time::Instant::now().checked_add(Duration::from_secs(s)));
    let bookmarks = params.allow_watch_bookmarks;
    let info = path.info;
    let st2 = st.clone();
    st.metrics.watchers.inc();
    tokio::spawn(async move {
        // Scope by key; then the event as this watch's selectors see it (an object leaving
        // the selection is DELETED for this watch, one entering it ADDED).
        let select = |ev: &crate::watch::WatchEvent| {
            let in_scope = if exact {
                ev.key == prefix
            } else {
                ev.key.starts_with(&prefix)
            };
            in_scope
                .then(|| ev.for_filter(|a| filter.matches_attrs(a)))
                .flatten()
                .map(|line| encryption::reveal_line(&st2, &ev.key, line))
        };
        let mut last = from;
        let run = async {
            for l in initial {
                tx.send(l).await.ok()?;
            }
            for ev in sub.backlog {
                last = ev.revision;
                if let Some(line) = select(&ev) {
                    tx.send(line).await.ok()?;
                }
            }
            let mut live = sub.live;
            loop {
                let next = tokio::time::timeout(BOOKMARK_EVERY, live.recv());
                let next = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, next).await {
                        Ok(n) => n,
                        Err(_) => return Some(()),
                    },
                    None => next.await,
                };
                match next {
                    Ok(Ok(ev)) => {
                        if ev.revision <= last {
                            continue;
                        }
                        last = ev.revision;
                        if let Some(line) = select(&ev) {
                            tx.send(line).await.ok()?;
                        }
                    }
                    // Fell too far behind the broadcast: end the stream; the client resumes
                    // from the last resourceVersion it saw and replays from the history.
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => return Some(()),
                    Ok(Err(broadcast::error::RecvError::Closed)) => return Some(()),
                    Err(_idle) => {
                        if bookmarks {
                            let bm = json!({"type": "BOOKMARK", "object": {
                                "apiVersion": info.api_version(), "kind": info.kind,
                                "metadata": {"resourceVersion": last.max(sub.head).to_string()}}});
                            tx.send(line(&bm)).await.ok()?;
                        } else if tx.is_closed() {
                            return None;
                        }
                    }
                }
            }
        };
        run.await;
        st2.metrics.watchers.dec();
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A named watch lists with the name as a key prefix; keep only the exact name.
fn key_matches(obj: &serde_json::Value, path: &ResourcePath) -> bool {
    obj.pointer("/metadata/name").and_then(|v| v.as_str()) == path.name.as_deref()
}

fn line(v: &serde_json::Value) -> Bytes {
    let mut b = serde_json::to_vec(v).expect("JSON values always serialize");
    b.push(b'\n');
    b.into()
}

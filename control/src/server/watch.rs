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

/// Watches one user may hold open on one server. A node's agent holds a handful, the
/// control plane a dozen; a client that opens watches in a loop gets 429s instead of
/// making the server hold thousands of streams and their buffers.
pub const MAX_WATCHES_PER_USER: usize = 1000;

/// Open watches per user on this server.
#[derive(Debug, Default)]
pub struct WatchCounts(Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>);

impl WatchCounts {
    /// A place for one more watch of `user`, or a 429 naming the limit.
    pub fn enter(&self, user: &str) -> Result<WatchSlot, ApiError> {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = counts.entry(user.to_string()).or_default();
        if *open >= MAX_WATCHES_PER_USER {
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "{user} has {open} watches open on this server; the limit is \
                     {MAX_WATCHES_PER_USER}"
                ),
                causes: Vec::new(),
            });
        }
        *open += 1;
        Ok(WatchSlot {
            counts: self.0.clone(),
            user: user.to_string(),
        })
    }
}

/// One open watch; its place is given back when the stream ends.
#[derive(Debug)]
pub struct WatchSlot {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    user: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = counts.get_mut(&self.user) {
            *open -= 1;
            if *open == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

pub async fn watch(
    st: &Arc<ApiState>,
    path: &ResourcePath,
    params: &QueryParams,
    user: &str,
) -> Result<Response, ApiError> {
    let slot = st.watches.enter(user)?;
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
        let _slot = slot;
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
        // A client that went away ends the watch at once, also while events for other keys
        // keep the loop busy: its slot and buffers are given back.
        let gone = tx.clone();
        tokio::select! {
            _ = run => {}
            () = gone.closed() => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_past_the_watch_limit_gets_a_429_and_others_do_not() {
        let counts = WatchCounts::default();
        let mut open: Vec<WatchSlot> = (0..MAX_WATCHES_PER_USER)
            .map(|_| counts.enter("flood").unwrap())
            .collect();
        let err = counts.enter("flood").unwrap_err();
        assert_eq!(err.status_code(), StatusCode::TOO_MANY_REQUESTS);
        assert!(err.to_string().contains("limit is 1000"), "{err}");
        let _other = counts.enter("system:node:n1").unwrap();
        open.pop();
        let _again = counts.enter("flood").unwrap();
        drop(open);
        drop(_again);
        assert!(!counts.0.lock().unwrap().contains_key("flood"));
    }
}

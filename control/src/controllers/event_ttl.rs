//! Events expire: Kubernetes keeps an Event for `--event-ttl` (1 h by default) after it was
//! last seen, through an etcd lease; ketch's store has no leases, so the leader sweeps.
//! Without it every Pod start, probe failure and eviction would stay in the store for good.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ketch_api::core::Event;

/// How long an Event is kept after it was last seen, unless `--event-ttl` says otherwise.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// When `event` was last seen: `lastTimestamp`, else `eventTime`, else its creation.
fn last_seen(event: &Event) -> Option<DateTime<Utc>> {
    [
        event.last_timestamp.as_deref(),
        event.event_time.as_deref(),
        event.metadata.creation_timestamp.as_deref(),
    ]
    .into_iter()
    .flatten()
    .find_map(ketch_api::time::parse)
}

/// The `(namespace, name)` of every Event last seen more than `ttl` before `now`. An Event
/// without any readable time is kept (it cannot be aged; a newer write gives it one).
pub fn plan(events: &[Event], now: DateTime<Utc>, ttl: Duration) -> Vec<(String, String)> {
    let Ok(ttl) = chrono::Duration::from_std(ttl) else {
        return Vec::new();
    };
    events
        .iter()
        .filter(|e| last_seen(e).is_some_and(|t| now - t > ttl))
        .filter_map(|e| {
            let m = &e.metadata;
            Some((m.namespace.clone()?, m.name.clone()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, last: Option<&str>, created: Option<&str>) -> Event {
        let mut e = Event::default();
        e.metadata.namespace = Some("default".into());
        e.metadata.name = Some(name.into());
        e.metadata.creation_timestamp = created.map(Into::into);
        e.last_timestamp = last.map(Into::into);
        e
    }

    #[test]
    fn events_last_seen_longer_ago_than_the_ttl_expire() {
        let now = ketch_api::time::parse("2026-12-07T12:00:00Z").unwrap();
        let events = [
            // Created long ago but seen again recently: kept.
            event(
                "recurring",
                Some("2026-12-07T11:30:00Z"),
                Some("2026-12-06T00:00:00Z"),
            ),
            event("old", Some("2026-12-07T10:59:59Z"), None),
            // No lastTimestamp: its creation counts.
            event("created-old", None, Some("2026-12-07T09:00:00Z")),
            event("fresh", None, Some("2026-12-07T11:59:00Z")),
            event("timeless", None, None),
        ];
        let expired = plan(&events, now, DEFAULT_EVENT_TTL);
        assert_eq!(
            expired,
            [
                ("default".to_string(), "old".to_string()),
                ("default".to_string(), "created-old".to_string())
            ]
        );
        assert!(plan(&events, now, Duration::from_secs(86_400 * 2)).is_empty());
    }
}

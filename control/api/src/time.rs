//! Timestamps as the API writes them. Kubernetes has two wire types: `Time` (RFC 3339,
//! whole seconds, UTC: `creationTimestamp`, condition transitions, container states) and
//! `MicroTime` (microseconds: Lease renewals, Events' `eventTime`); CRI log lines carry
//! nanoseconds. Every timestamp ketch writes comes from here, so they all parse the same way.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now as a Kubernetes `Time`: `2026-12-07T10:00:00Z`.
pub fn now() -> String {
    format(Utc::now(), SecondsFormat::Secs)
}

/// Now as a Kubernetes `MicroTime`: `2026-12-07T10:00:00.123456Z`.
pub fn now_micro() -> String {
    format(Utc::now(), SecondsFormat::Micros)
}

/// Now with nanoseconds, as CRI log lines are stamped.
pub fn now_nano() -> String {
    format(Utc::now(), SecondsFormat::Nanos)
}

/// `t` in RFC 3339, UTC (`Z`), with `precision`.
pub fn format(t: DateTime<Utc>, precision: SecondsFormat) -> String {
    t.to_rfc3339_opts(precision, true)
}

/// An RFC 3339 timestamp (any of the precisions above, or an offset), in UTC; `None` when it
/// is not one.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc_at_the_kubernetes_precisions() {
        let t = parse("2026-12-07T10:00:00.123456789+01:00").unwrap();
        assert_eq!(format(t, SecondsFormat::Secs), "2026-12-07T09:00:00Z");
        assert_eq!(
            format(t, SecondsFormat::Micros),
            "2026-12-07T09:00:00.123456Z"
        );
        assert!(parse(&now()).is_some());
        assert!(parse(&now_micro()).is_some());
        assert!(parse(&now_nano()).is_some());
        assert_eq!(parse("yesterday"), None);
    }
}

//! The node heartbeat's wire: `POST /heartbeat/{node}` (no body), answered with a
//! [`HeartbeatAnswer`]. It is ketch's own endpoint, beside the Kubernetes API: an agent
//! calls it every few seconds, the leader keeps it in memory (no store write), and its
//! answer says when to come back. Defined here once for the server and the agents.

use serde::{Deserialize, Serialize};

/// The path of `node`'s heartbeat.
pub fn path(node: &str) -> String {
    format!("/heartbeat/{node}")
}

/// The leader's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAnswer {
    /// Milliseconds until the next heartbeat is due.
    pub interval_millis: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_camel_case_json() {
        let a = HeartbeatAnswer {
            interval_millis: 5000,
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"intervalMillis":5000}"#
        );
        assert_eq!(path("n1"), "/heartbeat/n1");
    }
}

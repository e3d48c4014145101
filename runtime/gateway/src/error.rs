//! [`GatewayError`] and its mapping to HTTP: the one place the gateway's failures become
//! responses (a failure of the Pod itself is mapped by [`PodError`]).

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ketch_api::format;
use ketch_workload::PodError;
use ketch_workload::wire::{plain, status_json, unavailable};

/// Why the gateway answered a request itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A peer's `x-ketch-pod` request without the cluster token.
    #[error("unauthorized")]
    Unauthorized,
    /// No Service host, Ingress rule or path prefix matches.
    #[error(
        "no route for host {host:?} path {path:?}: use Host <service>.<namespace>.{domain}, an Ingress, or a NodePort"
    )]
    NoRoute {
        host: String,
        path: String,
        domain: String,
    },
    /// A route names a Service that does not exist.
    #[error("service {namespace}/{service} not found")]
    ServiceNotFound { namespace: String, service: String },
    /// The Service has no Ready endpoint.
    #[error("service {namespace}/{service} has no ready endpoints")]
    NoEndpoints { namespace: String, service: String },
    /// No response head within the deadline.
    #[error("{service} did not respond within {}", format::duration(*.budget))]
    Deadline {
        service: String,
        budget: std::time::Duration,
    },
    /// The request body is over the limit.
    #[error("request body larger than the gateway limit of {}", format::bytes(*.limit))]
    BodyTooLarge { limit: u64 },
    /// The node hosting the endpoint could not be reached.
    #[error("node {node}: {message}")]
    Upstream { node: String, message: String },
    /// A Pod of this node did not answer.
    #[error(transparent)]
    Pod(#[from] PodError),
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let msg = self.to_string();
        match self {
            GatewayError::Unauthorized => {
                status_json(StatusCode::UNAUTHORIZED, "Unauthorized", msg)
            }
            GatewayError::NoRoute { .. } | GatewayError::ServiceNotFound { .. } => {
                plain(StatusCode::NOT_FOUND, msg)
            }
            GatewayError::NoEndpoints { .. } => unavailable(msg),
            GatewayError::Deadline { .. } => plain(StatusCode::GATEWAY_TIMEOUT, msg),
            GatewayError::BodyTooLarge { .. } => plain(StatusCode::PAYLOAD_TOO_LARGE, msg),
            GatewayError::Upstream { .. } => plain(StatusCode::BAD_GATEWAY, msg),
            GatewayError::Pod(e) => e.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::header;
    use ketch_workload::InvokeFailure;

    use super::*;

    #[test]
    fn gateway_errors_map_to_proxy_statuses() {
        let code = |e: GatewayError| e.into_response().status();
        let r = GatewayError::NoEndpoints {
            namespace: "default".into(),
            service: "hello".into(),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(
            code(GatewayError::Deadline {
                service: "default/hello".into(),
                budget: Duration::from_secs(60)
            }),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            code(GatewayError::BodyTooLarge { limit: 1 << 20 }),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            code(GatewayError::NoRoute {
                host: "x".into(),
                path: "/".into(),
                domain: "ketch.localhost".into()
            }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            code(GatewayError::ServiceNotFound {
                namespace: "default".into(),
                service: "x".into()
            }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            code(GatewayError::Upstream {
                node: "n2".into(),
                message: "refused".into()
            }),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(code(GatewayError::Unauthorized), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_pods_failure_keeps_its_own_status() {
        let e = GatewayError::from(PodError::Invoke {
            namespace: "default".into(),
            pod: "p".into(),
            failure: InvokeFailure::Timeout {
                budget: Duration::from_secs(1),
            },
        });
        assert_eq!(
            e.to_string(),
            "pod default/p: request exceeded the 1s CPU deadline"
        );
        assert_eq!(e.into_response().status(), StatusCode::GATEWAY_TIMEOUT);
    }
}

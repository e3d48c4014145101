//! [`AgentError`] and its mapping to HTTP — the only place agent errors become responses.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use ketch_api::meta::Status;

use crate::workload::InvokeFailure;

/// What the agent can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A setting in [`crate::AgentConfig`] is unusable.
    #[error("invalid agent configuration: {0}")]
    Config(String),
    /// The API server refused a request or could not be reached.
    #[error("{context}")]
    Api {
        context: String,
        #[source]
        source: ketch_client::Error,
    },
    /// The Wasm engine could not be created.
    #[error("creating the wasm engine")]
    Engine(#[source] ketch_wasm::WasmError),
    /// Binding or serving the agent's HTTP endpoint failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// No such Pod on this node.
    #[error("pods \"{pod}\" not found on this node (namespace {namespace})")]
    PodNotFound { namespace: String, pod: String },
    /// The Pod has no such container.
    #[error("container \"{container}\" not found in pod {namespace}/{pod}")]
    ContainerNotFound {
        namespace: String,
        pod: String,
        container: String,
    },
    /// The Pod is on this node but none of its containers is running.
    #[error("pod {namespace}/{pod} is not running")]
    PodNotRunning { namespace: String, pod: String },
    /// The workload failed the request.
    #[error("pod {namespace}/{pod}: {failure}")]
    Invoke {
        namespace: String,
        pod: String,
        failure: InvokeFailure,
    },
    /// Missing or wrong bearer token.
    #[error("unauthorized")]
    Unauthorized,
    /// The agent is stopping.
    #[error("the node agent is shutting down")]
    ShuttingDown,
    /// Gateway: no Service host, Ingress rule or path prefix matches.
    #[error(
        "no route for host {host:?} path {path:?}: use Host <service>.<namespace>.{domain}, an Ingress, or a NodePort"
    )]
    NoRoute {
        host: String,
        path: String,
        domain: String,
    },
    /// Gateway: a route names a Service that does not exist.
    #[error("service {namespace}/{service} not found")]
    ServiceNotFound { namespace: String, service: String },
    /// Gateway: the Service has no Ready endpoint.
    #[error("service {namespace}/{service} has no ready endpoints")]
    NoEndpoints { namespace: String, service: String },
    /// Gateway: no response head within the deadline.
    #[error("{service} did not respond within {}", crate::format::duration(*.budget))]
    Deadline {
        service: String,
        budget: std::time::Duration,
    },
    /// Gateway: the request body is over the limit.
    #[error("request body larger than the gateway limit of {}", crate::format::bytes(*.limit))]
    BodyTooLarge { limit: u64 },
    /// Gateway: the node hosting the endpoint could not be reached.
    #[error("node {node}: {message}")]
    Upstream { node: String, message: String },
}

fn status_json(code: StatusCode, reason: &str, message: String) -> Response {
    let body =
        serde_json::to_vec(&Status::failure(code.as_u16(), reason, message)).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn plain(code: StatusCode, message: String) -> Response {
    let mut r = Response::new(Body::from(format!("{message}\n")));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let msg = self.to_string();
        match &self {
            AgentError::PodNotFound { .. } | AgentError::ContainerNotFound { .. } => {
                status_json(StatusCode::NOT_FOUND, "NotFound", msg)
            }
            AgentError::Unauthorized => status_json(StatusCode::UNAUTHORIZED, "Unauthorized", msg),
            AgentError::PodNotRunning { .. } => {
                let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, msg);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            AgentError::Invoke { failure, .. } => match failure {
                InvokeFailure::Timeout { .. } => plain(StatusCode::GATEWAY_TIMEOUT, msg),
                InvokeFailure::Overloaded => {
                    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, msg);
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    r
                }
                InvokeFailure::MemoryLimit { .. } | InvokeFailure::Trap(_) => {
                    plain(StatusCode::INTERNAL_SERVER_ERROR, msg)
                }
                InvokeFailure::Guest(_)
                | InvokeFailure::NoResponse
                | InvokeFailure::Unreachable(_) => plain(StatusCode::BAD_GATEWAY, msg),
                InvokeFailure::BadRequest(_) => plain(StatusCode::BAD_REQUEST, msg),
                InvokeFailure::NotHttp => plain(StatusCode::NOT_IMPLEMENTED, msg),
            },
            AgentError::NoRoute { .. } | AgentError::ServiceNotFound { .. } => {
                plain(StatusCode::NOT_FOUND, msg)
            }
            AgentError::NoEndpoints { .. } | AgentError::ShuttingDown => {
                let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, msg);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            AgentError::Deadline { .. } => plain(StatusCode::GATEWAY_TIMEOUT, msg),
            AgentError::BodyTooLarge { .. } => plain(StatusCode::PAYLOAD_TOO_LARGE, msg),
            AgentError::Upstream { .. } => plain(StatusCode::BAD_GATEWAY, msg),
            AgentError::Config(_)
            | AgentError::Api { .. }
            | AgentError::Engine(_)
            | AgentError::Io { .. } => {
                status_json(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn invoke(failure: InvokeFailure) -> Response {
        AgentError::Invoke {
            namespace: "default".into(),
            pod: "p".into(),
            failure,
        }
        .into_response()
    }

    #[test]
    fn invoke_failures_map_to_gateway_style_statuses() {
        let r = invoke(InvokeFailure::Timeout {
            budget: Duration::from_secs(30),
        });
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        let r = invoke(InvokeFailure::Overloaded);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(
            invoke(InvokeFailure::MemoryLimit { limit: 64 << 20 }).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            invoke(InvokeFailure::Trap("unreachable".into())).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn failure_messages_name_the_limit() {
        assert_eq!(
            InvokeFailure::Timeout {
                budget: Duration::from_secs(30)
            }
            .to_string(),
            "request exceeded the 30s CPU deadline"
        );
        assert_eq!(
            InvokeFailure::MemoryLimit { limit: 64 << 20 }.to_string(),
            "request exceeded the memory limit of 64Mi"
        );
    }

    #[test]
    fn gateway_errors_map_to_proxy_statuses() {
        let code = |e: AgentError| e.into_response().status();
        let r = AgentError::NoEndpoints {
            namespace: "default".into(),
            service: "hello".into(),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(
            code(AgentError::Deadline {
                service: "default/hello".into(),
                budget: Duration::from_secs(60)
            }),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            code(AgentError::BodyTooLarge { limit: 1 << 20 }),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            code(AgentError::NoRoute {
                host: "x".into(),
                path: "/".into(),
                domain: "ketch.localhost".into()
            }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            code(AgentError::Upstream {
                node: "n2".into(),
                message: "refused".into()
            }),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn unknown_pods_are_a_status_shaped_404() {
        let r = AgentError::PodNotFound {
            namespace: "default".into(),
            pod: "x".into(),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}

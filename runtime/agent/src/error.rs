//! [`AgentError`] and its mapping to HTTP — the only place the agent endpoint's errors
//! become responses (a Pod's own failures are mapped by [`PodError`]).

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ketch_workload::PodError;
use ketch_workload::wire::status_json;

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
    /// A Pod of this node did not answer (not here, not running, or failed the request).
    #[error(transparent)]
    Pod(#[from] PodError),
    /// Missing or wrong bearer token.
    #[error("unauthorized")]
    Unauthorized,
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let msg = self.to_string();
        match self {
            AgentError::Pod(e) => e.into_response(),
            AgentError::Unauthorized => status_json(StatusCode::UNAUTHORIZED, "Unauthorized", msg),
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
    use http::header;
    use ketch_workload::InvokeFailure;

    use super::*;

    #[test]
    fn every_agent_error_has_its_status() {
        let code = |e: AgentError| e.into_response().status();
        assert_eq!(code(AgentError::Unauthorized), StatusCode::UNAUTHORIZED);
        assert_eq!(
            code(AgentError::Config("x".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            code(AgentError::Io {
                context: "listening".into(),
                source: std::io::Error::other("taken"),
            }),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let r = AgentError::from(PodError::ContainerNotFound {
            namespace: "default".into(),
            pod: "p".into(),
            container: "c".into(),
        })
        .into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            code(AgentError::from(PodError::Invoke {
                namespace: "default".into(),
                pod: "p".into(),
                failure: InvokeFailure::Trap("unreachable".into()),
            })),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}

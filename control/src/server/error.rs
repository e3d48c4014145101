//! The one place API errors become HTTP: every handler returns [`ApiError`], and its
//! `IntoResponse` writes a Kubernetes `Status` body with the matching code and reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ketch_api::FieldError;
use ketch_api::decode::Invalid;
use ketch_api::params::ParamError;
use ketch_api::resource::ResourceInfo;
use serde_json::json;

use crate::store::StoreError;
use crate::store::command::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict {
        resource: String,
        name: String,
        message: String,
    },
    #[error("{0}")]
    Gone(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("request body too large: the limit is {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 429: not now. `causes` are `(reason, message)` pairs (an eviction refused by a
    /// disruption budget says which budget and why, reason `DisruptionBudget`).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        causes: Vec<(String, String)>,
    },
    #[error("{0}")]
    Unavailable(String),
    /// 502: what answered on the server's behalf (a node's agent) was not what it should be.
    #[error("{0}")]
    BadGateway(String),
    /// 507: the store is over its quota (`--quota-backend-bytes`): deletes free space.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        ApiError::NotFound {
            resource: qualified(info),
            name: name.to_string(),
        }
    }

    /// Map a store refusal of one write to the API error for `info`/`name`.
    pub fn from_write(err: WriteError, info: &ResourceInfo, name: &str) -> Self {
        match err {
            WriteError::AlreadyExists => ApiError::AlreadyExists {
                resource: qualified(info),
                name: name.to_string(),
            },
            WriteError::NotFound => ApiError::not_found(info, name),
            WriteError::Conflict(message) => ApiError::Conflict {
                resource: qualified(info),
                name: name.to_string(),
                message,
            },
            WriteError::Invalid(message) => ApiError::BadRequest(message),
            WriteError::FieldInvalid {
                field,
                value,
                detail,
            } => ApiError::Invalid(Invalid {
                kind: info.group_kind(),
                name: name.to_string(),
                errors: vec![FieldError::invalid(field, value, detail)],
            }),
            WriteError::Rejected(errors) => ApiError::Invalid(Invalid {
                kind: info.group_kind(),
                name: name.to_string(),
                errors,
            }),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Kubernetes `Status.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Invalid(_) => "Invalid",
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Gone(_) => "Expired",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::TooLarge { .. } => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::BadGateway(_) => "BadGateway",
            ApiError::InsufficientStorage(_) => "InsufficientStorage",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object sent to the client.
    pub fn to_status(&self) -> serde_json::Value {
        let code = self.status_code().as_u16();
        let mut details = serde_json::Map::new();
        match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => {
                details.insert("name".into(), json!(name));
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                details.insert("kind".into(), json!(kind));
                if !group.is_empty() {
                    details.insert("group".into(), json!(group));
                }
            }
            ApiError::Invalid(invalid) => {
                details.insert("name".into(), json!(invalid.name));
                details.insert("kind".into(), json!(invalid.kind));
                let causes: Vec<_> = invalid
                    .errors
                    .iter()
                    .map(|e| {
                        json!({"reason": e.reason(), "message": e.to_string(), "field": e.field})
                    })
                    .collect();
                details.insert("causes".into(), json!(causes));
            }
            ApiError::TooManyRequests { causes, .. } if !causes.is_empty() => {
                let causes: Vec<_> = causes
                    .iter()
                    .map(|(reason, message)| json!({"reason": reason, "message": message}))
                    .collect();
                details.insert("causes".into(), json!(causes));
            }
            _ => {}
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": code,
        });
        if !details.is_empty() {
            status["details"] = serde_json::Value::Object(details);
        }
        status
    }
}

/// `pods` or `deployments.apps`: how Kubernetes names a resource in messages.
pub fn qualified(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotLeader { leader } => ApiError::Unavailable(match leader {
                Some((id, addr)) => {
                    format!("this server is not the leader; the leader is server {id} at {addr}")
                }
                None => "this server is not the leader and no leader is known yet; retry".into(),
            }),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::Overloaded(message) => ApiError::TooManyRequests {
                message,
                causes: Vec::new(),
            },
            StoreError::Membership(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A query string the server cannot read (`timeoutSeconds: invalid value "x"`).
impl From<ParamError> for ApiError {
    fn from(err: ParamError) -> Self {
        ApiError::BadRequest(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.status_code();
        if code.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let mut resp = (code, axum::Json(self.to_status())).into_response();
        if code == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        // client-go waits this long before it retries a 429.
        if code == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_http_code_and_kubernetes_reason() {
        let m = || "m".to_string();
        let cases = [
            (ApiError::BadRequest(m()), 400, "BadRequest"),
            (ApiError::Unauthorized, 401, "Unauthorized"),
            (ApiError::Forbidden(m()), 403, "Forbidden"),
            (ApiError::Gone(m()), 410, "Expired"),
            (
                ApiError::TooLarge { limit: 1 },
                413,
                "RequestEntityTooLarge",
            ),
            (
                ApiError::UnsupportedMediaType(m()),
                415,
                "UnsupportedMediaType",
            ),
            (ApiError::MethodNotAllowed(m()), 405, "MethodNotAllowed"),
            (ApiError::Unavailable(m()), 503, "ServiceUnavailable"),
            (ApiError::BadGateway(m()), 502, "BadGateway"),
            (
                ApiError::InsufficientStorage(m()),
                507,
                "InsufficientStorage",
            ),
            (ApiError::Internal(m()), 500, "InternalError"),
            (StoreError::Overloaded(m()).into(), 429, "TooManyRequests"),
        ];
        for (err, code, reason) in cases {
            assert_eq!(err.status_code().as_u16(), code, "{err:?}");
            assert_eq!(err.reason(), reason, "{err:?}");
            assert_eq!(err.to_status()["code"], code, "{err:?}");
            assert_eq!(err.to_status()["reason"], reason, "{err:?}");
        }
    }

    #[test]
    fn a_refused_eviction_is_a_429_status_naming_the_budget_as_its_cause() {
        let err = ApiError::TooManyRequests {
            message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            causes: vec![(
                "DisruptionBudget".into(),
                "The disruption budget web needs 2 healthy pods and has 2 currently".into(),
            )],
        };
        assert_eq!(err.status_code(), StatusCode::TOO_MANY_REQUESTS);
        let status = err.to_status();
        assert_eq!(status["code"], 429);
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(
            status["message"],
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}])
        );
        let bare = ApiError::TooManyRequests {
            message: "slow down".into(),
            causes: Vec::new(),
        };
        assert!(bare.to_status().get("details").is_none());
    }
}

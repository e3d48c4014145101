//! Error responses as the node writes them: a Kubernetes `Status` body for API-shaped
//! errors (the agent endpoint's 401 and 404), plain text for what a proxied client reads
//! (the gateway's and a workload's failures), `Retry-After` on what passes. The agent's,
//! the gateway's and [`crate::PodError`]'s mappings are built from these.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use ketch_api::meta::Status;

/// A `Status`-shaped JSON error, as the API server writes them.
pub fn status_json(code: StatusCode, reason: &str, message: String) -> Response<Body> {
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

/// A one-line plain-text error.
pub fn plain(code: StatusCode, message: String) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{message}\n")));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// [`plain`] 503 with `Retry-After: 1`: the condition passes (an instance frees up, an
/// endpoint becomes Ready).
pub fn unavailable(message: String) -> Response<Body> {
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

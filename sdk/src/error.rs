use std::fmt;

use crate::response::{IntoResponse, Response};

/// What can go wrong in the SDK's helpers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be understood (bad JSON, a malformed parameter, a failed body
    /// stream). Answers 400 when returned from a handler.
    BadRequest(String),
    /// A body is over the SDK's limit ([`crate::MAX_BODY_BYTES`] for requests). Answers 413
    /// when returned from a handler.
    TooLarge(String),
    /// An outbound HTTP request failed (denied by the host, unreachable, bad URL, ...).
    Http(String),
    /// A `wasi:keyvalue` call failed (no store on this host, a size limit, ...).
    KeyValue(String),
    /// A configuration variable is missing or cannot be parsed.
    Config(String),
    /// Serializing or parsing JSON failed.
    Json(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(m) => write!(f, "bad request: {m}"),
            Error::TooLarge(m) => write!(f, "too large: {m}"),
            Error::Http(m) => write!(f, "outbound HTTP: {m}"),
            Error::KeyValue(m) => write!(f, "key-value: {m}"),
            Error::Config(m) => write!(f, "config: {m}"),
            Error::Json(m) => write!(f, "JSON: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl IntoResponse for Error {
    /// 400 for [`Error::BadRequest`], 413 for [`Error::TooLarge`], 502 for [`Error::Http`] (an upstream failed), 500 for
    /// the rest; the body is the error's text. The error is also logged to stderr.
    fn into_response(self) -> Response {
        let status = match self {
            Error::BadRequest(_) => 400,
            Error::TooLarge(_) => 413,
            Error::Http(_) => 502,
            _ => 500,
        };
        if status >= 500 {
            eprintln!("error: {self}");
        }
        Response::text(format!("{self}\n")).with_status(status)
    }
}

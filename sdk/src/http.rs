//! Outbound HTTP over `wasi:http/outgoing-handler`.
//!
//! On ketch, a URL's host may be an in-cluster Service name — `http://backend` (same
//! namespace), `http://backend.other`, `http://backend.other.svc.cluster.local` — or a host
//! the Pod allows in its `ketch.dev/allowed-outbound-hosts` annotation; anything else is
//! refused by the node (an [`Error::Http`] naming `HttpRequestDenied`).
//!
//! ```no_run
//! use ketch_sdk::http::{self, OutgoingRequest};
//! use ketch_sdk::Method;
//!
//! # fn main() -> Result<(), ketch_sdk::Error> {
//! let resp = http::get("http://backend/healthz")?;
//! assert_eq!(resp.status(), 200);
//!
//! let created = OutgoingRequest::new(Method::Post, "http://backend/items")
//!     .header("content-type", "application/json")
//!     .body(r#"{"name":"x"}"#)
//!     .send()?;
//! println!("{}", created.text_body());
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, OutgoingBody, OutgoingRequest as WasiRequest, RequestOptions, Scheme,
};

use crate::error::Error;
use crate::headers::Headers;
use crate::method::Method;
use crate::response::Response;
use crate::rt;
use crate::serve::{Wait, method_to_wasi, read_body, to_fields, write_all};

/// The largest response body [`send`] reads: 64 MiB.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// An outbound request, built then sent with [`OutgoingRequest::send`] or
/// [`OutgoingRequest::send_async`].
#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    method: Method,
    url: String,
    headers: Headers,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl OutgoingRequest {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Headers::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    ///
    /// # Errors
    /// [`Error::Json`] when `value` cannot be serialized.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value).map_err(|e| Error::Json(e.to_string()))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Limits connecting and waiting for the response head (each) to `timeout`. Without it,
    /// the host's defaults apply (and the handler's own request deadline always does).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response, blocking this request's handler.
    ///
    /// # Errors
    /// [`Error::Http`]: a malformed URL, a host the node refuses, a connection or protocol
    /// failure, or a response body over [`MAX_RESPONSE_BYTES`].
    pub fn send(self) -> Result<Response, Error> {
        rt::block_on(self.send_async())
    }

    /// Sends the request; awaiting several of these (e.g. joined) runs them concurrently.
    ///
    /// # Errors
    /// As [`OutgoingRequest::send`].
    pub async fn send_async(mut self) -> Result<Response, Error> {
        let url = Url::parse(&self.url)?;
        // The body is known in full: say its length rather than stream it chunked, which
        // some servers refuse.
        let has_body = !self.body.is_empty()
            || matches!(self.method, Method::Post | Method::Put | Method::Patch);
        if has_body && self.headers.get("content-length").is_none() {
            self.headers
                .set("content-length", self.body.len().to_string());
        }
        let req = WasiRequest::new(to_fields(self.headers));
        let bad = |what: &str| Error::Http(format!("{what} of {:?} refused by the host", self.url));
        req.set_method(&method_to_wasi(&self.method))
            .map_err(|()| bad("method"))?;
        req.set_scheme(Some(&url.scheme))
            .map_err(|()| bad("scheme"))?;
        req.set_authority(Some(url.authority))
            .map_err(|()| bad("host"))?;
        req.set_path_with_query(Some(&url.path_with_query))
            .map_err(|()| bad("path"))?;
        let options = self.timeout.map(|t| {
            let o = RequestOptions::new();
            let ns = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            // A host may not support a timeout; then its default applies.
            let _ = o.set_connect_timeout(Some(ns));
            let _ = o.set_first_byte_timeout(Some(ns));
            o
        });
        let body = req.body().map_err(|()| bad("body"))?;
        let pending = outgoing_handler::handle(req, options).map_err(|e| code(&self.url, e))?;
        {
            let stream = body
                .write()
                .map_err(|()| Error::Http("request body stream unavailable".into()))?;
            write_all(&stream, &self.body)
                .map_err(|e| Error::Http(format!("sending the body to {}: {e:?}", self.url)))?;
        }
        OutgoingBody::finish(body, None).map_err(|e| code(&self.url, e))?;
        let incoming = loop {
            match pending.get() {
                Some(Ok(result)) => break result.map_err(|e| code(&self.url, e))?,
                Some(Err(())) => return Err(Error::Http("response already taken".into())),
                None => rt::ready(pending.subscribe()).await,
            }
        };
        let status = incoming.status();
        let headers = Headers::from_lowercase(incoming.headers().entries());
        let body = incoming
            .consume()
            .map_err(|()| Error::Http("response body already taken".into()))?;
        let bytes = read_body(body, MAX_RESPONSE_BYTES, Wait::Poll)
            .await
            .map_err(|e| Error::Http(format!("{}: {e}", self.url)))?;
        let mut resp = Response::new(status).with_body(bytes);
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}

/// `GET url`, blocking. See [`OutgoingRequest::send`].
///
/// # Errors
/// As [`OutgoingRequest::send`].
pub fn get(url: &str) -> Result<Response, Error> {
    OutgoingRequest::new(Method::Get, url).send()
}

/// `GET url`, as a future. See [`OutgoingRequest::send_async`].
///
/// # Errors
/// As [`OutgoingRequest::send`].
pub async fn get_async(url: &str) -> Result<Response, Error> {
    OutgoingRequest::new(Method::Get, url).send_async().await
}

/// Sends `req`, blocking. Same as [`OutgoingRequest::send`].
///
/// # Errors
/// As [`OutgoingRequest::send`].
pub fn send(req: OutgoingRequest) -> Result<Response, Error> {
    req.send()
}

fn code(url: &str, e: ErrorCode) -> Error {
    Error::Http(format!("{url}: {e:?}"))
}

/// The parts of an absolute `http`/`https` URL that wasi:http needs.
#[derive(Debug)]
struct Url<'a> {
    scheme: Scheme,
    authority: &'a str,
    path_with_query: String,
}

impl<'a> Url<'a> {
    fn parse(url: &'a str) -> Result<Self, Error> {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
            _ => {
                return Err(Error::Http(format!(
                    "URL {url:?} must start with http:// or https://"
                )));
            }
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() {
            return Err(Error::Http(format!("URL {url:?} has no host")));
        }
        // wasi:http wants a path starting with `/` (`?q` alone becomes `/?q`).
        let path_with_query = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Ok(Url {
            scheme,
            authority,
            path_with_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_host_and_path() {
        let u = Url::parse("http://backend").unwrap();
        assert!(matches!(u.scheme, Scheme::Http));
        assert_eq!((u.authority, u.path_with_query.as_str()), ("backend", "/"));
        assert_eq!(Url::parse("http://b?q=1").unwrap().path_with_query, "/?q=1");
        let u = Url::parse("HTTPS://api.example.com:8443/v1/x?y=1").unwrap();
        assert!(matches!(u.scheme, Scheme::Https));
        assert_eq!(
            (u.authority, u.path_with_query.as_str()),
            ("api.example.com:8443", "/v1/x?y=1")
        );
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("http:///path").is_err());
        assert!(Url::parse("backend").is_err());
    }
}

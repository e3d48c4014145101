use std::cell::OnceCell;

use wasip2::http::types::IncomingRequest;

use crate::error::Error;
use crate::headers::Headers;
use crate::method::Method;
use crate::query::{parse_query, percent_decode};

/// The largest request body the SDK reads into a [`Request`]: 16 MiB. A bigger body gives
/// [`Error::TooLarge`] (413 when returned from a handler).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// An incoming HTTP request.
///
/// Headers and body are fetched from the host the first time they are asked for, so a
/// handler that never looks at them does not pay for copying them.
pub struct Request {
    method: Method,
    path: String,
    query: String,
    authority: OnceCell<Option<String>>,
    headers: OnceCell<Headers>,
    body: OnceCell<Result<Vec<u8>, Error>>,
    params: Vec<(String, String)>,
    /// The host's request, while headers or body may still be fetched from it.
    source: Option<IncomingRequest>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("authority", &self.authority)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A request for `path_with_query` (`/users/7?full=1`), without headers or body: what
    /// tests of handlers and routers start from.
    pub fn new(method: Method, path_with_query: &str) -> Self {
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query, ""));
        Self {
            method,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            query: query.into(),
            authority: OnceCell::new(),
            headers: OnceCell::new(),
            body: OnceCell::new(),
            params: Vec::new(),
            source: None,
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers_mut().append(name, value);
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = OnceCell::from(Ok(body.into()));
        self
    }

    /// The request the host handed to the exported handler.
    pub(crate) fn from_wasi(request: IncomingRequest) -> Self {
        let method = crate::serve::method_from_wasi(&request.method());
        let pq = request.path_with_query().unwrap_or_else(|| "/".into());
        let mut req = Request::new(method, &pq);
        req.source = Some(request);
        req
    }

    /// The headers, to change (fetched from the host first if they were not yet).
    pub fn headers_mut(&mut self) -> &mut Headers {
        self.headers();
        self.headers
            .get_mut()
            .expect("initialized by headers() just above")
    }

    pub(crate) fn set_params(&mut self, params: Vec<(String, String)>) {
        self.params = params;
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path, as sent (not decoded), always starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string after `?` (empty when there is none).
    pub fn query_string(&self) -> &str {
        &self.query
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        parse_query(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Every query parameter, decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query)
    }

    /// The host the request was sent to (`hello.default.ketch.localhost:8080`), when known.
    pub fn authority(&self) -> Option<&str> {
        self.authority
            .get_or_init(|| self.source.as_ref().and_then(IncomingRequest::authority))
            .as_deref()
    }

    /// The first value of header `name` (case-insensitive), when it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name)
    }

    /// All request headers.
    pub fn headers(&self) -> &Headers {
        self.headers.get_or_init(|| match &self.source {
            Some(r) => Headers::from_lowercase(r.headers().entries()),
            None => Headers::new(),
        })
    }

    /// The body's bytes (read from the host on first use, up to [`MAX_BODY_BYTES`]).
    ///
    /// # Errors
    /// [`Error::TooLarge`] over [`MAX_BODY_BYTES`]; [`Error::BadRequest`] when the client's
    /// body stream failed.
    pub fn body(&self) -> Result<&[u8], Error> {
        self.body
            .get_or_init(|| match &self.source {
                Some(r) => crate::serve::read_request_body(r),
                None => Ok(Vec::new()),
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    /// Takes the body out of the request.
    ///
    /// # Errors
    /// As [`Request::body`].
    pub fn into_body(self) -> Result<Vec<u8>, Error> {
        self.body()?;
        self.body
            .into_inner()
            .expect("initialized by body() just above")
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    /// As [`Request::body`], or [`Error::BadRequest`] when it is not valid UTF-8.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(self.body()?)
            .map_err(|e| Error::BadRequest(format!("the body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    /// As [`Request::body`], or [`Error::BadRequest`] naming the position of the first error.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(self.body()?)
            .map_err(|e| Error::BadRequest(format!("the body is not the expected JSON: {e}")))
    }

    /// Path parameter `name` matched by a [`crate::Router`] pattern (`:name` or `*name`),
    /// percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Path parameter `name` parsed as `T` (`req.param_as::<u64>("id")`).
    ///
    /// # Errors
    /// [`Error::BadRequest`] when the parameter is missing or does not parse.
    pub fn param_as<T: std::str::FromStr>(&self, name: &str) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self
            .param(name)
            .ok_or_else(|| Error::BadRequest(format!("no path parameter {name:?}")))?;
        raw.parse()
            .map_err(|e| Error::BadRequest(format!("path parameter {name}={raw:?}: {e}")))
    }

    /// The path with `%XX` escapes decoded.
    pub fn decoded_path(&self) -> String {
        percent_decode(&self.path, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_path_and_query_and_reads_params() {
        let r = Request::new(Method::Get, "/a%20b?x=1&y=two+words&x=3").with_header("X-A", "v");
        assert_eq!(r.path(), "/a%20b");
        assert_eq!(r.decoded_path(), "/a b");
        assert_eq!(r.query("x").as_deref(), Some("1"));
        assert_eq!(r.query("y").as_deref(), Some("two words"));
        assert_eq!(r.query("z"), None);
        assert_eq!(r.query_pairs().len(), 3);
        assert_eq!(r.header("x-a"), Some("v"));
        assert_eq!(Request::new(Method::Get, "").path(), "/");
        assert_eq!(Request::new(Method::Get, "?q").query_string(), "q");
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_body_errors_are_bad_requests() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct In {
            n: u32,
        }
        let ok = Request::new(Method::Post, "/").with_body(r#"{"n": 3}"#);
        assert_eq!(ok.json::<In>().unwrap(), In { n: 3 });
        let bad = Request::new(Method::Post, "/").with_body("{");
        assert_eq!(bad.body().unwrap(), b"{");
        assert!(matches!(bad.json::<In>(), Err(Error::BadRequest(m)) if m.contains("line 1")));
    }
}

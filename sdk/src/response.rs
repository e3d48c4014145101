use crate::headers::Headers;

/// An HTTP response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// 200 with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// 200 with a `text/html; charset=utf-8` body.
    pub fn html(body: impl Into<String>) -> Self {
        Self::new(200)
            .with_header("content-type", "text/html; charset=utf-8")
            .with_body(body.into())
    }

    /// 200 with `value` serialized as JSON (`application/json`); a value that cannot be
    /// serialized gives a 500 naming the error.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(200)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(e) => crate::Error::Json(format!("serializing the response: {e}")).into_response(),
        }
    }

    /// 404 `not found`.
    pub fn not_found() -> Self {
        Self::text("not found\n").with_status(404)
    }

    /// Sets the status (builder style).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Sets header `name`, replacing earlier values (builder style).
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.set(name, value);
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The body's bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced with U+FFFD).
    pub fn text_body(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (e.g. of an outbound response).
    ///
    /// # Errors
    /// [`crate::Error::Json`] naming the position of the first error.
    #[cfg(feature = "json")]
    pub fn json_body<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::Error> {
        serde_json::from_slice(&self.body).map_err(|e| crate::Error::Json(e.to_string()))
    }

    pub(crate) fn into_parts(self) -> (u16, Headers, Vec<u8>) {
        (self.status, self.headers, self.body)
    }
}

/// Anything a handler or route may return.
pub trait IntoResponse {
    /// Converts into the response to send.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for String {
    /// 200 `text/plain`.
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for &'static str {
    /// 200 `text/plain`.
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl<T: IntoResponse> IntoResponse for (u16, T) {
    /// `T`'s response with this status.
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(v) => v.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn conversions_set_status_and_content_type() {
        let r = (201, "made").into_response();
        assert_eq!(r.status(), 201);
        assert_eq!(
            r.headers().get("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(r.body(), b"made");
        let e: Result<Response, Error> = Err(Error::BadRequest("no".into()));
        assert_eq!(e.into_response().status(), 400);
        let e: Result<Response, Error> = Err(Error::Http("down".into()));
        assert_eq!(e.into_response().status(), 502);
        assert_eq!(Response::not_found().status(), 404);
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_responses_round_trip() {
        let r = Response::json(&serde_json::json!({"a": 1}));
        assert_eq!(r.headers().get("content-type"), Some("application/json"));
        assert_eq!(r.json_body::<serde_json::Value>().unwrap()["a"], 1);
    }
}

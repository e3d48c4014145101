use crate::method::Method;
use crate::request::Request;
use crate::response::{IntoResponse, Response};

type Handler = Box<dyn Fn(Request) -> Response>;

/// Dispatches requests by method and path pattern.
///
/// Patterns are `/`-separated segments: a literal (`users`), a parameter (`:id`, one segment),
/// or a trailing wildcard (`*path`, the rest of the path, possibly empty). Routes are tried in
/// the order they were added; parameters are read with [`Request::param`]. A path that
/// matches no route answers 404; one that matches only with other methods answers 405 with an
/// `Allow` header.
///
/// ```
/// use ketch_sdk::{Method, Request, Response, Router};
///
/// let router = Router::new()
///     .get("/users/:id", |req: Request| Response::text(format!("user {}", req.param("id").unwrap())))
///     .post("/users", |_req: Request| (201, "created"));
///
/// let resp = router.handle(Request::new(Method::Get, "/users/7"));
/// assert_eq!(resp.body(), b"user 7");
/// assert_eq!(router.handle(Request::new(Method::Delete, "/users")).status(), 405);
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

struct Route {
    method: Option<Method>,
    segments: Vec<Segment>,
    handler: Handler,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.routes.iter().map(|r| (&r.method, &r.segments)))
            .finish()
    }
}

impl Router {
    /// A router without routes (everything answers 404).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for `method` (`None`: any method).
    ///
    /// # Panics
    /// When `pattern` does not start with `/`, or a `*` wildcard is not the last segment:
    /// a programming error, caught by the first request in any test.
    pub fn route<F, R>(mut self, method: Option<Method>, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request) -> R + 'static,
        R: IntoResponse,
    {
        self.routes.push(Route {
            method,
            segments: parse_pattern(pattern),
            handler: Box::new(move |req| handler(req).into_response()),
        });
        self
    }

    /// Adds a `GET` route (also used for `HEAD`).
    pub fn get<F: Fn(Request) -> R + 'static, R: IntoResponse>(self, p: &str, h: F) -> Self {
        self.route(Some(Method::Get), p, h)
    }

    /// Adds a `POST` route.
    pub fn post<F: Fn(Request) -> R + 'static, R: IntoResponse>(self, p: &str, h: F) -> Self {
        self.route(Some(Method::Post), p, h)
    }

    /// Adds a `PUT` route.
    pub fn put<F: Fn(Request) -> R + 'static, R: IntoResponse>(self, p: &str, h: F) -> Self {
        self.route(Some(Method::Put), p, h)
    }

    /// Adds a `PATCH` route.
    pub fn patch<F: Fn(Request) -> R + 'static, R: IntoResponse>(self, p: &str, h: F) -> Self {
        self.route(Some(Method::Patch), p, h)
    }

    /// Adds a `DELETE` route.
    pub fn delete<F: Fn(Request) -> R + 'static, R: IntoResponse>(self, p: &str, h: F) -> Self {
        self.route(Some(Method::Delete), p, h)
    }

    /// Adds a route for every method.
    pub fn any<F: Fn(Request) -> R + 'static, R: IntoResponse>(self, p: &str, h: F) -> Self {
        self.route(None, p, h)
    }

    /// Runs the first matching route's handler.
    pub fn handle(&self, mut req: Request) -> Response {
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            let Some(params) = match_path(&route.segments, req.path()) else {
                continue;
            };
            let method_ok = match &route.method {
                None => true,
                Some(m) => {
                    m == req.method() || (*m == Method::Get && *req.method() == Method::Head)
                }
            };
            if method_ok {
                req.set_params(params);
                return (route.handler)(req);
            }
            if let Some(m) = &route.method
                && !allowed.contains(&m.as_str())
            {
                allowed.push(m.as_str());
            }
        }
        if allowed.is_empty() {
            Response::not_found()
        } else {
            Response::text("method not allowed\n")
                .with_status(405)
                .with_header("allow", allowed.join(", "))
        }
    }
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    assert!(
        pattern.starts_with('/'),
        "route pattern {pattern:?} must start with '/'"
    );
    let parts: Vec<&str> = pattern[1..].split('/').filter(|s| !s.is_empty()).collect();
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            if let Some(name) = s.strip_prefix(':') {
                Segment::Param(name.to_string())
            } else if let Some(name) = s.strip_prefix('*') {
                assert!(
                    i + 1 == n,
                    "route pattern {pattern:?}: the wildcard *{name} must be the last segment"
                );
                Segment::Rest(name.to_string())
            } else {
                Segment::Literal(s.to_string())
            }
        })
        .collect()
}

/// The decoded parameters when `path` matches; empty segments (`//`, a trailing `/`) are
/// ignored, so `/users/7/` matches `/users/:id`.
fn match_path(segments: &[Segment], path: &str) -> Option<Vec<(String, String)>> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut params = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            Segment::Rest(name) => {
                let rest = parts.get(i..).unwrap_or_default().join("/");
                params.push((name.clone(), crate::percent_decode(&rest, false)));
                return Some(params);
            }
            Segment::Literal(lit) => {
                if crate::percent_decode(parts.get(i)?, false) != *lit {
                    return None;
                }
            }
            Segment::Param(name) => {
                params.push((name.clone(), crate::percent_decode(parts.get(i)?, false)));
            }
        }
    }
    (parts.len() == segments.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        match_path(&parse_pattern(pattern), path)
    }

    fn p(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn matches_literals_params_and_wildcards() {
        assert_eq!(m("/", "/"), p(&[]));
        assert_eq!(m("/", "/x"), None);
        assert_eq!(m("/users/:id", "/users/7"), p(&[("id", "7")]));
        assert_eq!(m("/users/:id", "/users/7/"), p(&[("id", "7")]));
        assert_eq!(m("/users/:id", "/users"), None);
        assert_eq!(m("/users/:id", "/users/7/posts"), None);
        assert_eq!(m("/users/:id", "/user/7"), None);
        assert_eq!(
            m("/a/:x/b/:y", "/a/1/b/two%20words"),
            p(&[("x", "1"), ("y", "two words")])
        );
        assert_eq!(
            m("/files/*path", "/files/a/b.txt"),
            p(&[("path", "a/b.txt")])
        );
        assert_eq!(m("/files/*path", "/files"), p(&[("path", "")]));
    }

    #[test]
    #[should_panic(expected = "must be the last segment")]
    fn a_wildcard_in_the_middle_is_refused() {
        parse_pattern("/a/*rest/b");
    }

    #[test]
    fn dispatches_by_method_first_match_wins_and_reports_allow() {
        let r = Router::new()
            .get("/x/:id", |req: Request| {
                format!("get {}", req.param("id").unwrap())
            })
            .put("/x/:id", |_req: Request| "put")
            .get("/x/special", |_req: Request| "never reached")
            .any("/any", |req: Request| req.method().to_string());
        assert_eq!(
            r.handle(Request::new(Method::Get, "/x/special")).body(),
            b"get special"
        );
        assert_eq!(
            r.handle(Request::new(Method::Head, "/x/1")).body(),
            b"get 1"
        );
        assert_eq!(r.handle(Request::new(Method::Put, "/x/1")).body(), b"put");
        let no = r.handle(Request::new(Method::Post, "/x/1"));
        assert_eq!(no.status(), 405);
        assert_eq!(no.headers().get("allow"), Some("GET, PUT"));
        assert_eq!(
            r.handle(Request::new(Method::Delete, "/any")).body(),
            b"DELETE"
        );
        assert_eq!(r.handle(Request::new(Method::Get, "/nope")).status(), 404);
    }
}

//! The mixed app's front end: a wasi:http component. `GET /` calls the back end — a Linux
//! container — at `http://backend/api/hello` (the in-cluster Service `backend` in this
//! namespace; ketch's runtime resolves the name, no DNS involved) and answers
//! `frontend got: <the back end's body>`, or 502 with the error when the call fails or the
//! back end answers with an error status. Other paths are 404. Logs one line per request.

use std::io::{Read as _, Write as _};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Frontend);

/// The back end's Service name and the path asked of it.
const BACKEND: &str = "backend";
const BACKEND_PATH: &str = "/api/hello";
/// The most of the back end's body that is read.
const MAX_BODY: u64 = 64 * 1024;

struct Frontend;

impl wasip2::exports::http::incoming_handler::Guest for Frontend {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_else(|| "/".into());
        let path = target.split('?').next().unwrap_or("/");
        let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "unknown".into());
        let method = request.method();
        let (status, text) = match (&method, path) {
            (Method::Get, "/") => match call_backend() {
                Ok(body) => (200, format!("frontend got: {body}")),
                Err(e) => (
                    502,
                    format!("frontend: calling http://{BACKEND}{BACKEND_PATH} failed: {e}\n"),
                ),
            },
            _ => (404, format!("not found: {target} (try GET /)\n")),
        };
        println!(
            "{} {target} -> {status} (served by {pod})",
            method_name(&method)
        );
        respond(response_out, status, &text);
    }
}

/// GET http://backend/api/hello; the body when the status is 2xx.
fn call_backend() -> Result<String, String> {
    let req = OutgoingRequest::new(Fields::new());
    req.set_method(&Method::Get)
        .map_err(|()| "invalid method")?;
    req.set_scheme(Some(&Scheme::Http))
        .map_err(|()| "invalid scheme")?;
    req.set_authority(Some(BACKEND))
        .map_err(|()| "invalid authority")?;
    req.set_path_with_query(Some(BACKEND_PATH))
        .map_err(|()| "invalid path")?;

    let pending = outgoing_handler::handle(req, None).map_err(|e| e.to_string())?;
    pending.subscribe().block();
    let resp = pending
        .get()
        .ok_or("no response after the pollable was ready")?
        .map_err(|()| "the response was already taken")?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .consume()
        .map_err(|()| "the response body was already taken")?;
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| "the body stream was already taken")?;
        stream
            .take(MAX_BODY)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading the body: {e}"))?;
    } // the stream is a child of the body: dropped before the body is finished
    drop(IncomingBody::finish(body));
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !(200..300).contains(&status) {
        return Err(format!(
            "the back end answered {status}: {}",
            text.trim_end()
        ));
    }
    Ok(text)
}

fn method_name(m: &Method) -> &str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(s) => s,
    }
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let resp = OutgoingResponse::new(headers);
    let _ = resp.set_status_code(status);
    let body = resp.body().expect("a new response has a body");
    ResponseOutparam::set(out, Ok(resp));
    let mut stream = body.write().expect("the body stream opens once");
    // A failed write means the client went away; nothing useful to do but stop.
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.flush();
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

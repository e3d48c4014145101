//! plain-wasi: a wasi:http component using only the standard `wasip2` bindings (no
//! ketch-sdk). Answers every request with a greeting (from the
//! `GREETING` environment variable, set from a ConfigMap in app.yaml), the Pod that served
//! it, and the request path; logs one line per request to stdout.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(PlainWasi);

struct PlainWasi;

impl wasip2::exports::http::incoming_handler::Guest for PlainWasi {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
        let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "unknown".into());
        println!("GET {path} served by {pod}");

        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let resp = OutgoingResponse::new(headers);
        let body = resp.body().expect("a new response has a body");
        ResponseOutparam::set(response_out, Ok(resp));
        let mut out = body.write().expect("the body stream opens once");
        let text = format!("{greeting}! (from {pod}, path {path})\n");
        // A failed write means the client went away; nothing useful to do but stop.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        drop(out);
        let _ = OutgoingBody::finish(body, None);
    }
}

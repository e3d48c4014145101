//! `outbound`: `GET /?url=http://host:port/path` makes that request and answers
//! 200 "status: N\nbody: ...\n", or 502 "error: <ErrorCode>\n" when it fails.

use std::io::{Read as _, Write as _};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Outbound);

struct Outbound;

impl wasip2::exports::http::incoming_handler::Guest for Outbound {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let pq = request.path_with_query().unwrap_or_default();
        let url = pq
            .split_once("url=")
            .map(|(_, u)| u.to_string())
            .unwrap_or_default();
        let (status, text) = match fetch(&url) {
            Ok((status, body)) => (200, format!("status: {status}\nbody: {body}\n")),
            Err(e) => (502, format!("error: {e}\n")),
        };
        let resp = OutgoingResponse::new(Fields::new());
        resp.set_status_code(status).unwrap();
        let body = resp.body().unwrap();
        ResponseOutparam::set(response_out, Ok(resp));
        let mut out = body.write().unwrap();
        out.write_all(text.as_bytes()).unwrap();
        out.flush().unwrap();
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
    }
}

fn fetch(url: &str) -> Result<(u16, String), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("bad url {url:?}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    req.set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    req.set_path_with_query(Some(path))
        .map_err(|()| "bad path")?;
    let body = req.body().map_err(|()| "no body")?;
    let fut = outgoing_handler::handle(req, None).map_err(fmt_code)?;
    OutgoingBody::finish(body, None).map_err(fmt_code)?;
    fut.subscribe().block();
    let resp = fut
        .get()
        .ok_or("response not ready")?
        .map_err(|()| "response taken twice")?
        .map_err(fmt_code)?;
    let status = resp.status();
    let incoming = resp.consume().map_err(|()| "no response body")?;
    let mut text = String::new();
    {
        let mut stream = incoming.stream().map_err(|()| "no response stream")?;
        stream
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
    }
    Ok((status, text))
}

fn fmt_code(code: ErrorCode) -> String {
    format!("{code:?}")
}

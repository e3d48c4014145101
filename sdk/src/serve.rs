//! The glue between the exported `wasi:http/incoming-handler` and a user's handler.

use std::future::Future;

use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method as WasiMethod, OutgoingBody,
    OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use crate::error::Error;
use crate::headers::Headers;
use crate::method::Method;
use crate::request::{MAX_BODY_BYTES, Request};
use crate::response::{IntoResponse, Response};
use crate::rt;

/// Serves one request with a synchronous handler.
pub fn serve<R: IntoResponse>(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl FnOnce(Request) -> R,
) {
    send(out, handler(Request::from_wasi(request)).into_response());
}

/// Serves one request with an `async` handler, driven by [`rt::block_on`].
pub fn serve_async<R: IntoResponse, F: Future<Output = R>>(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl FnOnce(Request) -> F,
) {
    let resp =
        rt::block_on(async move { handler(Request::from_wasi(request)).await.into_response() });
    send(out, resp);
}

/// Reads the request's body, blocking (it is read on first use, from any handler).
pub(crate) fn read_request_body(request: &IncomingRequest) -> Result<Vec<u8>, Error> {
    let body = request
        .consume()
        .map_err(|()| Error::BadRequest("the request body was already taken".into()))?;
    rt::block_on(read_body(body, MAX_BODY_BYTES, Wait::Block)).map_err(|e| match e {
        Error::Http(m) => Error::BadRequest(m),
        other => other,
    })
}

/// How [`read_body`] waits for data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// In the host (`blocking-read`): one call, for a body nothing else waits alongside.
    Block,
    /// On the SDK's executor, so other futures progress meanwhile.
    Poll,
}

/// Reads an incoming body (request or outbound response) to the end, up to `limit` bytes.
pub(crate) async fn read_body(
    body: IncomingBody,
    limit: usize,
    wait: Wait,
) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| Error::Http("the body stream was already taken".into()))?;
        read_stream(&stream, &mut bytes, limit, wait).await?;
    }
    // Trailers are not exposed; dropping the future is enough.
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

async fn read_stream(
    stream: &InputStream,
    out: &mut Vec<u8>,
    limit: usize,
    wait: Wait,
) -> Result<(), Error> {
    const CHUNK: u64 = 64 * 1024;
    loop {
        let read = match wait {
            Wait::Block => stream.blocking_read(CHUNK),
            Wait::Poll => stream.read(CHUNK),
        };
        match read {
            Ok(chunk) if chunk.is_empty() => {
                if wait == Wait::Poll {
                    rt::ready(stream.subscribe()).await;
                }
            }
            Ok(chunk) => {
                if out.len() + chunk.len() > limit {
                    return Err(Error::TooLarge(format!(
                        "body larger than ketch-sdk's limit of {limit} bytes"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(()),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(Error::Http(format!(
                    "reading a body: {}",
                    e.to_debug_string()
                )));
            }
        }
    }
}

/// Writes all of `bytes` (in the 4 KiB pieces `blocking-write-and-flush` accepts).
pub(crate) fn write_all(stream: &OutputStream, bytes: &[u8]) -> Result<(), StreamError> {
    for chunk in bytes.chunks(4096) {
        stream.blocking_write_and_flush(chunk)?;
    }
    Ok(())
}

/// wasi `fields` from SDK headers; a header the host refuses (forbidden or malformed) is
/// skipped with a line on stderr rather than failing the whole message.
pub(crate) fn to_fields(headers: Headers) -> Fields {
    let fields = Fields::new();
    for (name, value) in headers.into_entries() {
        if let Err(e) = fields.append(&name, &value) {
            eprintln!("ketch-sdk: header {name:?} dropped: {e:?}");
        }
    }
    fields
}

fn send(out: ResponseOutparam, resp: Response) {
    let (status, headers, body) = resp.into_parts();
    let wasi_resp = OutgoingResponse::new(to_fields(headers));
    // A new response is a 200: one host call fewer for the common case.
    if status != 200 && wasi_resp.set_status_code(status).is_err() {
        ResponseOutparam::set(
            out,
            Err(ErrorCode::InternalError(Some(format!(
                "invalid response status {status}"
            )))),
        );
        return;
    }
    let Ok(outgoing) = wasi_resp.body() else {
        unreachable!("a new response's body is taken once");
    };
    ResponseOutparam::set(out, Ok(wasi_resp));
    if let Ok(stream) = outgoing.write() {
        // A failed write means the client went away: nothing left to do.
        let _ = write_all(&stream, &body);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

pub(crate) fn method_from_wasi(m: &WasiMethod) -> Method {
    match m {
        WasiMethod::Get => Method::Get,
        WasiMethod::Head => Method::Head,
        WasiMethod::Post => Method::Post,
        WasiMethod::Put => Method::Put,
        WasiMethod::Delete => Method::Delete,
        WasiMethod::Patch => Method::Patch,
        WasiMethod::Options => Method::Options,
        WasiMethod::Connect => Method::Other("CONNECT".into()),
        WasiMethod::Trace => Method::Other("TRACE".into()),
        WasiMethod::Other(o) => Method::Other(o.clone()),
    }
}

pub(crate) fn method_to_wasi(m: &Method) -> WasiMethod {
    match m {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
        Method::Patch => WasiMethod::Patch,
        Method::Options => WasiMethod::Options,
        Method::Other(o) => WasiMethod::Other(o.clone()),
    }
}

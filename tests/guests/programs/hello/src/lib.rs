//! `hello`: answers "hello from ketch\n" (plus `greeting: $GREETING` when set), and streams
//! the request body back on `POST /echo`. Logs one line to stdout and one to stderr.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        println!("hello: {path}");
        eprintln!("hello: stderr works");

        let resp = OutgoingResponse::new(Fields::new());
        let body = resp.body().unwrap();
        ResponseOutparam::set(response_out, Ok(resp));
        let mut out = body.write().unwrap();

        if matches!(request.method(), Method::Post) && path.starts_with("/echo") {
            let incoming = request.consume().unwrap();
            let mut input = incoming.stream().unwrap();
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = std::io::Read::read(&mut input, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).unwrap();
                out.flush().unwrap();
            }
        } else {
            out.write_all(b"hello from ketch\n").unwrap();
            if let Ok(greeting) = std::env::var("GREETING") {
                out.write_all(format!("greeting: {greeting}\n").as_bytes())
                    .unwrap();
            }
            out.flush().unwrap();
        }
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
    }
}

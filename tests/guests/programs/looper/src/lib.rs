//! `looper`: never returns (a busy loop); the host must interrupt it.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

wasip2::http::proxy::export!(Looper);

struct Looper;

impl wasip2::exports::http::incoming_handler::Guest for Looper {
    fn handle(_request: IncomingRequest, _response_out: ResponseOutparam) {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

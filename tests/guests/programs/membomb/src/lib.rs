//! `membomb`: allocates (and touches) 1 MiB chunks until memory growth fails.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

wasip2::http::proxy::export!(Membomb);

struct Membomb;

impl wasip2::exports::http::incoming_handler::Guest for Membomb {
    fn handle(_request: IncomingRequest, _response_out: ResponseOutparam) {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}

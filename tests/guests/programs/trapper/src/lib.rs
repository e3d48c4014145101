//! `trapper`: traps — `?unreachable` executes `unreachable` directly, otherwise it panics
//! (which in a wasm32 guest aborts through `unreachable` after printing to stderr).

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

wasip2::http::proxy::export!(Trapper);

struct Trapper;

impl wasip2::exports::http::incoming_handler::Guest for Trapper {
    fn handle(request: IncomingRequest, _response_out: ResponseOutparam) {
        if request
            .path_with_query()
            .unwrap_or_default()
            .contains("unreachable")
        {
            core::arch::wasm32::unreachable()
        }
        panic!("trapper panics on purpose");
    }
}

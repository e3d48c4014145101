//! Wasm guest programs for ketch's tests, compiled for `wasm32-wasip2` by this crate's build
//! script (from `programs/`, its own workspace). Each constant is the absolute path of one
//! built component:
//!
//! - [`HELLO`]: wasi:http handler answering `hello from ketch\n` (and `greeting: $GREETING`),
//!   echoing the request body on `POST /echo`;
//! - [`LOOPER`]: handler that never returns;
//! - [`MEMBOMB`]: handler that allocates until memory growth fails;
//! - [`TRAPPER`]: handler that panics (or executes `unreachable` with `?unreachable`);
//! - [`OUTBOUND`]: handler fetching `?url=...` and answering with the status or the error;
//! - [`COMMAND`]: a `wasi:cli` command (`fn main`), a valid component that is not a handler;
//! - [`KV`]: every `wasi:keyvalue` operation over HTTP, written with ketch-sdk (see its source);
//! - [`FETCH`]: ketch-sdk's outbound HTTP from an `async` handler (blocking, joined, JSON).
//!
//! And the apps under `examples/`, built the same way (into `<target>/examples`):
//! [`EXAMPLE_HELLO`] (ketch-sdk), [`EXAMPLE_COUNTER`] (ketch-sdk + wasi:keyvalue) and
//! [`EXAMPLE_PLAIN_WASI`] (no SDK, only the `wasip2` bindings).

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

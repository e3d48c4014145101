//! Integration tests for ketch-wasm, one binary (wasmtime's `tests/all` layout), driving real
//! guest components from `ketch-test-guests`.

mod cache;
mod limits;
mod outbound;
mod sdk;
mod serve;
mod serve_plain;
mod support;
mod validation;

//! Integration tests for ketch-wasm, one binary (wasmtime's `tests/all` layout), driving real
//! guest components from `ketch-test-guests`.

mod cache;
mod limits;
mod outbound;
mod serve;
mod support;
mod validation;

//! `ketch-sdk`: write [ketch](https://github.com/) apps — standard `wasi:http` components for
//! `wasm32-wasip2` — in a few lines.
//!
//! ```no_run
//! use ketch_sdk::{Request, Response};
//!
//! #[ketch_sdk::handler]
//! fn handle(req: Request) -> Response {
//!     let name = req.query("name").unwrap_or_else(|| "world".into());
//!     Response::text(format!("hello, {name}!\n"))
//! }
//! ```
//!
//! What is in the box:
//!
//! - [`handler`]: exports a `fn` (or `async fn`) taking a [`Request`] and returning anything
//!   [`IntoResponse`] as the component's `wasi:http/incoming-handler`;
//! - [`Request`] / [`Response`]: method, path, query, [`Headers`], body, JSON (feature
//!   `json`, on by default);
//! - [`Router`]: method + path patterns with parameters (`/users/:id`, `/files/*path`);
//! - [`http`]: outbound requests over `wasi:http/outgoing-handler` — to in-cluster Services
//!   by name (`http://backend`) or to hosts the Pod allows;
//! - [`config`]: configuration from the environment (the Pod's `env`);
//! - [`kv`]: key-value storage through `wasi:keyvalue` (per app, persistent on ketch);
//! - [`info!`], [`warn!`], [`error!`]: log lines to stdout/stderr (`ketch logs`).
//!
//! The component imports only `wasi:http`, the `wasi:cli`/`wasi:io`/`wasi:clocks`/
//! `wasi:random` interfaces Rust's standard library already uses, and `wasi:keyvalue` only
//! when [`kv`] is used; so it also runs on `wasmtime serve` and other wasi:http hosts.
#![deny(missing_docs)]

pub mod config;
mod error;
mod headers;
pub mod http;
pub mod kv;
pub mod log;
mod method;
mod query;
mod request;
mod response;
mod router;
mod rt;
mod serve;

pub use error::Error;
pub use headers::Headers;
pub use method::Method;
pub use query::{parse_query, percent_decode};
pub use request::{MAX_BODY_BYTES, Request};
pub use response::{IntoResponse, Response};
pub use router::Router;
pub use rt::{block_on, join};

/// Exports a function as the component's `wasi:http/incoming-handler`.
///
/// The function takes one [`Request`] and returns anything that implements
/// [`IntoResponse`] ([`Response`], `String`, `&'static str`, `Result<T, E>` of those, ...). It
/// may be `async`: it then runs on the SDK's executor, which drives the SDK's own I/O futures
/// (such as [`http::send_async`]). Exactly one handler per component.
///
/// ```no_run
/// use ketch_sdk::{Request, Response};
///
/// #[ketch_sdk::handler]
/// async fn handle(_req: Request) -> Result<Response, ketch_sdk::Error> {
///     let upstream = ketch_sdk::http::get_async("http://backend/").await?;
///     Ok(Response::text(format!("backend said {}\n", upstream.status())))
/// }
/// ```
pub use ketch_sdk_macros::handler;

/// Used by the code [`handler`] generates; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::serve::{serve, serve_async};
    pub use wasip2;
}

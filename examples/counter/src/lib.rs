//! counter: counts requests per path in the app's key-value store (`wasi:keyvalue`). On ketch
//! the counts are stored on the node, per app: they survive Pod restarts.
//!
//! - `GET /_counts`: every path's count, as JSON;
//! - `DELETE /_counts`: forget them all;
//! - any other request: increments its path's count and answers `PATH: N`.

use std::collections::BTreeMap;

use ketch_sdk::kv::Store;
use ketch_sdk::{Error, Request, Response, Router};

/// Keys are `path:<path>`, so the bucket can hold other things later.
const PREFIX: &str = "path:";

#[ketch_sdk::handler]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/_counts", |_req: Request| counts())
        .delete("/_counts", |_req: Request| reset())
        .any("/*path", count)
        .handle(req)
}

fn count(req: Request) -> Result<Response, Error> {
    let n = Store::open_default()?.increment(&format!("{PREFIX}{}", req.path()), 1)?;
    ketch_sdk::info!("{} {} -> {n}", req.method(), req.path());
    Ok(Response::text(format!("{}: {n}\n", req.path())))
}

fn counts() -> Result<Response, Error> {
    let store = Store::open_default()?;
    let mut all = BTreeMap::new();
    for key in store.keys()? {
        if let Some(path) = key.strip_prefix(PREFIX) {
            all.insert(path.to_string(), store.get_u64(&key)?.unwrap_or(0));
        }
    }
    Ok(Response::json(&all))
}

fn reset() -> Result<Response, Error> {
    let store = Store::open_default()?;
    for key in store.keys()? {
        if key.starts_with(PREFIX) {
            store.delete(&key)?;
        }
    }
    Ok(Response::new(204))
}

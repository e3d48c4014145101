//! `kv`: every wasi:keyvalue operation over HTTP, through ketch-sdk. Bucket `_` is the
//! default bucket (identifier `""`). Errors answer 500 with the SDK's message.
//!
//! - `PUT /b/:bucket/:key` (body = value), `GET` (404 when unset), `DELETE`;
//! - `GET /exists/:bucket/:key` → `true`/`false`; `GET /keys/:bucket` → sorted, one per line;
//! - `POST /incr/:bucket/:key?by=N` → the new value;
//! - `POST /many/:bucket` (body `k=v` lines) sets them with `set-many`, then answers the
//!   `get-many` of the same keys plus `missing`, one value (or `-`) per line.

use ketch_sdk::kv::Store;
use ketch_sdk::{Error, Request, Response, Router};

#[ketch_sdk::handler]
fn handle(req: Request) -> Response {
    Router::new()
        .put("/b/:bucket/:key", |r: Request| {
            open(&r)?.set(r.param("key").unwrap_or_default(), r.body()?)?;
            Ok::<_, Error>(Response::new(204))
        })
        .get("/b/:bucket/:key", |r: Request| {
            Ok::<_, Error>(match open(&r)?.get(r.param("key").unwrap_or_default())? {
                Some(v) => Response::new(200).with_body(v),
                None => Response::not_found(),
            })
        })
        .delete("/b/:bucket/:key", |r: Request| {
            open(&r)?.delete(r.param("key").unwrap_or_default())?;
            Ok::<_, Error>(Response::new(204))
        })
        .get("/exists/:bucket/:key", |r: Request| {
            let yes = open(&r)?.exists(r.param("key").unwrap_or_default())?;
            Ok::<_, Error>(Response::text(yes.to_string()))
        })
        .get("/keys/:bucket", |r: Request| {
            let mut keys = open(&r)?.keys()?;
            keys.sort();
            Ok::<_, Error>(Response::text(keys.join("\n")))
        })
        .post("/incr/:bucket/:key", |r: Request| {
            let by = r.query("by").and_then(|b| b.parse().ok()).unwrap_or(1);
            let n = open(&r)?.increment(r.param("key").unwrap_or_default(), by)?;
            Ok::<_, Error>(Response::text(n.to_string()))
        })
        .post("/many/:bucket", |r: Request| {
            let store = open(&r)?;
            let entries: Vec<(String, Vec<u8>)> = r
                .text()?
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            store.set_many(&entries)?;
            let mut keys: Vec<String> = entries.into_iter().map(|(k, _)| k).collect();
            keys.push("missing".into());
            let values = store.get_many(&keys)?;
            let lines: Vec<String> = values
                .into_iter()
                .map(|v| v.map_or("-".into(), |v| String::from_utf8_lossy(&v).into_owned()))
                .collect();
            Ok::<_, Error>(Response::text(lines.join("\n")))
        })
        .handle(req)
}

fn open(r: &Request) -> Result<Store, Error> {
    match r.param("bucket") {
        Some("_") | None => Store::open_default(),
        Some(name) => Store::open(name),
    }
}

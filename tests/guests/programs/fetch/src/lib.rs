//! `fetch`: ketch-sdk's outbound HTTP from an `async` handler.
//!
//! - `GET /one?url=U`: `http::get(U)` (blocking), answers `STATUS BODY`;
//! - `GET /both?a=U&b=V`: both with `get_async`, joined (concurrently), one line each;
//! - `POST /post?url=U` (body): forwards the body as JSON `{"got": BODY}` with
//!   `OutgoingRequest::json`, answers the upstream's status and body.
//!
//! A failed request answers 502 with the SDK's error (Error::Http's response).

use ketch_sdk::http::{self, OutgoingRequest};
use ketch_sdk::{Error, Method, Request, Response};

#[ketch_sdk::handler]
async fn handle(req: Request) -> Result<Response, Error> {
    let q = |name: &str| req.query(name).unwrap_or_default();
    match req.path() {
        "/one" => {
            let r = http::get(&q("url"))?;
            Ok(Response::text(format!("{} {}", r.status(), r.text_body())))
        }
        "/both" => {
            let (a, b) = ketch_sdk::join(http::get_async(&q("a")), http::get_async(&q("b"))).await;
            let (a, b) = (a?, b?);
            Ok(Response::text(format!(
                "{} {}\n{} {}",
                a.status(),
                a.text_body(),
                b.status(),
                b.text_body()
            )))
        }
        "/post" => {
            let r = OutgoingRequest::new(Method::Post, q("url"))
                .json(&serde_json_value(req.text()?))?
                .send_async()
                .await?;
            Ok(Response::text(format!("{} {}", r.status(), r.text_body())))
        }
        _ => Ok(Response::not_found()),
    }
}

/// `{"got": text}` without a serde dependency of the guest's own.
fn serde_json_value(text: &str) -> std::collections::BTreeMap<&'static str, &str> {
    std::collections::BTreeMap::from([("got", text)])
}

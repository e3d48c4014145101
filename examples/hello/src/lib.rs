//! hello, written with ketch-sdk: answers every request with a greeting (from the `GREETING`
//! environment variable, set from a ConfigMap in app.yaml), the Pod that served it and the
//! request path, and logs one line per request (`ketch logs`).

use ketch_sdk::{Request, Response, config};

#[ketch_sdk::handler]
fn handle(req: Request) -> Response {
    let greeting = config::get_or("GREETING", "Hello");
    let pod = config::get_or("POD_NAME", "unknown");
    ketch_sdk::info!("{} {} served by {pod}", req.method(), req.path());
    Response::text(format!("{greeting}! (from {pod}, path {})\n", req.path()))
}

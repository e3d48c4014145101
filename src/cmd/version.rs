//! `ketch version`: this binary's version and the server's, when one answers.

use serde_json::Value;

use super::shared::{Connection, client};

pub async fn run(conn: &Connection) -> anyhow::Result<()> {
    println!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
    match client(conn).await {
        Ok(c) => match c.get_path("/version").await {
            Ok(v) => println!(
                "Server Version: {}",
                v.get("gitVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
            ),
            Err(e) => println!("Server Version: unavailable ({e})"),
        },
        Err(_) => println!("Server Version: no server configured"),
    }
    Ok(())
}

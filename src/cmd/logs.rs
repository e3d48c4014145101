//! `ketch logs POD`: a container's logs, optionally followed.

use anyhow::Context as _;
use clap::Args;

use super::shared::{Connection, Namespace, client};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Pod name
    pod: String,
    /// Container name (required when the Pod has several)
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Keep streaming new lines
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines
    #[arg(long)]
    tail: Option<u64>,
    #[command(flatten)]
    ns: Namespace,
}

pub async fn run(conn: &Connection, args: LogsArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let client = client(conn).await?;
    let opts = ketch_client::LogParams {
        container: args.container,
        follow: args.follow,
        tail_lines: args.tail,
        timestamps: false,
    };
    let mut resp = client
        .pod_log(args.ns.or_default(), &args.pod, &opts)
        .await?;
    let mut out = std::io::stdout();
    while let Some(chunk) = resp.chunk().await.context("reading the log stream")? {
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(())
}

//! `ketch rollout status deploy/NAME`: follows a Deployment's rollout until it completes or
//! fails.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt as _;
use ketch_client::{Event, ListParams};

use super::shared::{Connection, Namespace, client, resolve_kind};

#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Subcommand, Debug)]
enum RolloutCommand {
    /// Follow a Deployment's rollout until it completes (exit 0) or fails (exit 1)
    Status(StatusArgs),
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// deploy/NAME
    target: String,
    #[command(flatten)]
    ns: Namespace,
    /// Give up after this many seconds (0: wait forever)
    #[arg(long, default_value_t = 0)]
    timeout: u64,
}

pub async fn run(conn: &Connection, args: RolloutArgs) -> anyhow::Result<()> {
    match args.command {
        RolloutCommand::Status(args) => status(conn, args).await,
    }
}

/// `deploy/web`, `deployment/web` or `deployments.apps/web` → the Deployment's name.
fn deployment_name(target: &str) -> anyhow::Result<String> {
    let (kind, name) = target
        .split_once('/')
        .ok_or_else(|| anyhow!("expected deploy/NAME, got {target:?}"))?;
    let info = resolve_kind(kind)?;
    if info.kind != "Deployment" {
        bail!("rollout status supports Deployments, not {}", info.plural);
    }
    Ok(name.to_string())
}

async fn status(conn: &Connection, args: StatusArgs) -> anyhow::Result<()> {
    use ketch_control::controllers::deployment::{RolloutStatus, rollout_status};
    let StatusArgs {
        target,
        ns,
        timeout,
    } = args;
    let name = deployment_name(&target)?;
    let ns = ns.or_default().to_string();
    let client = client(conn).await?;
    let info = resolve_kind("deployments")?;
    // Fail fast with the server's own error when the Deployment does not exist.
    client.get(info, Some(&ns), &name).await?;
    let params = ListParams {
        label_selector: None,
        field_selector: Some(format!("metadata.name={name}")),
    };
    let api = client.api::<ketch_api::apps::Deployment>(Some(&ns));
    let mut stream = Box::pin(api.watcher(params, None));
    let follow = async {
        let mut last = String::new();
        while let Some(ev) = stream.next().await {
            let deployments = match ev {
                Ok(Event::Added(d) | Event::Modified(d)) => vec![d],
                Ok(Event::Restarted(ds)) => ds,
                Ok(Event::Deleted(_)) => bail!("deployment {name:?} was deleted"),
                Err(e) => {
                    eprintln!("watch: {e}; retrying");
                    continue;
                }
            };
            for d in deployments {
                let status = rollout_status(&d);
                let message = status.message(&name);
                if message != last {
                    println!("{message}");
                    last = message;
                }
                match status {
                    RolloutStatus::Complete => return Ok(()),
                    RolloutStatus::Failed(m) => bail!("{m}"),
                    RolloutStatus::Progressing(_) => {}
                }
            }
        }
        bail!("the watch ended")
    };
    if timeout == 0 {
        follow.await
    } else {
        tokio::time::timeout(std::time::Duration::from_secs(timeout), follow)
            .await
            .map_err(|_| anyhow!("timed out after {timeout}s waiting for the rollout"))?
    }
}

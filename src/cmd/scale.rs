//! `ketch scale deploy/NAME --replicas N`: a merge patch of `spec.replicas`.

use anyhow::{anyhow, bail};
use clap::Args;

use super::shared::{Connection, Namespace, client, resolve_kind};
use crate::printer::display_name;

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// deploy/NAME or rs/NAME
    target: String,
    /// The new replica count
    #[arg(long)]
    replicas: i32,
    #[command(flatten)]
    ns: Namespace,
}

pub async fn run(conn: &Connection, args: ScaleArgs) -> anyhow::Result<()> {
    let ScaleArgs {
        target,
        replicas,
        ns,
    } = args;
    let (kind, name) = target
        .split_once('/')
        .ok_or_else(|| anyhow!("expected deploy/NAME or rs/NAME, got {target:?}"))?;
    let info = resolve_kind(kind)?;
    if !matches!(info.kind, "Deployment" | "ReplicaSet") {
        bail!(
            "scale supports Deployments and ReplicaSets, not {}",
            info.plural
        );
    }
    if replicas < 0 {
        bail!("--replicas: must be 0 or more, got {replicas}");
    }
    let client = client(conn).await?;
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    client
        .merge_patch(info, Some(ns.or_default()), name, &patch, false)
        .await?;
    println!("{} scaled", display_name(info, name));
    Ok(())
}

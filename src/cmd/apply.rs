//! `ketch apply -f PATH`: create or update the objects of manifests (see [`crate::manifest`]).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use ketch_client::Client;

use super::shared::{Connection, Namespace, client};
use crate::manifest::{self, Manifest};
use crate::printer::display_name;

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Manifest file, directory of manifests, or - for stdin (repeatable)
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    ns: Namespace,
}

pub async fn run(conn: &Connection, args: ApplyArgs) -> anyhow::Result<()> {
    let manifests = manifest::load(&args.files)?;
    let client = client(conn).await?;
    apply_all(&client, &manifests, args.ns.or_default()).await
}

/// Applies each object (those naming no namespace in `default_ns`) and prints what became of
/// it, like kubectl; one that fails is reported and the others are still applied.
///
/// # Errors
/// When any object failed, saying how many.
pub async fn apply_all(
    client: &Client,
    manifests: &[Manifest],
    default_ns: &str,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for m in manifests {
        let name = m.name().unwrap_or("<generated>");
        match manifest::apply(client, m, default_ns).await {
            Ok(outcome) => println!("{} {}", display_name(m.info, name), outcome.as_str()),
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {} {name:?}: {e}", m.source, m.info.kind);
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} objects failed to apply", manifests.len());
    }
    Ok(())
}

//! `ketch push FILE.wasm REF`: a Wasm component to an OCI registry as a CNCF Wasm artifact.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::Args;
use ketch_oci::{Registries, wasm};

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The component (.wasm built for wasm32-wasip2)
    file: PathBuf,
    /// Where to: REGISTRY/REPOSITORY[:TAG]
    reference: String,
    /// Speak plain HTTP to the registry (loopback registries always are)
    #[arg(long)]
    insecure: bool,
    /// Registry credentials: a Docker-style config.json [default: $DOCKER_CONFIG/config.json or ~/.docker/config.json]
    #[arg(long, env = "KETCH_REGISTRY_CONFIG")]
    registry_config: Option<PathBuf>,
}

/// Checks the file is a component, pushes it to the reference and prints the digest
/// reference (`registry/repository@sha256:…`) on stdout — the one line a script needs.
pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    let PushArgs {
        file,
        reference,
        insecure,
        registry_config,
    } = args;
    let (file, reference) = (file.as_path(), reference.as_str());
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let info = wasm::inspect_component(&bytes).map_err(|m| {
        anyhow!(
            "{} is not a Wasm component that can be pushed: {m}",
            file.display()
        )
    })?;
    let target = wasm::parse_reference(reference)?;
    if target.digest().is_some() {
        return Err(anyhow!(
            "push to a tag, not a digest ({reference}): the digest is printed once pushed"
        ));
    }
    let mut registries = Registries::new(Vec::new(), registry_config);
    if insecure {
        registries = registries.all_insecure();
    }
    let size = bytes.len();
    let digest = wasm::push(&registries, &target, bytes, info).await?;
    eprintln!(
        "pushed {} ({size} bytes) to {}",
        file.display(),
        target.whole()
    );
    println!("{}/{}@{digest}", target.registry(), target.repository());
    Ok(())
}

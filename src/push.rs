//! `ketch push FILE.wasm REF`: a Wasm component to an OCI registry as a CNCF Wasm artifact.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use ketch_oci::{Registries, wasm};

/// Checks `file` is a component, pushes it to `reference` and prints the digest reference
/// (`registry/repository@sha256:…`) on stdout — the one line a script needs.
pub async fn push(
    file: &Path,
    reference: &str,
    insecure: bool,
    registry_config: Option<PathBuf>,
) -> anyhow::Result<()> {
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

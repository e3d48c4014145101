//! `ketch delete`: the objects named in manifests, or by kind and names.

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use clap::Args;
use ketch_api::resource::ResourceInfo;

use super::shared::{Connection, Namespace, client, resolve_kind};
use crate::manifest;
use crate::printer::display_name;

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Manifest file, directory or - (repeatable)
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Kind and names: `ketch delete pod web-1 web-2`
    #[arg(conflicts_with = "files")]
    target: Vec<String>,
    #[command(flatten)]
    ns: Namespace,
    /// Do not fail when an object is already gone
    #[arg(long)]
    ignore_not_found: bool,
}

pub async fn run(conn: &Connection, args: DeleteArgs) -> anyhow::Result<()> {
    let DeleteArgs {
        files,
        target,
        ns,
        ignore_not_found,
    } = args;
    let namespace = ns.namespace.as_deref();
    let mut todo: Vec<(&'static ResourceInfo, Option<String>, String)> = Vec::new();
    if !files.is_empty() {
        for m in manifest::load(&files)? {
            let name = m
                .name()
                .ok_or_else(|| anyhow!("{}: metadata.name is required to delete", m.source))?
                .to_string();
            let ns = m
                .info
                .namespaced
                .then(|| m.namespace().or(namespace).unwrap_or("default").to_string());
            todo.push((m.info, ns, name));
        }
    } else {
        let [kind, names @ ..] = target.as_slice() else {
            bail!("say what to delete: `ketch delete KIND NAME...` or `ketch delete -f FILE`");
        };
        // kubectl also accepts `kind/name`.
        let (kind, inline) = kind
            .split_once('/')
            .map_or((kind.as_str(), None), |(k, n)| (k, Some(n.to_string())));
        let info = resolve_kind(kind)?;
        let names: Vec<String> = inline.into_iter().chain(names.iter().cloned()).collect();
        if names.is_empty() {
            bail!(
                "name the {} to delete: `ketch delete {kind} NAME`",
                info.plural
            );
        }
        for n in names {
            todo.push((
                info,
                info.namespaced
                    .then(|| namespace.unwrap_or("default").to_string()),
                n,
            ));
        }
    }
    let client = client(conn).await?;
    let mut failed = 0;
    for (info, ns, name) in todo {
        match client.delete(info, ns.as_deref(), &name).await {
            Ok(_) => println!("{} deleted", display_name(info, &name)),
            Err(e) if e.code() == Some(404) && ignore_not_found => {}
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} deletions failed");
    }
    Ok(())
}

//! `ketch get KIND [NAME]`: a kubectl-style table (or YAML, JSON, names) of one kind or
//! several, optionally followed by a watch.

use anyhow::bail;
use clap::{Args, ValueEnum};
use futures_util::StreamExt as _;
use ketch_client::{Event, ListParams};
use serde_json::Value;

use super::shared::{Connection, Namespace, client, resolve_kind};
use crate::printer::{self, display_name};

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// Kind: plural, singular, short name (po, deploy, svc, cm, ns, no) or kind
    kind: String,
    /// Object name (omit to list)
    name: Option<String>,
    #[command(flatten)]
    ns: Namespace,
    /// List across all namespaces
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector, e.g. app=web,tier in (front,back)
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector, e.g. spec.nodeName=n1,status.phase=Running
    #[arg(long)]
    field_selector: Option<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum)]
    output: Option<Output>,
    /// After listing, watch for changes
    #[arg(short = 'w', long)]
    watch: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

pub async fn run(conn: &Connection, args: GetArgs) -> anyhow::Result<()> {
    // `ketch get deploy,rs,pods`: one table per kind, like kubectl.
    if args.kind.contains(',') {
        if args.watch || args.name.is_some() {
            bail!(
                "watching or naming an object takes one kind, not {:?}",
                args.kind
            );
        }
        let kinds: Vec<String> = args.kind.split(',').map(str::to_string).collect();
        for (i, kind) in kinds.into_iter().enumerate() {
            if i > 0 {
                println!();
            }
            Box::pin(run(
                conn,
                GetArgs {
                    kind,
                    ..args.clone()
                },
            ))
            .await?;
        }
        return Ok(());
    }
    let info = resolve_kind(&args.kind)?;
    let client = client(conn).await?;
    let all = args.all_namespaces && args.name.is_none();
    let ns = (!all && info.namespaced).then(|| args.ns.or_default().to_string());
    let wide = args.output == Some(Output::Wide);
    let params = ListParams {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
    };
    let (items, rv) = match &args.name {
        Some(name) => {
            let obj = client.get(info, ns.as_deref(), name).await?;
            (vec![obj], None)
        }
        None => {
            let list = client.list(info, ns.as_deref(), &params).await?;
            let rv = list
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            let items = list
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            (items, rv)
        }
    };
    let now = chrono::Utc::now();
    match args.output {
        Some(Output::Yaml) | Some(Output::Json) => {
            let value = if args.name.is_some() {
                items.first().cloned().unwrap_or(Value::Null)
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv.clone().unwrap_or_default()}, "items": items})
            };
            if args.output == Some(Output::Yaml) {
                print!("{}", serde_yaml::to_string(&value)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
        }
        Some(Output::Name) => {
            for o in &items {
                println!(
                    "{}",
                    display_name(
                        info,
                        o.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    )
                );
            }
        }
        _ => {
            let headers = printer::headers(info, wide, all);
            if items.is_empty() && !args.watch {
                match &ns {
                    Some(ns) => eprintln!("No resources found in {ns} namespace."),
                    None => eprintln!("No resources found"),
                }
            } else {
                let rows: Vec<_> = items
                    .iter()
                    .map(|o| printer::row(info, o, wide, all, now))
                    .collect();
                print!("{}", printer::render(&headers, &rows));
            }
        }
    }
    if !args.watch {
        return Ok(());
    }
    // Follow changes from the listed version; one line per change.
    let from = match &args.name {
        Some(_) => items
            .first()
            .and_then(|o| o.pointer("/metadata/resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_string),
        None => rv,
    };
    let mut stream = Box::pin(ketch_client::watcher::<Value>(
        client, info, ns, params, from,
    ));
    while let Some(ev) = stream.next().await {
        let objs = match ev {
            Ok(Event::Added(o) | Event::Modified(o) | Event::Deleted(o)) => vec![o],
            Ok(Event::Restarted(list)) => list,
            Err(e) => {
                eprintln!("watch: {e}; retrying");
                continue;
            }
        };
        for o in objs {
            if let Some(name) = &args.name
                && o.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str())
            {
                continue;
            }
            match args.output {
                Some(Output::Json) => println!("{}", serde_json::to_string(&o)?),
                Some(Output::Yaml) => print!("---\n{}", serde_yaml::to_string(&o)?),
                Some(Output::Name) => println!(
                    "{}",
                    display_name(
                        info,
                        o.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    )
                ),
                _ => {
                    let row = printer::row(info, &o, wide, all, chrono::Utc::now());
                    let text = printer::render(&printer::headers(info, wide, all), &[row]);
                    print!(
                        "{}",
                        text.lines()
                            .nth(1)
                            .map(|l| format!("{l}\n"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

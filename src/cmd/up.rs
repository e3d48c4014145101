//! `ketch up [DIR]`: the development loop in one command. Starts a server, the control plane
//! and a node agent with its gateway in this process (state in `./.ketch`), builds the app
//! when `DIR/ketch.toml` says how, applies the manifests in DIR, waits for the Deployments to
//! be available while showing progress, prints the URLs, and streams the Pods' logs until
//! Ctrl-C.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use futures_util::StreamExt as _;
use ketch_api::apps::Deployment;
use ketch_api::core::{Pod, Service};
use ketch_api::networking::Ingress;
use ketch_client::{Client, Event, ListParams, LogParams};
use ketch_control::controllers::deployment::{RolloutStatus, rollout_status};
use serde::Deserialize;
use tokio_util::task::AbortOnDropHandle;

use super::agent::NodeArgs;
use super::apply::apply_all;
use super::server::{AllInOne, ServerArgs};
use super::shared::{Connection, Signals, absolute_path};
use crate::manifest::{self, Manifest};

/// The project file: `DIR/ketch.toml`.
pub const PROJECT_FILE: &str = "ketch.toml";

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Project {
    build: Option<Build>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Build {
    /// Run with `sh -c` in `workdir` (default: the project directory).
    command: String,
    workdir: Option<PathBuf>,
}

fn read_project(dir: &Path) -> anyhow::Result<Option<Project>> {
    let path = dir.join(PROJECT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let project: Project = toml::from_str(&text)
        .with_context(|| format!("{}: invalid project file", path.display()))?;
    Ok(Some(project))
}

fn run_build(dir: &Path, build: &Build) -> anyhow::Result<()> {
    let workdir = build
        .workdir
        .as_ref()
        .map_or_else(|| dir.to_path_buf(), |w| dir.join(w));
    println!("building: {} (in {})", build.command, workdir.display());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&build.command)
        .current_dir(&workdir)
        .status()
        .with_context(|| format!("running the build command {:?}", build.command))?;
    if !status.success() {
        bail!(
            "the build command {:?} from {} failed ({status})",
            build.command,
            dir.join(PROJECT_FILE).display()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The app directory (its *.yaml manifests and optional ketch.toml)
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where the store and the agent's data live (kept for the next run)
    #[arg(long, default_value = ".ketch", value_parser = absolute_path())]
    data_dir: PathBuf,
    /// Address the API listens on
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Run the ketch.toml build command even when the app's files exist
    #[arg(long)]
    build: bool,
    /// The keys Secrets are encrypted with in the store [default: <data-dir>.encryption-key,
    /// made on first start]
    #[arg(long, value_name = "PATH", value_parser = absolute_path())]
    encryption_key_file: Option<PathBuf>,
    #[command(flatten)]
    agent: NodeArgs,
}

pub async fn run(conn: &Connection, args: UpArgs) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("app directory {}", args.dir.display()))?;
    let project = read_project(&dir)?;
    let load = || manifest::load(std::slice::from_ref(&dir));
    // Loading checks that `file:` images exist: a failed load is the sign a declared build
    // has not run yet (after the build, loading again reports whatever is still wrong).
    let first = load();
    let build = project.as_ref().and_then(|p| p.build.as_ref());
    let manifests = match (build, first) {
        (Some(b), Ok(_)) if args.build => {
            run_build(&dir, b)?;
            load()?
        }
        (Some(b), Err(_)) => {
            run_build(&dir, b)?;
            load()?
        }
        (None, _) if args.build => bail!(
            "--build: {} declares no [build] command",
            dir.join(PROJECT_FILE).display()
        ),
        (_, loaded) => loaded?,
    };

    let mut agent = args.agent;
    agent.allow_file_images_under(dir.clone());
    let all = AllInOne::start(
        conn,
        ServerArgs::single(
            args.data_dir.clone(),
            args.listen,
            agent,
            args.encryption_key_file,
        ),
        SocketAddr::from(([127, 0, 0, 1], 8080)),
        SocketAddr::from(([127, 0, 0, 1], 8443)),
    )
    .await?;
    println!(
        "ketch {} up: API {} (data in {}; client config {})",
        env!("CARGO_PKG_VERSION"),
        all.url,
        args.data_dir.display(),
        all.config_path.display()
    );
    // In this process: the server's router, called directly.
    let client = Client::in_process(&all.url, &all.server.token, all.server.in_process())?;
    let result = tokio::select! {
        r = serve(&client, &all, &manifests) => r,
        () = signals.wait() => Ok(()),
    };
    println!("stopping (state kept in {})", args.data_dir.display());
    let stopped = all.stop().await;
    result.and(stopped)
}

/// Applies, waits, prints URLs, then streams logs forever (until the caller's Ctrl-C).
async fn serve(client: &Client, all: &AllInOne, manifests: &[Manifest]) -> anyhow::Result<()> {
    apply_all(client, manifests, "default").await?;
    let of_kind = |kind: &str| -> Vec<(String, String)> {
        manifests
            .iter()
            .filter(|m| m.info.kind == kind)
            .filter_map(|m| {
                Some((
                    m.namespace().unwrap_or("default").to_string(),
                    m.name()?.to_string(),
                ))
            })
            .collect()
    };
    let namespaces: BTreeSet<String> = manifests
        .iter()
        .filter(|m| m.info.namespaced)
        .map(|m| m.namespace().unwrap_or("default").to_string())
        .collect();

    wait_available(client, &of_kind("Deployment")).await?;
    print_urls(client, all, &of_kind("Service"), &of_kind("Ingress")).await;
    println!("streaming logs (Ctrl-C to stop)");
    stream_logs(client.clone(), namespaces).await;
    Ok(())
}

/// Waits until every Deployment is available, printing each change of progress.
async fn wait_available(client: &Client, deployments: &[(String, String)]) -> anyhow::Result<()> {
    let mut last: HashMap<(String, String), String> = HashMap::new();
    let mut reported_pods: HashMap<String, String> = HashMap::new();
    loop {
        let mut done = true;
        for key in deployments {
            let (ns, name) = key;
            let d = client.api::<Deployment>(Some(ns)).get(name).await?;
            let line = match rollout_status(&d) {
                RolloutStatus::Complete => format!("deploy/{name}: available"),
                RolloutStatus::Progressing(m) => {
                    done = false;
                    format!("deploy/{name}: {m}")
                }
                RolloutStatus::Failed(m) => bail!("deploy/{name}: {m}"),
            };
            if last.get(key) != Some(&line) {
                println!("  {line}");
                last.insert(key.clone(), line);
            }
            if !done {
                report_stuck_pods(client, ns, &mut reported_pods).await;
            }
        }
        if done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints why Pods are not starting (bad component, missing config), once per reason.
async fn report_stuck_pods(client: &Client, ns: &str, reported: &mut HashMap<String, String>) {
    let Ok(pods) = client
        .api::<Pod>(Some(ns))
        .list(&ListParams::default())
        .await
    else {
        return;
    };
    for p in pods.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        let waiting = p
            .status
            .as_ref()
            .into_iter()
            .flat_map(|s| s.container_statuses.iter())
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
            .find(|w| w.reason.as_deref() != Some("ContainerCreating"));
        if let Some(w) = waiting {
            let msg = format!(
                "{}: {}",
                w.reason.as_deref().unwrap_or("Waiting"),
                w.message.as_deref().unwrap_or("")
            );
            if reported.get(&name) != Some(&msg) {
                println!("  pod/{name}: {msg}");
                reported.insert(name, msg);
            }
        }
    }
}

async fn print_urls(
    client: &Client,
    all: &AllInOne,
    services: &[(String, String)],
    ingresses: &[(String, String)],
) {
    let Some(agent) = &all.agent else { return };
    let Some(gw) = agent.gateway_addr() else {
        println!("no gateway (--no-gateway): Services are not served over HTTP");
        return;
    };
    let domain = agent.gateway_domain();
    let port = gw.port();
    let host_ip = if gw.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        gw.ip().to_string()
    };
    println!("ready:");
    for (ns, name) in services {
        println!("  service {ns}/{name}: http://{name}.{ns}.{domain}:{port}/");
        if let Ok(svc) = client.api::<Service>(Some(ns)).get(name).await
            && let Some(spec) = svc.spec
        {
            for p in spec.ports.iter().filter_map(|p| p.node_port) {
                println!("  service {ns}/{name} NodePort: http://{host_ip}:{p}/");
            }
        }
    }
    for (ns, name) in ingresses {
        let Ok(ing) = client.api::<Ingress>(Some(ns)).get(name).await else {
            continue;
        };
        for rule in ing.spec.iter().flat_map(|s| s.rules.iter()) {
            let host = rule
                .host
                .clone()
                .filter(|h| !h.starts_with('*'))
                .unwrap_or_else(|| host_ip.clone());
            for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                let path = p.path.as_deref().unwrap_or("/");
                let to = p.backend.service.as_ref().map_or("?", |s| s.name.as_str());
                println!("  ingress {ns}/{name}: http://{host}:{port}{path} -> service {to}");
            }
        }
        // Hosts with a certificate (spec.tls) are served over HTTPS on the TLS listener too.
        if let Some(tls) = agent.gateway_tls_addr() {
            let tls_port = tls.port();
            for host in ing
                .spec
                .iter()
                .flat_map(|s| s.tls.iter())
                .flat_map(|t| t.hosts.iter())
                .filter(|h| !h.starts_with('*'))
            {
                println!("  ingress {ns}/{name}: https://{host}:{tls_port}/ (TLS)");
            }
        }
    }
}

/// Follows the logs of every Pod in `namespaces` as they come and go, one line prefix per
/// Pod and container.
async fn stream_logs(client: Client, namespaces: BTreeSet<String>) {
    let mut streams = futures_util::stream::select_all(namespaces.iter().map(|ns| {
        client
            .api::<Pod>(Some(ns))
            .watcher(ListParams::default(), None)
            .boxed()
    }));
    // Aborted when dropped: on Ctrl-C this future is dropped before the server stops, and
    // a log stream left running would end in an error from the stopping agent.
    let mut following: BTreeMap<String, AbortOnDropHandle<()>> = BTreeMap::new();
    while let Some(ev) = streams.next().await {
        let pods = match ev {
            Ok(Event::Added(p) | Event::Modified(p)) => vec![p],
            Ok(Event::Restarted(ps)) => ps,
            Ok(Event::Deleted(p)) => {
                if let Some(uid) = p.metadata.uid.as_deref() {
                    following.remove(uid);
                }
                continue;
            }
            Err(_) => continue,
        };
        for p in pods {
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let Some(uid) = p.metadata.uid.clone() else {
                continue;
            };
            if !running || following.get(&uid).is_some_and(|t| !t.is_finished()) {
                continue;
            }
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            let containers: Vec<String> = p
                .spec
                .as_ref()
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            let client = client.clone();
            following.insert(
                uid,
                AbortOnDropHandle::new(tokio::spawn(async move {
                    let many = containers.len() > 1;
                    let tasks = containers.into_iter().map(|c| {
                        let prefix = if many {
                            format!("{name}/{c}")
                        } else {
                            name.clone()
                        };
                        follow(client.clone(), ns.clone(), name.clone(), c, prefix)
                    });
                    futures_util::future::join_all(tasks).await;
                })),
            );
        }
    }
}

async fn follow(client: Client, ns: String, pod: String, container: String, prefix: String) {
    let opts = LogParams {
        container: Some(container),
        follow: true,
        tail_lines: None,
        timestamps: false,
    };
    let Ok(mut resp) = client.pod_log(&ns, &pod, &opts).await else {
        return;
    };
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            println!("[{prefix}] {}", String::from_utf8_lossy(&line[..i]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_data_dir_is_absolute() {
        #[derive(clap::Parser)]
        struct Up {
            #[command(flatten)]
            args: UpArgs,
        }
        let up = <Up as clap::Parser>::try_parse_from(["up"]).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(up.args.data_dir, cwd.join(".ketch"));
    }

    #[test]
    fn project_files_declare_a_build_command_and_reject_unknown_keys() {
        let p: Project =
            toml::from_str("[build]\ncommand = \"cargo build --release --target wasm32-wasip2\"\n")
                .expect("valid");
        assert_eq!(
            p.build.map(|b| b.command),
            Some("cargo build --release --target wasm32-wasip2".to_string())
        );
        let e = toml::from_str::<Project>("[build]\ncmd = \"make\"\n").expect_err("unknown key");
        assert!(e.to_string().contains("cmd"), "{e}");
    }
}

//! Wiring of each subcommand to the crates that do the work.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow, bail};
use futures_util::StreamExt as _;
use ketch_api::resource::{ResourceInfo, lookup};
use ketch_client::{Client, ClientConfig, Event, ListParams};
use ketch_control::server::{JoinOptions, Server, ServerOptions};
use serde_json::Value;

use ketch_control::runner::ControlOptions;
use ketch_control::runner::leader::{self, LeaderGated};
use ketch_control::scheduler::Profile;
use ketch_runtime::{Agent, AgentConfig, GatewayConfig};

use crate::manifest;
use crate::printer::{self, display_name};
use crate::{AgentArgs, Connection, GatewayArgs, Output};

pub fn config_path(conn: &Connection) -> PathBuf {
    conn.config
        .clone()
        .unwrap_or_else(ClientConfig::default_path)
}

/// Every server URL (`--server` takes a comma-separated list) and the token.
fn servers_and_token(conn: &Connection) -> anyhow::Result<(Vec<String>, String)> {
    let file = if conn.server.is_none() || conn.token.is_none() {
        let path = config_path(conn);
        Some(ClientConfig::load(&path).with_context(|| {
            "no server configured: start one with `ketch server`, or pass --server and --token (or KETCH_SERVER and KETCH_TOKEN)"
        })?)
    } else {
        None
    };
    let servers = conn
        .server
        .as_deref()
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .or_else(|| file.as_ref().map(|f| f.servers.clone()))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow!("no server configured"))?;
    let token = conn
        .token
        .clone()
        .or_else(|| file.as_ref().map(|f| f.token.clone()))
        .ok_or_else(|| anyhow!("no token configured"))?;
    Ok((servers, token))
}

/// A client for the first configured server that answers; a dead one is skipped after
/// [`PROBE`].
pub async fn client(conn: &Connection) -> anyhow::Result<Client> {
    let (servers, token) = servers_and_token(conn)?;
    Ok(Client::connect_any(&servers, &token, PROBE).await?)
}

/// How long the CLI waits for one server before trying the next.
const PROBE: std::time::Duration = std::time::Duration::from_secs(2);

fn resolve_kind(kind: &str) -> anyhow::Result<&'static ResourceInfo> {
    lookup(kind).ok_or_else(|| {
        anyhow!(
            "the server doesn't have a resource type {kind:?}; known: {}",
            ketch_api::resource::RESOURCES
                .iter()
                .map(|r| r.plural)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// A server, its control plane and (optionally) its node agent in this process: what
/// `ketch server` and `ketch up` run.
pub struct AllInOne {
    pub server: Server,
    /// The controllers and scheduler, running while this server is the raft leader.
    pub control: LeaderGated,
    pub agent: Option<Agent>,
    pub url: String,
    pub config_path: PathBuf,
}

/// How to start an [`AllInOne`].
pub struct AllInOneOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    /// `--join ADDR`: join the cluster a member at ADDR belongs to (token: `--token`).
    pub join: Option<String>,
    pub agent: Option<AgentArgs>,
    pub node_grace: std::time::Duration,
    /// How the scheduler looks for and ranks the nodes a Pod fits on.
    pub scheduler: Profile,
    /// `--snapshot-count`: applied raft entries between snapshots.
    pub snapshot_count: u64,
    /// Gateway address when `--gateway` is not given.
    pub default_gateway: SocketAddr,
}

impl AllInOne {
    pub async fn start(conn: &Connection, opts: AllInOneOptions) -> anyhow::Result<AllInOne> {
        let join = match opts.join {
            Some(address) => Some(JoinOptions {
                address,
                token: conn.token.clone().ok_or_else(|| {
                    anyhow!("--join needs --token (or KETCH_TOKEN): the cluster's admin token")
                })?,
            }),
            None => None,
        };
        let server = Server::start(ServerOptions {
            data_dir: opts.data_dir.clone(),
            listen: opts.listen,
            advertise: opts.advertise,
            join,
            snapshot_count: opts.snapshot_count,
        })
        .await?;
        let url = format!("http://{}", server.addr);
        let config_path = config_path(conn);
        // This server first, then every other member this server knows of.
        let mut servers = vec![url.clone()];
        let me = server.node_id;
        for m in server.store().members() {
            if m.id != me {
                servers.push(format!("http://{}", m.address));
            }
        }
        ClientConfig {
            servers,
            token: server.token.clone(),
        }
        .save(&config_path)
        .context("writing the client config")?;
        // The scheduler and controllers talk to the store only through the API, like any
        // client, and only on the leader; being in this process, they call its router
        // directly instead of connecting to it.
        let control = LeaderGated::start(
            Client::in_process(&url, &server.token, server.in_process())?.no_forward(),
            ControlOptions {
                node_grace: Some(opts.node_grace),
                scheduler: opts.scheduler,
            },
            leader::leadership(server.store().clone()),
        );
        let agent = match opts.agent {
            Some(args) => {
                let listen = args
                    .agent_listen
                    .unwrap_or_else(|| "127.0.0.1:0".parse().expect("valid address"));
                let mut cfg = agent_config(
                    args,
                    url.clone(),
                    server.token.clone(),
                    opts.data_dir.join("agent"),
                    listen,
                    opts.default_gateway,
                )?;
                // This process's own agent calls the server's router directly.
                cfg.in_process = Some(server.in_process());
                Some(Agent::start(cfg).await.context("starting the node agent")?)
            }
            None => None,
        };
        Ok(AllInOne {
            server,
            control,
            agent,
            url,
            config_path,
        })
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some(a) = self.agent {
            a.stop().await;
        }
        self.control.stop().await;
        self.server.stop().await?;
        Ok(())
    }
}

pub async fn server(conn: &Connection, opts: AllInOneOptions) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let data_dir = opts.data_dir.clone();
    let all = AllInOne::start(conn, opts).await?;
    println!(
        "ketch server {} (id {}) listening on {}",
        env!("CARGO_PKG_VERSION"),
        all.server.node_id,
        all.url
    );
    println!("  data dir:      {}", data_dir.display());
    println!(
        "  client config: {} (token in {}/admin.token)",
        all.config_path.display(),
        data_dir.display()
    );
    println!(
        "  add a server:  ketch server --join {} --token \"$(cat {}/admin.token)\"",
        all.server.addr,
        data_dir.display()
    );
    match &all.agent {
        Some(a) => {
            println!("  node agent:    {}", a.endpoint());
            match a.gateway_addr() {
                Some(addr) => println!(
                    "  gateway:       http://{addr} (Services at http://<service>.<namespace>.{}:{})",
                    a.gateway_domain(),
                    addr.port()
                ),
                None => println!("  gateway:       none (--no-gateway)"),
            }
        }
        None => println!("  node agent:    none (--no-agent)"),
    }
    signals.wait().await;
    println!("shutting down");
    all.stop().await
}

fn agent_config(
    args: AgentArgs,
    server: String,
    token: String,
    data_dir: PathBuf,
    listen: SocketAddr,
    default_gateway: SocketAddr,
) -> anyhow::Result<AgentConfig> {
    let node_name = match args.node_name {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the hostname for the node name (pass --name)")?
            .trim()
            .to_lowercase(),
    };
    Ok(AgentConfig {
        server,
        token,
        in_process: None,
        node_name,
        listen,
        advertise: None,
        data_dir: data_dir.clone(),
        labels: args.node_labels.into_iter().collect(),
        cpu_millis: None,
        memory_bytes: None,
        max_wasm_instances: args.max_wasm_instances,
        gateway: gateway_config(args.gateway, default_gateway),
        containerd: (!args.containers.no_containerd).then_some(args.containers.containerd),
        insecure_registries: args.containers.insecure_registries,
        registry_config: args.containers.registry_config,
        pod_network: Some(
            ketch_runtime::container::network::NetworkConfig::with_bridge(
                data_dir.join("cni"),
                args.containers.pod_bridge,
                args.containers.pod_subnet,
            ),
        ),
    })
}

fn gateway_config(args: GatewayArgs, default_listen: SocketAddr) -> GatewayConfig {
    GatewayConfig {
        listen: if args.no_gateway {
            None
        } else {
            Some(args.gateway.unwrap_or(default_listen))
        },
        advertise: args.gateway_advertise,
        domain: args.gateway_domain,
        max_body: args.gateway_max_body,
        timeout: args.gateway_timeout,
        access_log: args.access_log,
    }
}

pub async fn agent(conn: &Connection, args: AgentArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    // Every configured server: the agent moves to the next when one is unreachable.
    let (servers, token) = servers_and_token(conn)?;
    let server = servers.join(",");
    let listen = args
        .agent_listen
        .unwrap_or_else(|| "0.0.0.0:10250".parse().expect("valid address"));
    let cfg = agent_config(
        args,
        server.clone(),
        token,
        data_dir,
        listen,
        ketch_runtime::GatewayConfig::default()
            .listen
            .unwrap_or_else(|| "0.0.0.0:8080".parse().expect("valid address")),
    )?;
    let name = cfg.node_name.clone();
    let agent = Agent::start(cfg).await.context("starting the node agent")?;
    println!(
        "ketch agent {}: node {name} joined {server}; endpoint {}",
        env!("CARGO_PKG_VERSION"),
        agent.endpoint()
    );
    if let Some(addr) = agent.gateway_addr() {
        println!("  gateway: http://{addr}");
    }
    signals.wait().await;
    println!("shutting down");
    agent.stop().await;
    Ok(())
}

pub async fn logs(
    conn: &Connection,
    pod: &str,
    namespace: Option<&str>,
    opts: ketch_client::LogOptions,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let client = client(conn).await?;
    let mut resp = client
        .pod_log(namespace.unwrap_or("default"), pod, &opts)
        .await?;
    let mut out = std::io::stdout();
    while let Some(chunk) = resp.chunk().await.context("reading the log stream")? {
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(())
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

pub async fn rollout_status(
    conn: &Connection,
    target: &str,
    namespace: Option<&str>,
    timeout: u64,
) -> anyhow::Result<()> {
    use ketch_control::controllers::deployment::{RolloutStatus, rollout_status};
    let name = deployment_name(target)?;
    let ns = namespace.unwrap_or("default").to_string();
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

pub async fn scale(
    conn: &Connection,
    target: &str,
    replicas: i32,
    namespace: Option<&str>,
) -> anyhow::Result<()> {
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
        .merge_patch(
            info,
            Some(namespace.unwrap_or("default")),
            name,
            &patch,
            false,
        )
        .await?;
    println!("{} scaled", display_name(info, name));
    Ok(())
}

/// SIGTERM and SIGINT, caught from the moment this is created: create it before starting
/// anything, so a signal during startup stops the process cleanly instead of killing it.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT (including one that came before the call).
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

pub async fn apply(
    conn: &Connection,
    files: &[PathBuf],
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    let manifests = manifest::load(files)?;
    let client = client(conn).await?;
    let default_ns = namespace.unwrap_or("default");
    let mut failed = 0;
    for m in &manifests {
        let name = m.name().unwrap_or("<generated>");
        match manifest::apply(&client, m, default_ns).await {
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

#[derive(Clone)]
pub struct GetArgs {
    pub kind: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub all_namespaces: bool,
    pub selector: Option<String>,
    pub field_selector: Option<String>,
    pub output: Option<Output>,
    pub watch: bool,
}

pub async fn get(conn: &Connection, args: GetArgs) -> anyhow::Result<()> {
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
            Box::pin(get(
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
    let ns = (!all && info.namespaced)
        .then(|| args.namespace.clone().unwrap_or_else(|| "default".into()));
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

pub async fn describe(
    conn: &Connection,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    let info = resolve_kind(kind)?;
    let client = client(conn).await?;
    let ns = info.namespaced.then(|| namespace.unwrap_or("default"));
    let obj = client.get(info, ns, name).await?;
    print!("{}", describe_text(info, &obj));
    let events_info = lookup("events").expect("events are registered");
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut selector = format!(
        "involvedObject.name={name},involvedObject.kind={}",
        info.kind
    );
    if !uid.is_empty() {
        selector.push_str(&format!(",involvedObject.uid={uid}"));
    }
    let params = ListParams {
        label_selector: None,
        field_selector: Some(selector),
    };
    let events = client
        .list(events_info, Some(ns.unwrap_or("default")), &params)
        .await?;
    let items = events
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        println!("Events:  <none>");
    } else {
        println!("Events:");
        let now = chrono::Utc::now();
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|e| {
                let r = printer::row(events_info, e, false, false, now);
                // LAST SEEN, TYPE, REASON, (object omitted: it is this one), MESSAGE
                vec![r[1].clone(), r[2].clone(), r[0].clone(), r[4].clone()]
            })
            .collect();
        let table = printer::render(&["TYPE", "REASON", "AGE", "MESSAGE"], &rows);
        for line in table.lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

/// Header lines like kubectl's, then the spec and status as YAML.
fn describe_text(info: &ResourceInfo, obj: &Value) -> String {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let map = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n                 ")
            })
            .unwrap_or_else(|| "<none>".into())
    };
    let mut out = String::new();
    out.push_str(&format!("Name:            {}\n", s("/metadata/name")));
    if info.namespaced {
        out.push_str(&format!("Namespace:       {}\n", s("/metadata/namespace")));
    }
    out.push_str(&format!(
        "Kind:            {} ({})\n",
        info.kind,
        info.api_version()
    ));
    out.push_str(&format!("Labels:          {}\n", map("/metadata/labels")));
    out.push_str(&format!(
        "Annotations:     {}\n",
        map("/metadata/annotations")
    ));
    out.push_str(&format!("UID:             {}\n", s("/metadata/uid")));
    out.push_str(&format!(
        "Created:         {}\n",
        s("/metadata/creationTimestamp")
    ));
    out.push_str(&format!(
        "ResourceVersion: {}\n",
        s("/metadata/resourceVersion")
    ));
    if let Some(g) = obj.pointer("/metadata/generation") {
        out.push_str(&format!("Generation:      {g}\n"));
    }
    let deleting = s("/metadata/deletionTimestamp");
    if !deleting.is_empty() {
        out.push_str(&format!("Terminating:     since {deleting}\n"));
    }
    let mut rest = obj.clone();
    if let Some(o) = rest.as_object_mut() {
        for k in ["apiVersion", "kind", "metadata"] {
            o.remove(k);
        }
        for (k, v) in o.iter() {
            let title = format!("{}{}", k[..1].to_uppercase(), &k[1..]);
            out.push_str(&format!("{title}:\n"));
            let yaml = serde_yaml::to_string(v).unwrap_or_default();
            for line in yaml.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out
}

pub async fn delete(
    conn: &Connection,
    files: &[PathBuf],
    target: &[String],
    namespace: Option<&str>,
    ignore_not_found: bool,
) -> anyhow::Result<()> {
    let mut todo: Vec<(&'static ResourceInfo, Option<String>, String)> = Vec::new();
    if !files.is_empty() {
        for m in manifest::load(files)? {
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
        let [kind, names @ ..] = target else {
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

pub async fn version(conn: &Connection) -> anyhow::Result<()> {
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

//! `ketch`: the single binary. Parses the command line and wires the crates together;
//! the work happens in `ketch-control` (server), `ketch-client` (CLI verbs) and `ketch-api`.

mod cluster;
mod commands;
mod manifest;
mod new;
mod printer;
mod push;
mod up;

/// mimalloc instead of glibc malloc: see the workspace Cargo.toml and BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ketch_control::scheduler::{NodesToScore, Profile, ScoringStrategy};
use ketch_control::store::DEFAULT_SNAPSHOT_COUNT;

#[derive(Parser, Debug)]
#[command(
    name = "ketch",
    version,
    about = "A WebAssembly-first orchestrator",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: Command,
}

/// Where the API server is and how to authenticate: flags, then `KETCH_SERVER` /
/// `KETCH_TOKEN`, then the client config file.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// API server URL, e.g. http://127.0.0.1:6443, or a cluster's servers separated by
    /// commas (the CLI uses the first that answers; `ketch agent` moves to the next when
    /// one is unreachable)
    #[arg(long, global = true, env = "KETCH_SERVER")]
    server: Option<String>,
    /// Bearer token for the API server
    #[arg(long, global = true, env = "KETCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Client config file [default: $KETCH_CONFIG or ~/.ketch/config]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a control-plane server (a one-server raft cluster, or a member of one with --join)
    Server {
        /// Where the store, token and server identity live
        #[arg(long, default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// Address the API listens on
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// Address other servers and agents use to reach this one [default: the listen address]
        #[arg(long)]
        advertise: Option<String>,
        /// Join the cluster of the server at ADDR (host:port of any member) on first start;
        /// --token must be the cluster's admin token
        #[arg(long, value_name = "ADDR")]
        join: Option<String>,
        /// Don't run a node agent in this process (control plane only)
        #[arg(long)]
        no_agent: bool,
        /// Seconds a node may go without renewing its Lease before it is marked not Ready
        #[arg(long, default_value_t = 40)]
        node_grace_period: u64,
        /// How the scheduler ranks the nodes a Pod fits on: most-allocated packs Pods densely
        /// (bin-packing, leaves whole nodes free), least-allocated spreads them
        #[arg(long, value_enum, default_value_t = Scoring::MostAllocated)]
        scheduler_scoring: Scoring,
        /// Percentage of the nodes the scheduler looks for a fit on before it picks among
        /// them, on clusters of 100 nodes or more (kube-scheduler's percentageOfNodesToScore):
        /// 0 adapts it to the cluster's size (50 % minus 1 % per 125 nodes, at least 5 %),
        /// 100 checks every node for every Pod
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
        percentage_of_nodes_to_score: u8,
        /// Raft log entries applied between snapshots (a snapshot lets the log be truncated
        /// and brings far-behind servers up to date); one entry holds a batch of writes
        #[arg(long, default_value_t = DEFAULT_SNAPSHOT_COUNT, value_parser = clap::value_parser!(u64).range(10..))]
        snapshot_count: u64,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Run an app for development: start a server + agent (state in --data-dir), build the app
    /// if DIR/ketch.toml says how, apply DIR's manifests, wait, print URLs, stream logs
    Up {
        /// The app directory (its *.yaml manifests and optional ketch.toml)
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where the store and the agent's data live (kept for the next run)
        #[arg(long, default_value = ".ketch")]
        data_dir: PathBuf,
        /// Address the API listens on
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// Run the ketch.toml build command even when the app's files exist
        #[arg(long)]
        build: bool,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Create a new app in ./NAME: a ketch-sdk component (Cargo.toml, src/lib.rs), its manifest
    /// (app.yaml: Deployment + Service) and ketch.toml; then `ketch up NAME` runs it
    New {
        /// The app's name (Deployment, Service and Cargo package): a DNS label, e.g. my-app
        name: String,
        /// The ketch-sdk sources to depend on [default: the sdk/ this ketch was built from]
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Run a node agent that joins a server and runs the Pods bound to this node
    Agent {
        #[command(flatten)]
        agent: AgentArgs,
        /// Where the agent keeps logs and the compiled-Wasm cache
        #[arg(long, default_value_os_t = default_agent_dir())]
        data_dir: PathBuf,
    },
    /// Print a container's logs
    Logs {
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
    },
    /// Manage rollouts
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Set the number of replicas of a Deployment or ReplicaSet
    Scale {
        /// deploy/NAME or rs/NAME
        target: String,
        /// The new replica count
        #[arg(long)]
        replicas: i32,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Create or update objects from manifest files, directories or stdin
    Apply {
        /// Manifest file, directory of manifests, or - for stdin (repeatable)
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        ns: Namespace,
    },
    /// List objects of a kind, or show one
    Get {
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
    },
    /// Show an object's fields and its events
    Describe {
        kind: String,
        name: String,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Delete objects named in manifests, or by kind and name
    Delete {
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
    },
    /// Push a Wasm component to an OCI registry (CNCF Wasm artifact); prints REF@DIGEST
    Push {
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
    },
    /// Show or change the servers of the control plane
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Print client and server versions
    Version,
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// List the servers: id, address, role (voter/learner), leader, last log index
    Members,
    /// Remove a server from the cluster (its id from `ketch cluster members`)
    Remove {
        /// The server's id
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
enum RolloutCommand {
    /// Follow a Deployment's rollout until it completes (exit 0) or fails (exit 1)
    Status {
        /// deploy/NAME
        target: String,
        #[command(flatten)]
        ns: Namespace,
        /// Give up after this many seconds (0: wait forever)
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
}

/// Node agent settings (shared by `ketch agent` and the agent inside `ketch server`).
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Node name [default: this machine's hostname]
    #[arg(long = "name")]
    node_name: Option<String>,
    /// Address the agent's endpoint (logs, pod proxy) listens on
    /// [default: 127.0.0.1:0 inside `ketch server`, 0.0.0.0:10250 for `ketch agent`]
    #[arg(long = "agent-listen")]
    agent_listen: Option<SocketAddr>,
    /// Node label KEY=VALUE (repeatable)
    #[arg(long = "node-label", value_parser = parse_label)]
    node_labels: Vec<(String, String)>,
    /// Most Wasm instances alive at once on this node
    #[arg(long, default_value_t = 1000)]
    max_wasm_instances: u32,
    #[command(flatten)]
    gateway: GatewayArgs,
    #[command(flatten)]
    containers: ContainerArgs,
}

/// Linux containers through containerd.
#[derive(Args, Debug, Clone)]
pub struct ContainerArgs {
    /// containerd's socket; without a containerd answering there the node runs Wasm only
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    containerd: PathBuf,
    /// Do not run Linux containers on this node
    #[arg(long, conflicts_with = "containerd")]
    no_containerd: bool,
    /// Pull from this registry (HOST:PORT) over plain HTTP; loopback registries always are (repeatable)
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Registry credentials: a Docker-style config.json [default: $DOCKER_CONFIG/config.json or ~/.docker/config.json]
    #[arg(long, env = "KETCH_REGISTRY_CONFIG")]
    registry_config: Option<PathBuf>,
    /// The Linux bridge container Pods attach to (two agents on one machine need two)
    #[arg(long, default_value = ketch_runtime::container::network::DEFAULT_BRIDGE)]
    pod_bridge: String,
    /// Addresses of container Pods on this node (CIDR)
    #[arg(long, default_value = ketch_runtime::container::network::DEFAULT_SUBNET)]
    pod_subnet: String,
}

/// The node gateway: Services over HTTP.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Address the gateway listens on (HTTP/1.1 and h2c) [default: 0.0.0.0:8080; 127.0.0.1:8080 for `ketch up`]
    #[arg(long = "gateway")]
    gateway: Option<SocketAddr>,
    /// Run no gateway listener (Wasm apps can still call Services by name)
    #[arg(long, conflicts_with = "gateway")]
    no_gateway: bool,
    /// Service hosts are <service>.<namespace>.<domain>
    #[arg(long, default_value = ketch_runtime::gateway::DEFAULT_DOMAIN)]
    gateway_domain: String,
    /// URL other nodes' gateways use to reach this one [default: http://<node IP>:<port>]
    #[arg(long)]
    gateway_advertise: Option<String>,
    /// Deadline for a response from the app, e.g. 60s or 500ms
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    gateway_timeout: std::time::Duration,
    /// Largest request body the gateway accepts, e.g. 16Mi
    #[arg(long, default_value = "16Mi", value_parser = parse_bytes)]
    gateway_max_body: u64,
    /// Log one line per gateway request to stderr
    #[arg(long)]
    access_log: bool,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    ketch_runtime::format::parse_duration(s)
        .ok_or_else(|| format!("invalid duration {s:?} (use e.g. 60s or 500ms)"))
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    ketch_api::quantity::Quantity::new(s)
        .value()
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("invalid size {s:?} (use e.g. 16Mi or 1048576)"))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn default_agent_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".ketch").join("agent")
}

#[derive(Args, Debug, Clone)]
pub struct Namespace {
    /// Namespace [default: default]
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
}

/// `--scheduler-scoring` (Kubernetes' NodeResourcesFit scoring strategies).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Scoring {
    MostAllocated,
    LeastAllocated,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

fn default_data_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".ketch").join("data")
}

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal as _;
    let cli = Cli::parse();
    // `ketch up` is interactive: its own output (progress, URLs, app logs) matters more than
    // the server's info lines.
    let default_filter = match cli.command {
        Command::Up { .. } => "warn",
        _ => "info,openraft=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KETCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let conn = cli.conn;
    match cli.command {
        Command::Server {
            data_dir,
            listen,
            advertise,
            join,
            no_agent,
            node_grace_period,
            scheduler_scoring,
            percentage_of_nodes_to_score,
            snapshot_count,
            agent,
        } => {
            let opts = commands::AllInOneOptions {
                data_dir,
                listen,
                advertise,
                join,
                agent: (!no_agent).then_some(agent),
                node_grace: std::time::Duration::from_secs(node_grace_period),
                scheduler: Profile {
                    scoring: match scheduler_scoring {
                        Scoring::MostAllocated => ScoringStrategy::MostAllocated,
                        Scoring::LeastAllocated => ScoringStrategy::LeastAllocated,
                    },
                    nodes_to_score: NodesToScore::percentage(percentage_of_nodes_to_score),
                },
                snapshot_count,
                default_gateway: SocketAddr::from(([0, 0, 0, 0], 8080)),
            };
            commands::server(&conn, opts).await
        }
        Command::Agent { agent, data_dir } => commands::agent(&conn, agent, data_dir).await,
        Command::New { name, sdk_path } => new::new(&name, sdk_path),
        Command::Up {
            dir,
            data_dir,
            listen,
            build,
            agent,
        } => {
            let args = up::UpArgs {
                dir,
                data_dir,
                listen,
                build,
                agent,
            };
            up::up(&conn, args).await
        }
        Command::Logs {
            pod,
            container,
            follow,
            tail,
            ns,
        } => {
            let opts = ketch_client::LogOptions {
                container,
                follow,
                tail_lines: tail,
            };
            commands::logs(&conn, &pod, ns.namespace.as_deref(), opts).await
        }
        Command::Rollout {
            command:
                RolloutCommand::Status {
                    target,
                    ns,
                    timeout,
                },
        } => commands::rollout_status(&conn, &target, ns.namespace.as_deref(), timeout).await,
        Command::Scale {
            target,
            replicas,
            ns,
        } => commands::scale(&conn, &target, replicas, ns.namespace.as_deref()).await,
        Command::Apply { files, ns } => {
            commands::apply(&conn, &files, ns.namespace.as_deref()).await
        }
        Command::Get {
            kind,
            name,
            ns,
            all_namespaces,
            selector,
            field_selector,
            output,
            watch,
        } => {
            commands::get(
                &conn,
                commands::GetArgs {
                    kind,
                    name,
                    namespace: ns.namespace,
                    all_namespaces,
                    selector,
                    field_selector,
                    output,
                    watch,
                },
            )
            .await
        }
        Command::Describe { kind, name, ns } => {
            commands::describe(&conn, &kind, &name, ns.namespace.as_deref()).await
        }
        Command::Delete {
            files,
            target,
            ns,
            ignore_not_found,
        } => {
            commands::delete(
                &conn,
                &files,
                &target,
                ns.namespace.as_deref(),
                ignore_not_found,
            )
            .await
        }
        Command::Push {
            file,
            reference,
            insecure,
            registry_config,
        } => push::push(&file, &reference, insecure, registry_config).await,
        Command::Cluster { command } => match command {
            ClusterCommand::Members => cluster::members(&conn).await,
            ClusterCommand::Remove { id } => cluster::remove(&conn, id).await,
        },
        Command::Version => commands::version(&conn).await,
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "ketch", &mut std::io::stdout());
            Ok(())
        }
    }
}

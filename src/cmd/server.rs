//! `ketch server`: a control-plane server, its controllers and scheduler, and (unless
//! `--no-agent`) a node agent, all in this process; [`AllInOne`] is what `ketch up` runs too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::{Args, ValueEnum};
use ketch_agent::Agent;
use ketch_client::{Client, ClientConfig};
use ketch_control::controllers::node_lifecycle::LifecyclePolicy;
use ketch_control::liveness::HeartbeatPolicy;
use ketch_control::runner::ControlOptions;
use ketch_control::runner::leader::{self, LeaderGated};
use ketch_control::scheduler::{NodesToScore, Profile, ScoringStrategy};
use ketch_control::server::{JoinOptions, Server, ServerOptions, inflight, quota};
use ketch_control::store::DEFAULT_SNAPSHOT_COUNT;

use super::agent::NodeArgs;
use super::shared::{Connection, Signals, absolute_path, config_path};

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Where the store, token and server identity live
    #[arg(long, default_value_os_t = default_data_dir(), value_parser = absolute_path())]
    data_dir: PathBuf,
    /// Address the API listens on
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Address other servers and agents use to reach this one [default: the listen address]
    #[arg(long)]
    advertise: Option<String>,
    /// Join the cluster of the server at ADDR (host:port of any member) on first start;
    /// --token must be a server join token (`ketch token create --join --server` on a
    /// member prints the whole command)
    #[arg(long, value_name = "ADDR")]
    join: Option<String>,
    /// More names (IP addresses or DNS names) the server's certificate is valid for,
    /// besides loopback, the host name, --listen and --advertise
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_sans: Vec<String>,
    /// Don't run a node agent in this process (control plane only)
    #[arg(long)]
    no_agent: bool,
    #[command(flatten)]
    node_failure: NodeFailureArgs,
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
    /// The keys Secrets are encrypted with in the store (JSON: {"keys": [{"name", "secret"}]},
    /// the first encrypts, all decrypt) [default: <data-dir>.encryption-key, beside the data
    /// dir, made with one new key on first start]
    #[arg(long, value_name = "PATH", value_parser = absolute_path())]
    encryption_key_file: Option<PathBuf>,
    /// How long an Event is kept after it was last seen (`30m`, `1h`, `24h`), like the
    /// Kubernetes API server's --event-ttl
    #[arg(long, default_value = "1h", value_parser = parse_event_ttl)]
    event_ttl: std::time::Duration,
    /// Reads (get, list) this server works on at once, per priority level (nodes, everyone
    /// else); one caller gets at most half; over it a request gets 429 and Retry-After.
    /// Watches and logs are not counted (Kubernetes' flag of the same name)
    #[arg(long, default_value_t = inflight::DEFAULT_MAX_READS, value_parser = clap::value_parser!(u32).range(1..))]
    max_requests_inflight: u32,
    /// The same for writes (create, update, patch, delete)
    #[arg(long, default_value_t = inflight::DEFAULT_MAX_WRITES, value_parser = clap::value_parser!(u32).range(1..))]
    max_mutating_requests_inflight: u32,
    /// Bytes of stored objects past which creates are refused (507), and updates from all
    /// but nodes and admins, until deletes free space; the metric store_quota_exceeded is
    /// the alarm (etcd's flag of the same name, and its default)
    #[arg(long, default_value = "2Gi", value_parser = crate::cmd::agent::parse_bytes)]
    quota_backend_bytes: u64,
    #[command(flatten)]
    agent: NodeArgs,
}

fn parse_event_ttl(s: &str) -> Result<std::time::Duration, String> {
    ketch_api::format::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("expected a duration such as 30m or 1h, got {s:?}"))
}

/// How dead nodes are found and their Pods moved (defaults: `LifecyclePolicy` and
/// `HeartbeatPolicy`, Kubernetes' where it has the knob).
#[derive(Args, Debug, Clone)]
pub struct NodeFailureArgs {
    /// Seconds a node that sends no heartbeats (an older agent; any node just after a leader
    /// change) may go without renewing its Lease before it is marked not Ready
    #[arg(long, default_value_t = LifecyclePolicy::default().grace.as_secs())]
    node_grace_period: u64,
    /// Node heartbeats per second the leader takes at most: the interval it gives agents
    /// grows with the cluster to stay under it (1 s up to this many nodes, at most 10 s); a
    /// node is not Ready after 3 intervals without one
    #[arg(long, default_value_t = HeartbeatPolicy::default().max_rate)]
    node_heartbeat_max_rate: f64,
    /// Nodes per second, per zone, that get the NoExecute taint which evicts their Pods
    /// (Kubernetes' --node-eviction-rate)
    #[arg(long, default_value_t = LifecyclePolicy::default().eviction_rate)]
    node_eviction_rate: f64,
    /// The same in a large zone in partial disruption
    #[arg(long, default_value_t = LifecyclePolicy::default().secondary_eviction_rate)]
    secondary_node_eviction_rate: f64,
    /// Share of a zone's nodes not Ready (and more than two) that puts it in partial
    /// disruption: large zones slow down evictions, small ones stop them
    #[arg(long, default_value_t = LifecyclePolicy::default().unhealthy_zone_threshold)]
    unhealthy_zone_threshold: f64,
    /// Zones of up to this many nodes stop evicting in partial disruption
    #[arg(long, default_value_t = LifecyclePolicy::default().large_cluster_threshold)]
    large_cluster_size_threshold: usize,
    /// Seconds in which a node's flap penalty halves: a node that failed twice within about
    /// this long is kept free of new Pods (ketch.dev/flapping:NoSchedule) for about twice it
    #[arg(long, default_value_t = LifecyclePolicy::default().flap_half_life.as_secs())]
    node_flap_half_life: u64,
}

impl Default for NodeFailureArgs {
    fn default() -> Self {
        let (l, h) = (LifecyclePolicy::default(), HeartbeatPolicy::default());
        Self {
            node_grace_period: l.grace.as_secs(),
            node_heartbeat_max_rate: h.max_rate,
            node_eviction_rate: l.eviction_rate,
            secondary_node_eviction_rate: l.secondary_eviction_rate,
            unhealthy_zone_threshold: l.unhealthy_zone_threshold,
            large_cluster_size_threshold: l.large_cluster_threshold,
            node_flap_half_life: l.flap_half_life.as_secs(),
        }
    }
}

impl NodeFailureArgs {
    fn lifecycle(&self) -> LifecyclePolicy {
        LifecyclePolicy {
            grace: Duration::from_secs(self.node_grace_period),
            eviction_rate: self.node_eviction_rate,
            secondary_eviction_rate: self.secondary_node_eviction_rate,
            unhealthy_zone_threshold: self.unhealthy_zone_threshold,
            large_cluster_threshold: self.large_cluster_size_threshold,
            flap_half_life: Duration::from_secs(self.node_flap_half_life.max(1)),
        }
    }

    fn heartbeat(&self) -> HeartbeatPolicy {
        HeartbeatPolicy {
            max_rate: self.node_heartbeat_max_rate,
            ..HeartbeatPolicy::default()
        }
    }
}

/// `--scheduler-scoring` (Kubernetes' NodeResourcesFit scoring strategies).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Scoring {
    MostAllocated,
    LeastAllocated,
}

fn default_data_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".ketch").join("data")
}

impl ServerArgs {
    /// A one-server cluster with every default of `ketch server` except these: what
    /// `ketch up` runs.
    pub fn single(
        data_dir: PathBuf,
        listen: SocketAddr,
        agent: NodeArgs,
        encryption_key_file: Option<PathBuf>,
    ) -> ServerArgs {
        ServerArgs {
            data_dir,
            listen,
            advertise: None,
            join: None,
            tls_sans: Vec::new(),
            no_agent: false,
            node_failure: NodeFailureArgs::default(),
            scheduler_scoring: Scoring::MostAllocated,
            percentage_of_nodes_to_score: 0,
            snapshot_count: DEFAULT_SNAPSHOT_COUNT,
            encryption_key_file,
            event_ttl: ketch_control::controllers::event_ttl::DEFAULT_EVENT_TTL,
            max_requests_inflight: inflight::DEFAULT_MAX_READS,
            max_mutating_requests_inflight: inflight::DEFAULT_MAX_WRITES,
            quota_backend_bytes: quota::DEFAULT_QUOTA_BYTES,
            agent,
        }
    }

    /// The scheduler's settings from `--scheduler-scoring` and
    /// `--percentage-of-nodes-to-score`.
    fn scheduler(&self) -> Profile {
        Profile {
            scoring: match self.scheduler_scoring {
                Scoring::MostAllocated => ScoringStrategy::MostAllocated,
                Scoring::LeastAllocated => ScoringStrategy::LeastAllocated,
            },
            nodes_to_score: NodesToScore::percentage(self.percentage_of_nodes_to_score),
        }
    }
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

impl AllInOne {
    /// Starts what `args` says; the agent's gateway listens on `default_gateway` when
    /// `--gateway` is not given, its TLS listener on `default_gateway_tls` when
    /// `--gateway-tls` is not.
    pub async fn start(
        conn: &Connection,
        args: ServerArgs,
        default_gateway: SocketAddr,
        default_gateway_tls: SocketAddr,
    ) -> anyhow::Result<AllInOne> {
        let scheduler = args.scheduler();
        let join = match args.join {
            Some(address) => Some(JoinOptions {
                address,
                token: conn.token.clone().ok_or_else(|| {
                    anyhow!(
                        "--join needs --token (or KETCH_TOKEN): a server join token (print one on a member with `ketch token create --join --server`)"
                    )
                })?,
            }),
            None => None,
        };
        let server = Server::start(ServerOptions {
            data_dir: args.data_dir.clone(),
            listen: args.listen,
            advertise: args.advertise,
            join,
            snapshot_count: args.snapshot_count,
            heartbeat: args.node_failure.heartbeat(),
            tls_sans: args.tls_sans.clone(),
            encryption_key_file: args.encryption_key_file,
            inflight: inflight::Limits {
                reads: args.max_requests_inflight as usize,
                writes: args.max_mutating_requests_inflight as usize,
            },
            quota_bytes: args.quota_backend_bytes,
        })
        .await?;
        // A wildcard listen address is reached on loopback from here (and is in the
        // certificate; 0.0.0.0 is not).
        let local = if server.addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), server.addr.port())
        } else {
            server.addr
        };
        let url = format!("https://{local}");
        let config_path = config_path(conn);
        // This server first, then every other member this server knows of.
        let mut servers = vec![url.clone()];
        let me = server.node_id;
        for m in server.store().members() {
            if m.id != me {
                servers.push(format!("https://{}", m.address));
            }
        }
        let config = ClientConfig {
            servers,
            token: server.token.clone(),
            certificate_authority: Some(server.ca_pem().to_string()),
            client_certificate: None,
            client_key: None,
        };
        config
            .save(&config_path)
            .context("writing the client config")?;
        // The same cluster and credential for the real kubectl, beside it.
        super::config::write_kubeconfig(&config, &super::config::kubeconfig_path(&config_path))
            .context("writing the kubeconfig")?;
        // The scheduler and controllers talk to the store only through the API, like any
        // client, and only on the leader; being in this process, they call its router
        // directly instead of connecting to it.
        let control = LeaderGated::start(
            Client::in_process(&url, &server.token, server.in_process())?.no_forward(),
            ControlOptions {
                lifecycle: args.node_failure.lifecycle(),
                liveness: Some(server.liveness()),
                scheduler,
                event_ttl: Some(args.event_ttl),
            },
            leader::leadership(server.store().clone()),
        );
        let agent = if args.no_agent {
            None
        } else {
            let mut cfg = args.agent.agent_config(
                url.clone(),
                server.token.clone(),
                args.data_dir.join("agent"),
                "127.0.0.1:0".parse().expect("valid address"),
                default_gateway,
                default_gateway_tls,
            )?;
            // This process's own agent calls the server's router directly; its endpoint and
            // gateway use a node certificate the server issues it here.
            cfg.in_process = Some(server.in_process());
            let issued = server
                .issue_node_certificate(&cfg.node_name, &super::agent::node_addresses(&cfg))
                .context("the node's certificate")?;
            cfg.tls = Some(ketch_agent::NodeTls {
                ca_pem: server.ca_pem().to_string(),
                cert_pem: issued.cert_pem,
                key_pem: issued.key_pem,
            });
            Some(Agent::start(cfg).await.context("starting the node agent")?)
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

pub async fn run(conn: &Connection, args: ServerArgs) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let data_dir = args.data_dir.clone();
    let key_file = args
        .encryption_key_file
        .clone()
        .unwrap_or_else(|| ketch_control::server::encryption::default_key_file(&data_dir));
    let all = AllInOne::start(
        conn,
        args,
        SocketAddr::from(([0, 0, 0, 0], 8080)),
        SocketAddr::from(([0, 0, 0, 0], 8443)),
    )
    .await?;
    println!(
        "ketch server {} (id {}) listening on {}",
        env!("CARGO_PKG_VERSION"),
        all.server.node_id,
        all.url
    );
    println!("  data dir:      {}", data_dir.display());
    println!(
        "  Secret keys:   {} (back it up apart from the data dir)",
        key_file.display()
    );
    println!(
        "  client config: {} (token in {}/admin.token)",
        all.config_path.display(),
        data_dir.display()
    );
    println!(
        "  kubeconfig:    {}",
        super::config::kubeconfig_path(&all.config_path).display()
    );
    println!("  add a node:    ketch token create --join    (prints the command to run there)");
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
            if let Some(addr) = a.gateway_tls_addr() {
                println!("  gateway TLS:   https://{addr} (Ingress spec.tls)");
            }
        }
        None => println!("  node agent:    none (--no-agent)"),
    }
    signals.wait().await;
    println!("shutting down");
    all.stop().await
}

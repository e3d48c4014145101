//! `ketch`: the single binary. Parses the command line and runs the verb (`cmd/`, one file
//! each); the work happens in `ketch-control` (server), `ketch-runtime` (node agent),
//! `ketch-client` (API calls) and `ketch-api`.

mod cmd;
mod manifest;
mod printer;

/// mimalloc instead of glibc malloc: see the workspace Cargo.toml and BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

use cmd::shared::Connection;

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

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a control-plane server (a one-server raft cluster, or a member of one with --join)
    Server(cmd::server::ServerArgs),
    /// Run an app for development: start a server + agent (state in --data-dir), build the app
    /// if DIR/ketch.toml says how, apply DIR's manifests, wait, print URLs, stream logs
    Up(cmd::up::UpArgs),
    /// Create a new app in ./NAME: a ketch-sdk component (Cargo.toml, src/lib.rs), its manifest
    /// (app.yaml: Deployment + Service) and ketch.toml; then `ketch up NAME` runs it
    New(cmd::new::NewArgs),
    /// Run a node agent that joins a server and runs the Pods bound to this node
    Agent(cmd::agent::AgentArgs),
    /// Print a container's logs
    Logs(cmd::logs::LogsArgs),
    /// Manage rollouts
    Rollout(cmd::rollout::RolloutArgs),
    /// Set the number of replicas of a Deployment or ReplicaSet
    Scale(cmd::scale::ScaleArgs),
    /// Create or update objects from manifest files, directories or stdin
    Apply(cmd::apply::ApplyArgs),
    /// List objects of a kind, or show one
    Get(cmd::get::GetArgs),
    /// Show an object's fields and its events
    Describe(cmd::describe::DescribeArgs),
    /// Delete objects named in manifests, or by kind and name
    Delete(cmd::delete::DeleteArgs),
    /// Mark a node unschedulable: no new Pods are placed there
    Cordon(cmd::cordon::CordonArgs),
    /// Mark a node schedulable again
    Uncordon(cmd::cordon::CordonArgs),
    /// Cordon a node and evict its Pods, honoring PodDisruptionBudgets; waits until they are gone
    Drain(cmd::drain::DrainArgs),
    /// Push a Wasm component to an OCI registry (CNCF Wasm artifact); prints REF@DIGEST
    Push(cmd::push::PushArgs),
    /// Show or change the servers of the control plane
    Cluster(cmd::cluster::ClusterArgs),
    /// Create tokens: join tokens for new nodes and servers, API tokens for users and
    /// ServiceAccounts
    Token(cmd::token::TokenArgs),
    /// Show the client config in other forms (a kubeconfig for kubectl)
    Config(cmd::config::ConfigArgs),
    /// Inspect authorization: can-i (may I do this?) and whoami
    Auth(cmd::auth::AuthArgs),
    /// Print client and server versions
    Version,
    /// Print a shell completion script
    Completion(cmd::completion::CompletionArgs),
}

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal as _;
    let cli = Cli::parse();
    // Every HTTP client of the process (reqwest, built without a provider of its own) uses
    // ring.
    ketch_tls::install_default_provider();
    // `ketch up` is interactive: its own output (progress, URLs, app logs) matters more than
    // the server's info lines.
    let default_filter = match cli.command {
        Command::Up(_) => "warn",
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
        Command::Server(args) => cmd::server::run(&conn, args).await,
        Command::Up(args) => cmd::up::run(&conn, args).await,
        Command::New(args) => cmd::new::run(args),
        Command::Agent(args) => cmd::agent::run(&conn, args).await,
        Command::Logs(args) => cmd::logs::run(&conn, args).await,
        Command::Rollout(args) => cmd::rollout::run(&conn, args).await,
        Command::Scale(args) => cmd::scale::run(&conn, args).await,
        Command::Apply(args) => cmd::apply::run(&conn, args).await,
        Command::Get(args) => cmd::get::run(&conn, args).await,
        Command::Describe(args) => cmd::describe::run(&conn, args).await,
        Command::Delete(args) => cmd::delete::run(&conn, args).await,
        Command::Cordon(args) => cmd::cordon::run(&conn, args, true).await,
        Command::Uncordon(args) => cmd::cordon::run(&conn, args, false).await,
        Command::Drain(args) => cmd::drain::run(&conn, args).await,
        Command::Push(args) => cmd::push::run(args).await,
        Command::Cluster(args) => cmd::cluster::run(&conn, args).await,
        Command::Token(args) => cmd::token::run(&conn, args).await,
        Command::Config(args) => cmd::config::run(&conn, args),
        Command::Auth(args) => cmd::auth::run(&conn, args).await,
        Command::Version => cmd::version::run(&conn).await,
        Command::Completion(args) => {
            cmd::completion::run(args, <Cli as clap::CommandFactory>::command());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    #[test]
    fn the_command_line_is_consistent() {
        // clap's own checks: unique argument and group ids, valid defaults, conflicts that
        // name existing arguments (otherwise found only when that verb is run).
        Cli::command().debug_assert();
    }
}

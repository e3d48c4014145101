//! `ketch token create`: tokens stored in the cluster (only a hash of their secret part).
//!
//! - `--join` (a node) or `--join-server` (a server): a short-lived bootstrap token that can
//!   only obtain that certificate; printed as the exact command to run on the new machine,
//!   as `kubeadm token create --print-join-command` and k3s do. The token pins the cluster
//!   CA by its SHA-256, so the new machine needs nothing else.
//! - `--user NAME [--group G]...` or `--service-account NS/NAME`: an API token for a user or
//!   ServiceAccount (RBAC decides what it may do).

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use ketch_api::resource::lookup;
use ketch_control::server::auth::{
    TOKEN_NAMESPACE, TOKEN_SECRET_TYPE, USAGE_AUTHENTICATION, USAGE_JOIN_NODE, USAGE_JOIN_SERVER,
    token_secret_name,
};
use serde_json::json;

use super::shared::{Connection, client, resolve};

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token and print it (a join token: the command to run on the new machine)
    Create(CreateArgs),
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// A join token for a node: it can only obtain that node's certificate
    #[arg(long, conflicts_with_all = ["join_server", "user", "service_account"])]
    join: bool,
    /// A join token for a server: it can only obtain a server certificate (and with it the
    /// cluster's keys)
    #[arg(long, conflicts_with_all = ["user", "service_account"])]
    join_server: bool,
    /// An API token for this user name
    #[arg(long, conflicts_with = "service_account")]
    user: Option<String>,
    /// The user's groups (repeat the flag)
    #[arg(long = "group", requires = "user")]
    groups: Vec<String>,
    /// An API token for this ServiceAccount (NAMESPACE/NAME)
    #[arg(long, value_name = "NAMESPACE/NAME")]
    service_account: Option<String>,
    /// How long the token is valid (e.g. 1h, 30m) [default: 24h for join tokens, no expiry
    /// for API tokens]
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<Duration>,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    ketch_api::format::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("invalid duration {s:?} (use e.g. 1h or 30m)"))
}

/// Join tokens live a day unless told otherwise (kubeadm's default).
const JOIN_TTL: Duration = Duration::from_secs(24 * 3600);

pub async fn run(conn: &Connection, args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create(a) => create(conn, a).await,
    }
}

async fn create(conn: &Connection, a: CreateArgs) -> anyhow::Result<()> {
    let (usage, user, groups, ttl) = if a.join || a.join_server {
        let usage = if a.join {
            USAGE_JOIN_NODE
        } else {
            USAGE_JOIN_SERVER
        };
        (usage, None, Vec::new(), Some(a.ttl.unwrap_or(JOIN_TTL)))
    } else if let Some(user) = a.user {
        if user.trim().is_empty() || user.starts_with("system:") {
            bail!("--user {user:?}: a name, not empty and not in the system: namespace");
        }
        (USAGE_AUTHENTICATION, Some(user), a.groups, a.ttl)
    } else if let Some(sa) = a.service_account {
        let (ns, name) = sa
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
            .ok_or_else(|| anyhow!("--service-account {sa:?}: expected NAMESPACE/NAME"))?;
        (
            USAGE_AUTHENTICATION,
            Some(format!("system:serviceaccount:{ns}:{name}")),
            vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ],
            a.ttl,
        )
    } else {
        bail!(
            "say what the token is for: --join, --join-server, --user NAME or --service-account NS/NAME"
        );
    };
    let resolved = resolve(conn)?;
    let ca = resolved
        .tls
        .as_ref()
        .map(|t| t.certificate_authority.clone())
        .ok_or_else(|| {
            anyhow!("the client config names no cluster CA: is this server older than TLS?")
        })?;
    let ca_hash = ketch_tls::sha256_hex(
        &ketch_tls::first_cert_der(&ca, "the cluster CA").map_err(|e| anyhow!("{e}"))?,
    );
    let token = ketch_tls::JoinToken::generate(&ca_hash);
    let client = client(conn).await?;
    // kube-system exists in clusters made by this ketch; an older one's may lack it.
    let ns_info = lookup("namespaces").expect("namespaces is a known kind");
    let ns =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TOKEN_NAMESPACE}});
    match client.create(ns_info, None, &ns).await {
        Ok(_) => {}
        Err(e) if e.code() == Some(409) => {}
        Err(e) => return Err(e).context("creating namespace kube-system"),
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut data = serde_json::Map::new();
    data.insert("token-id".into(), b64(&token.id).into());
    data.insert(
        "token-secret-sha256".into(),
        b64(&ketch_tls::sha256_hex(token.secret.as_bytes())).into(),
    );
    data.insert("usage".into(), b64(usage).into());
    if let Some(u) = &user {
        data.insert("user".into(), b64(u).into());
    }
    if !groups.is_empty() {
        data.insert("groups".into(), b64(&groups.join(",")).into());
    }
    if let Some(ttl) = ttl {
        let exp =
            chrono::Utc::now() + chrono::Duration::from_std(ttl).context("--ttl is too long")?;
        data.insert(
            "expiration".into(),
            b64(&exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).into(),
        );
    }
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": token_secret_name(&token.id), "namespace": TOKEN_NAMESPACE},
        "type": TOKEN_SECRET_TYPE,
        "data": data,
    });
    let secrets = lookup("secrets").expect("secrets is a known kind");
    client
        .create(secrets, Some(TOKEN_NAMESPACE), &secret)
        .await
        .context("storing the token")?;
    let server = resolved.servers.first().cloned().unwrap_or_default();
    let host = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(&server);
    match usage {
        USAGE_JOIN_NODE => println!("ketch agent --server {server} --token {token}"),
        USAGE_JOIN_SERVER => println!("ketch server --join {host} --token {token}"),
        _ => println!("{}", token.bearer()),
    }
    Ok(())
}

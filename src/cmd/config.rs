//! `ketch config kubeconfig`: the client config as a kubeconfig for the real kubectl (and
//! anything built on client-go). `ketch server` and `ketch up` also write it beside the
//! client config. Generated from our own types, field names as client-go reads them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use clap::{Args, Subcommand};
use ketch_client::ClientConfig;
use serde::Serialize;

use super::shared::{Connection, config_path};

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the client config as a kubeconfig (use: ketch config kubeconfig > ~/.kube/config)
    Kubeconfig,
}

#[derive(Serialize)]
struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<Named<Cluster>>,
    users: Vec<Named<User>>,
    contexts: Vec<Named<Context>>,
    #[serde(rename = "current-context")]
    current_context: &'static str,
}

#[derive(Serialize)]
struct Named<T> {
    name: &'static str,
    #[serde(flatten)]
    item: T,
}

#[derive(Serialize)]
struct Cluster {
    cluster: ClusterFields,
}

#[derive(Serialize)]
struct ClusterFields {
    server: String,
    #[serde(
        rename = "certificate-authority-data",
        skip_serializing_if = "Option::is_none"
    )]
    certificate_authority_data: Option<String>,
}

#[derive(Serialize)]
struct User {
    user: UserFields,
}

#[derive(Serialize)]
struct UserFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(
        rename = "client-certificate-data",
        skip_serializing_if = "Option::is_none"
    )]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key-data", skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
}

#[derive(Serialize)]
struct Context {
    context: ContextFields,
}

#[derive(Serialize)]
struct ContextFields {
    cluster: &'static str,
    user: &'static str,
}

/// The kubeconfig for `config` (its first server; kubectl takes one).
pub fn kubeconfig(config: &ClientConfig) -> anyhow::Result<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let server = config
        .servers
        .first()
        .context("the client config lists no server")?
        .clone();
    let doc = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name: "ketch",
            item: Cluster {
                cluster: ClusterFields {
                    server,
                    certificate_authority_data: config.certificate_authority.as_deref().map(b64),
                },
            },
        }],
        users: vec![Named {
            name: "ketch",
            item: User {
                user: UserFields {
                    token: (!config.token.is_empty()).then(|| config.token.clone()),
                    client_certificate_data: config.client_certificate.as_deref().map(b64),
                    client_key_data: config.client_key.as_deref().map(b64),
                },
            },
        }],
        contexts: vec![Named {
            name: "ketch",
            item: Context {
                context: ContextFields {
                    cluster: "ketch",
                    user: "ketch",
                },
            },
        }],
        current_context: "ketch",
    };
    Ok(serde_yaml::to_string(&doc)?)
}

/// `kubeconfig` beside the client config at `config_path`.
pub fn kubeconfig_path(config_path: &Path) -> PathBuf {
    config_path.with_file_name("kubeconfig")
}

/// Write the kubeconfig for `config` to `path` (mode 0600: it holds the credential).
pub fn write_kubeconfig(config: &ClientConfig, path: &Path) -> anyhow::Result<()> {
    ketch_control::server::auth::write_private(path, kubeconfig(config)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn run(conn: &Connection, args: ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Kubeconfig => {
            let path = config_path(conn);
            let config = ClientConfig::load(&path)?;
            print!("{}", kubeconfig(&config)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_carries_the_ca_and_the_credential() {
        let config = ClientConfig {
            servers: vec![
                "https://127.0.0.1:6443".into(),
                "https://10.0.0.2:6443".into(),
            ],
            token: "t0k".into(),
            certificate_authority: Some("-----BEGIN CERTIFICATE-----\nAA\n".into()),
            client_certificate: None,
            client_key: None,
        };
        let doc: serde_yaml::Value = serde_yaml::from_str(&kubeconfig(&config).unwrap()).unwrap();
        assert_eq!(doc["current-context"], "ketch");
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        let ca = doc["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca)
            .unwrap();
        assert!(
            String::from_utf8(ca)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(doc["users"][0]["user"]["token"], "t0k");
        assert!(doc["users"][0]["user"].get("client-key-data").is_none());
        assert_eq!(doc["contexts"][0]["context"]["user"], "ketch");
    }
}

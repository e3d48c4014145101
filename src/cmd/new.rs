//! `ketch new NAME`: scaffolds an app directory that `ketch up NAME` builds and deploys.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The app's name (Deployment, Service and Cargo package): a DNS label, e.g. my-app
    name: String,
    /// The ketch-sdk sources to depend on [default: the sdk/ this ketch was built from]
    #[arg(long)]
    sdk_path: Option<PathBuf>,
}

/// The ketch-sdk sources this binary was built with (used when `--sdk-path` is not given).
const BUILT_WITH_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk");

/// Checks `name` is usable as a Cargo package and a Kubernetes object name (a DNS label).
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "app name {name:?} is invalid: use 1-63 of [a-z0-9-], starting with a letter and not \
             ending with '-' (it names the Deployment, the Service and the Cargo package)"
        );
    }
    Ok(())
}

/// The files of a new app named `name` depending on the SDK at `sdk` (relative path, file text).
fn scaffold(name: &str, sdk: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    check_name(name)?;
    let artifact = name.replace('-', "_");
    let sdk = sdk.display().to_string();
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
# ketch-sdk is not on crates.io yet: a path to its sources (a ketch checkout's sdk/).
ketch-sdk = {{ path = {sdk:?} }}

[profile.release]
opt-level = "s"
debug = false
strip = "debuginfo"

# Its own workspace: the app targets wasm32-wasip2, not the host.
[workspace]
"#
    );
    let lib = r#"//! A ketch app: a wasi:http component built with ketch-sdk.

use ketch_sdk::{Request, Response, Router, config};

#[ketch_sdk::handler]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/", |_req: Request| {
            let greeting = config::get_or("GREETING", "Hello from ketch");
            Response::text(format!("{greeting}!\n"))
        })
        .get("/hello/:name", |req: Request| {
            format!("Hello, {}!\n", req.param("name").unwrap_or("stranger"))
        })
        .handle(req)
}
"#
    .to_string();
    let manifest = format!(
        r#"# {name}: a Deployment of the app's Wasm component and a Service in front of it.
# `ketch up` builds the component (ketch.toml) and applies this file; file: paths are relative
# to it.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: {name}
        image: file:./target/wasm32-wasip2/release/{artifact}.wasm
        resources:
          limits:
            memory: 64Mi
        env:
        - name: GREETING
          value: "Hello from {name}"
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector:
    app: {name}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"#
    );
    let ketch_toml = r#"# How `ketch up` builds this app when its component is missing (or with `ketch up --build`).
# `--target-dir target` keeps the output where app.yaml points even when CARGO_TARGET_DIR
# is set in the environment.
[build]
command = "cargo build --release --target wasm32-wasip2 --target-dir target"
"#
    .to_string();
    Ok(vec![
        ("Cargo.toml", cargo),
        ("src/lib.rs", lib),
        ("app.yaml", manifest),
        ("ketch.toml", ketch_toml),
        (".gitignore", "/target\n/.ketch\n".to_string()),
    ])
}

/// Writes the new app into `./NAME` and says what to do next.
pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let NewArgs { name, sdk_path } = args;
    let name = name.as_str();
    let sdk = match sdk_path {
        Some(p) => p,
        None => PathBuf::from(BUILT_WITH_SDK),
    };
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "no ketch-sdk sources at {}: pass --sdk-path with the sdk/ directory of a ketch \
             checkout (ketch-sdk is not published to crates.io yet)",
            sdk.display()
        );
    }
    let sdk =
        std::fs::canonicalize(&sdk).with_context(|| format!("resolving {}", sdk.display()))?;
    let files = scaffold(name, &sdk)?;
    let dir = Path::new(name);
    if dir.exists() {
        bail!(
            "{} already exists: choose another name or remove it",
            dir.display()
        );
    }
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created app {name} in ./{name} (ketch-sdk from {})",
        sdk.display()
    );
    println!(
        "next: ketch up {name}    # builds it (cargo, wasm32-wasip2), deploys it, prints its URL"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_labels() {
        for ok in ["a", "my-app", "app2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "My", "2app", "app-", "a_b", "a.b", &"a".repeat(64)] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("is invalid"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_scaffold_names_the_app_everywhere_and_points_at_its_component() {
        let files = scaffold("my-app", Path::new("/src/ketch/sdk")).unwrap();
        let get = |name: &str| &files.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(get("Cargo.toml").contains("name = \"my-app\""));
        assert!(get("Cargo.toml").contains(r#"ketch-sdk = { path = "/src/ketch/sdk" }"#));
        let manifest = get("app.yaml");
        assert!(manifest.contains("image: file:./target/wasm32-wasip2/release/my_app.wasm"));
        assert_eq!(manifest.matches("app: my-app").count(), 4, "{manifest}");
        assert!(get("ketch.toml").contains("--target wasm32-wasip2 --target-dir target"));
        assert!(get("src/lib.rs").contains("#[ketch_sdk::handler]"));
    }
}

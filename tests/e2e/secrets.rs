//! Secrets at rest: what lands in the data dir is ciphertext, key rotation keeps every
//! Secret readable, and the data dir and its files are private.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::support::{Server, eventually, free_port};

const FLAGS: &[&str] = &["--no-agent", "--snapshot-count", "10"];

fn secret(name: &str, password: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels:\n    marker: e2e-label-marker\n\
         type: Opaque\nstringData:\n  password: {password}\ndata:\n  token: {}\n",
        B64.encode(token)
    )
}

fn apply(s: &Server, manifest: &str) {
    let out = s.ketch_stdin(&["apply", "-f", "-"], Some(manifest));
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn data_of(s: &Server, name: &str) -> Value {
    let yaml = s.ok(&["get", "secret", name, "-o", "yaml"]);
    let obj: Value = serde_yaml::from_str(&yaml).unwrap();
    obj["data"].clone()
}

#[test]
fn secret_values_reach_no_file_of_the_data_dir_and_still_read_back() {
    const PASSWORD: &str = "e2e-password-5be1c0ffee";
    const TOKEN: &str = "e2e-token-0badf00d1234";
    let s = Server::start_with(FLAGS);
    apply(&s, &secret("db", PASSWORD, TOKEN));
    // Enough raft entries after it for snapshots that hold it (--snapshot-count 10); they
    // purge the log behind them.
    let many: String = (0..30)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  k: v\n"
            )
        })
        .collect();
    apply(&s, &many);
    let snapshots = s.data_dir().join("snapshots");
    eventually(30, "a snapshot file", || {
        files_under(&snapshots)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "snap"))
    });
    // An update (through the API server's read–merge–write) that the log still holds.
    apply(
        &s,
        &secret("db", PASSWORD, TOKEN).replace("e2e-label-marker", "e2e-label-marker-2"),
    );
    let want = json!({"password": B64.encode(PASSWORD), "token": B64.encode(TOKEN)});
    assert_eq!(data_of(&s, "db"), want);
    let described = s.ok(&["describe", "secret", "db"]);
    assert!(described.contains("password:  23 bytes"), "{described}");
    assert!(described.contains("token:     22 bytes"), "{described}");
    let yaml = s.ok(&["get", "secret", "db", "-o", "yaml"]);
    let record: Value = serde_yaml::from_str::<Value>(&yaml).unwrap()["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .map(|r| serde_json::from_str(r).unwrap())
        .expect("apply records what it applied");
    assert_eq!(record["data"], json!({"password": "", "token": ""}));

    let (dir, port) = s.stop();
    let data = dir.path().join("data");
    let needles = [
        PASSWORD.to_string(),
        TOKEN.to_string(),
        B64.encode(PASSWORD),
        B64.encode(TOKEN),
    ];
    let files = files_under(&data);
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for needle in &needles {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{} holds a Secret value in clear",
                file.display()
            );
        }
    }
    // The search can find things: the Secret's label is in clear in each of them (the
    // second version's in the log, the first one's in the snapshot).
    let snapshot = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .expect("a snapshot");
    for file in [&data.join("raft.redb"), &data.join("log.redb"), snapshot] {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            contains(&bytes, b"e2e-label-marker"),
            "{} should hold the label",
            file.display()
        );
    }
    let log = std::fs::read(dir.path().join("server.log")).unwrap();
    for needle in &needles {
        assert!(
            !contains(&log, needle.as_bytes()),
            "the server log holds a value"
        );
    }

    let s = Server::start_full(dir, port, FLAGS);
    assert_eq!(data_of(&s, "db"), want, "read back after a restart");
}

#[test]
fn rotating_the_encryption_key_keeps_every_secret_readable() {
    let s = Server::start_with(&["--no-agent"]);
    apply(&s, &secret("before", "old-key-value", "t1"));
    let key_file = s.dir.path().join("data.encryption-key");
    assert_eq!(mode(&key_file), 0o600);
    let original: Value = serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap();
    let old_key = original["keys"][0].clone();
    let write_keys = |keys: Value| {
        std::fs::write(
            &key_file,
            serde_json::to_vec(&json!({"keys": keys})).unwrap(),
        )
        .unwrap();
    };
    let new_key = json!({"name": "new", "secret": B64.encode(rand::random::<[u8; 32]>())});

    // 1. The new key first, the old one still listed: the leader rewrites at start.
    let (dir, port) = s.stop();
    write_keys(json!([new_key, old_key]));
    let s = Server::start_full(dir, port, &["--no-agent"]);
    assert_eq!(
        data_of(&s, "before")["password"],
        json!(B64.encode("old-key-value"))
    );
    eventually(20, "the rewrite under the new key", || {
        s.log()
            .lines()
            .any(|l| l.contains("Secrets re-encrypted") && l.contains("rewritten=1"))
            .then_some(())
    });
    apply(&s, &secret("after", "new-key-value", "t2"));

    // 2. The old key removed: everything reads.
    let (dir, port) = s.stop();
    write_keys(json!([new_key]));
    let s = Server::start_full(dir, port, &["--no-agent"]);
    assert_eq!(
        data_of(&s, "before")["password"],
        json!(B64.encode("old-key-value"))
    );
    assert_eq!(
        data_of(&s, "after")["password"],
        json!(B64.encode("new-key-value"))
    );

    // A key file without the key a Secret was sealed with: the read fails naming the key,
    // and the server goes on serving everything else.
    let (dir, port) = s.stop();
    let other = json!({"name": "unrelated", "secret": B64.encode(rand::random::<[u8; 32]>())});
    write_keys(json!([other]));
    let s = Server::start_full(dir, port, &["--no-agent"]);
    let err = s.fails(&["get", "secret", "before"]);
    assert!(err.contains("\"new\""), "{err}");
    assert!(!err.contains("old-key-value"), "{err}");
    s.ok(&["get", "namespaces"]);
}

#[test]
fn a_data_dir_open_to_others_is_refused_with_the_chmod_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // What a ketch before 2026-12-07 left behind.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = crate::support::ketch_cmd()
        .args(["server", "--no-agent", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(&data)
        .env("KETCH_CONFIG", dir.path().join("config"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("run `chmod 700 {}`", data.display())),
        "{err}"
    );

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let s = Server::start_full(dir, free_port(), &["--no-agent"]);
    apply(&s, &secret("db", "p", "t"));
    let data = s.data_dir();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("snapshots")), 0o700);
    for file in ["raft.redb", "log.redb", "admin.token", "server.json"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&s.dir.path().join("data.encryption-key")), 0o600);
}

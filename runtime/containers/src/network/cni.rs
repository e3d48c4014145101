//! Speaking to CNI plugins: running one with its config on stdin under a deadline, reading
//! its ADD result (the Pod's address and gateway) and the error it reports when it fails.

use std::io;
use std::net::IpAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// A plugin's error text is cut to this many bytes in our messages.
const MAX_ERROR_TEXT: usize = 2048;

/// `ips[0]` of a CNI 1.0 ADD result: the address (without its prefix length) and gateway.
pub(super) fn parse_add_result(
    result: &Value,
    default_gateway: IpAddr,
) -> Result<(IpAddr, IpAddr), String> {
    let first = result
        .get("ips")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .ok_or("no ips in the result")?;
    let address = first
        .get("address")
        .and_then(Value::as_str)
        .ok_or("ips[0].address missing")?;
    let ip = address
        .split_once('/')
        .map_or(address, |(ip, _)| ip)
        .parse()
        .map_err(|e| format!("ips[0].address {address:?}: {e}"))?;
    let gateway = match first.get("gateway").and_then(Value::as_str) {
        Some(gw) => gw
            .parse()
            .map_err(|e| format!("ips[0].gateway {gw:?}: {e}"))?,
        None => default_gateway,
    };
    Ok((ip, gateway))
}

/// The CNI error a failed plugin printed (`{"code", "msg", "details"}` on stdout), or else
/// whatever it printed.
pub(super) fn plugin_error(out: &RunOutput) -> (Option<u64>, String) {
    #[derive(Deserialize)]
    struct CniError {
        code: Option<u64>,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    if let Ok(e) = serde_json::from_slice::<CniError>(&out.stdout)
        && !(e.msg.is_empty() && e.details.is_empty())
    {
        let msg = match (e.msg.is_empty(), e.details.is_empty()) {
            (false, false) => format!("{}; {}", e.msg, e.details),
            (true, _) => e.details,
            (_, true) => e.msg,
        };
        return (e.code, clip(&msg));
    }
    let text = [&out.stdout, &out.stderr]
        .iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        (None, out.status.to_string())
    } else {
        (None, clip(&text))
    }
}

pub(super) fn clip(s: &str) -> String {
    if s.len() <= MAX_ERROR_TEXT {
        return s.to_string();
    }
    let mut end = MAX_ERROR_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What a finished plugin printed.
pub(super) struct RunOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a plugin gave no output.
pub(super) enum RunError {
    Io(io::Error),
    Timeout,
}

/// Runs `cmd` with `input` on stdin and collects its output; after `limit` the child is
/// killed (`kill_on_drop`: the timed-out future drops it) and reaped by tokio.
pub(super) async fn run_with_timeout(
    mut cmd: Command,
    input: Vec<u8>,
    limit: Duration,
) -> Result<RunOutput, RunError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(RunError::Io)?;
    let stdin = child.stdin.take();
    let run = async move {
        if let Some(mut w) = stdin {
            // A plugin reads its whole (small) config before writing anything, so writing
            // first cannot stall on a full stdout pipe. One that exits without reading
            // everything closes the pipe: not our error.
            match w.write_all(&input).await {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
                _ => {}
            }
        }
        child.wait_with_output().await
    };
    match tokio::time::timeout(limit, run).await {
        Ok(out) => out.map(RunOutput::from).map_err(RunError::Io),
        Err(_) => Err(RunError::Timeout),
    }
}

impl From<std::process::Output> for RunOutput {
    fn from(o: std::process::Output) -> Self {
        RunOutput {
            status: o.status,
            stdout: o.stdout,
            stderr: o.stderr,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::NetworkError;
    use super::*;

    #[test]
    fn the_add_result_gives_the_address_without_its_prefix_and_the_gateway() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "ketch0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/x"}],
            "ips": [{"interface": 2, "address": "10.89.0.5/24", "gateway": "10.89.0.1"}],
        });
        let gw: IpAddr = "10.89.0.254".parse().unwrap();
        assert_eq!(
            parse_add_result(&result, gw).unwrap(),
            ("10.89.0.5".parse().unwrap(), "10.89.0.1".parse().unwrap())
        );
        let no_gw = json!({"ips": [{"address": "10.89.0.5/24"}]});
        assert_eq!(parse_add_result(&no_gw, gw).unwrap().1, gw);
        assert!(parse_add_result(&json!({"ips": []}), gw).is_err());
        assert!(parse_add_result(&json!({"ips": [{"address": "x/24"}]}), gw).is_err());
    }

    fn failed(stdout: &str, stderr: &str) -> RunOutput {
        use std::os::unix::process::ExitStatusExt;
        RunOutput {
            status: ExitStatus::from_raw(1 << 8),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn a_plugin_error_surfaces_the_cni_msg_and_code() {
        let (code, msg) = plugin_error(&failed(
            r#"{"code": 7, "msg": "failed to parse", "details": "bad json"}"#,
            "",
        ));
        assert_eq!((code, msg.as_str()), (Some(7), "failed to parse; bad json"));
        let (code, msg) = plugin_error(&failed("", "panic: boom\n"));
        assert_eq!((code, msg.as_str()), (None, "panic: boom"));
        let (_, msg) = plugin_error(&failed("", ""));
        assert!(msg.contains("exit status: 1"), "{msg}");

        let e = NetworkError::Plugin {
            pod: "default/web (u1)".into(),
            plugin: "bridge".into(),
            command: "ADD",
            code: Some(7),
            msg: "failed to parse".into(),
        };
        assert_eq!(
            e.to_string(),
            "pod default/web (u1): CNI ADD with plugin bridge failed (code 7): failed to parse"
        );
    }

    #[tokio::test]
    async fn a_command_gets_its_input_and_a_hung_one_is_killed() {
        let out = run_with_timeout(
            Command::new("cat"),
            b"conf".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|_| panic!("cat failed"));
        assert!(out.status.success());
        assert_eq!(out.stdout, b"conf");

        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let started = std::time::Instant::now();
        let r = run_with_timeout(sleep, Vec::new(), Duration::from_millis(200)).await;
        assert!(matches!(r, Err(RunError::Timeout)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

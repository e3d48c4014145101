//! `ketch drain NODE`: cordon the node, then evict its Pods through the `eviction`
//! subresource (so PodDisruptionBudgets hold), retrying the ones a budget refuses, and wait
//! until they are gone, as `kubectl drain`. Which Pods go is [`choose`], a pure function.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use ketch_api::core::Pod;
use ketch_api::params::ListParams;
use ketch_client::Client;
use ketch_control::controllers::controller_ref;

use super::cordon::{message, set_unschedulable};
use super::shared::{Connection, client};

/// How long to wait before asking again when a budget refused an eviction (kubectl: 5 s).
const RETRY_REFUSED: Duration = Duration::from_secs(5);
/// How often to look whether the evicted Pods are gone.
const POLL: Duration = Duration::from_millis(500);
/// The annotation of a mirror Pod (a static Pod's API shadow), which cannot be evicted.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

#[derive(Args, Debug)]
pub struct DrainArgs {
    /// The node's name
    node: String,
    /// Also evict Pods that no controller manages (they are not re-created elsewhere)
    #[arg(long)]
    force: bool,
    /// Give up after this long, e.g. 5m; 0s waits as long as it takes (kubectl's default)
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    // `format::parse_duration` refuses zero, which here means "no limit".
    if matches!(s.trim(), "0" | "0s" | "0m" | "0h" | "0ms") {
        return Ok(Duration::ZERO);
    }
    ketch_api::format::parse_duration(s)
        .ok_or_else(|| format!("invalid duration {s:?} (use e.g. 90s or 5m)"))
}

/// The Pods of a node a drain evicts, and the ones it leaves.
#[derive(Debug, Default, PartialEq)]
pub struct Choice<'a> {
    pub evict: Vec<&'a Pod>,
    /// Already being deleted: waited for, not evicted again.
    pub wait: Vec<&'a Pod>,
    /// Left on the node, with why (mirror and DaemonSet Pods, as kubectl).
    pub skipped: Vec<(&'a Pod, &'static str)>,
    /// Pods without a controller, refused without `--force`.
    pub unmanaged: Vec<&'a Pod>,
}

/// Sorts the node's Pods as kubectl drain does: mirror Pods and DaemonSet Pods stay; Pods
/// without a controller are evicted only with `force`; the rest are evicted.
pub fn choose(pods: &[Pod], force: bool) -> Choice<'_> {
    let mut c = Choice::default();
    for pod in pods {
        if pod.metadata.annotations.contains_key(MIRROR_ANNOTATION) {
            c.skipped.push((pod, "a mirror pod"));
            continue;
        }
        match controller_ref(&pod.metadata).map(|r| r.kind.as_str()) {
            Some("DaemonSet") => {
                c.skipped.push((pod, "managed by a DaemonSet"));
                continue;
            }
            None if !force => {
                c.unmanaged.push(pod);
                continue;
            }
            _ => {}
        }
        if pod.metadata.deletion_timestamp.is_some() {
            c.wait.push(pod);
        } else {
            c.evict.push(pod);
        }
    }
    c
}

fn ns_name(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace(), pod.metadata.name())
}

pub async fn run(conn: &Connection, args: DrainArgs) -> anyhow::Result<()> {
    let DrainArgs {
        node,
        force,
        timeout,
    } = args;
    let client = client(conn).await?;
    let changed = set_unschedulable(&client, &node, true).await?;
    println!("{}", message(&node, true, changed));
    let pods = client
        .api::<Pod>(None)
        .list(&ListParams {
            field_selector: Some(format!("spec.nodeName={node}")),
            ..Default::default()
        })
        .await?
        .items;
    let choice = choose(&pods, force);
    if !choice.unmanaged.is_empty() {
        let names: Vec<String> = choice.unmanaged.iter().map(|p| ns_name(p)).collect();
        bail!(
            "cannot evict Pods that declare no controller (use --force to override): {}",
            names.join(", ")
        );
    }
    for (pod, why) in &choice.skipped {
        println!("ignoring pod {}: {why}", ns_name(pod));
    }
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    // Pods to evict, with when to try next; then Pods evicted (or going) to wait for.
    let mut to_evict: BTreeMap<String, (&Pod, Instant)> = choice
        .evict
        .iter()
        .map(|p| (ns_name(p), (*p, Instant::now())))
        .collect();
    let mut going: BTreeMap<String, &Pod> = choice.wait.iter().map(|p| (ns_name(p), *p)).collect();
    loop {
        let now = Instant::now();
        let due: Vec<String> = to_evict
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let (pod, _) = to_evict[&key];
            println!("evicting pod {key}");
            match evict(&client, pod).await? {
                Evicted::Yes => {
                    to_evict.remove(&key);
                    going.insert(key, pod);
                }
                Evicted::Refused(why) => {
                    println!(
                        "error when evicting pods/{:?} -n {:?} (will retry after {}s): {why}",
                        pod.metadata.name(),
                        pod.metadata.namespace(),
                        RETRY_REFUSED.as_secs()
                    );
                    if let Some(entry) = to_evict.get_mut(&key) {
                        entry.1 = Instant::now() + RETRY_REFUSED;
                    }
                }
            }
        }
        let mut gone = Vec::new();
        for (key, pod) in &going {
            if is_gone(&client, pod).await? {
                gone.push(key.clone());
            }
        }
        for key in gone {
            going.remove(&key);
            let name = key.split_once('/').map_or(key.as_str(), |(_, n)| n);
            println!("pod/{name} evicted");
        }
        if to_evict.is_empty() && going.is_empty() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let left: Vec<&String> = to_evict.keys().chain(going.keys()).collect();
            bail!(
                "drain did not complete within {}: pods still on node {node}: {}",
                ketch_api::format::duration(timeout),
                left.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
    println!("node/{node} drained");
    Ok(())
}

enum Evicted {
    Yes,
    /// Not now (a budget refused, 429): why.
    Refused(String),
}

async fn evict(client: &Client, pod: &Pod) -> anyhow::Result<Evicted> {
    match client
        .evict_pod(
            pod.metadata.namespace(),
            pod.metadata.name(),
            pod.metadata.uid.as_deref(),
        )
        .await
    {
        Ok(_) => Ok(Evicted::Yes),
        // Gone already: nothing left to evict.
        Err(e) if e.code() == Some(404) => Ok(Evicted::Yes),
        // Another Pod has the name now (the uid precondition), or the eviction lost the
        // race for its budget too often: look which, and ask again if the Pod is still
        // there.
        Err(e) if e.code() == Some(409) => Ok(if is_gone(client, pod).await? {
            Evicted::Yes
        } else {
            Evicted::Refused(e.to_string())
        }),
        Err(e) if e.code() == Some(429) => Ok(Evicted::Refused(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Whether the Pod is gone: not found, or its name now belongs to another Pod.
async fn is_gone(client: &Client, pod: &Pod) -> anyhow::Result<bool> {
    match client
        .api::<Pod>(Some(pod.metadata.namespace()))
        .get(pod.metadata.name())
        .await
    {
        Ok(p) => Ok(p.metadata.uid != pod.metadata.uid),
        Err(e) if e.code() == Some(404) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ketch_api::meta::{ObjectMeta, OwnerReference};

    fn pod(name: &str, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                owner_references: owner
                    .map(|kind| OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: kind.into(),
                        name: "o".into(),
                        uid: "u".into(),
                        controller: Some(true),
                        block_owner_deletion: None,
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_drain_evicts_managed_pods_skips_mirror_and_daemon_pods_and_refuses_bare_ones() {
        let mut mirror = pod("static", None);
        mirror
            .metadata
            .annotations
            .insert(MIRROR_ANNOTATION.into(), "x".into());
        let mut going = pod("old", Some("ReplicaSet"));
        going.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        let pods = vec![
            pod("web-1", Some("ReplicaSet")),
            pod("bare", None),
            pod("agent", Some("DaemonSet")),
            mirror,
            going,
        ];
        let c = choose(&pods, false);
        let names = |ps: &[&Pod]| {
            ps.iter()
                .map(|p| p.metadata.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&c.evict), ["web-1"]);
        assert_eq!(names(&c.unmanaged), ["bare"]);
        assert_eq!(names(&c.wait), ["old"]);
        assert_eq!(
            c.skipped
                .iter()
                .map(|(p, _)| p.metadata.name())
                .collect::<Vec<_>>(),
            ["agent", "static"]
        );
        // --force takes the bare Pod too.
        let c = choose(&pods, true);
        assert_eq!(names(&c.evict), ["web-1", "bare"]);
        assert!(c.unmanaged.is_empty());
    }

    #[test]
    fn the_timeout_takes_durations_and_zero_means_no_limit() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
    }
}

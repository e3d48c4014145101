//! A Pod's place on the node's Pod network, as the agent hands it to a runtime: made by the
//! Linux-container runtime's network (`ketch-containers`), read by its OCI spec and by the
//! agent (`status.podIP`, probes, the Service proxy's callers).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A Pod's place on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The netns file, for the OCI spec's network namespace path.
    pub netns: PathBuf,
    /// The Pod's address (`eth0`).
    pub ip: IpAddr,
    /// The bridge's address: the node as the Pod sees it.
    pub gateway: IpAddr,
    /// The Pod subnet (`10.89.0.0/24`).
    pub subnet: String,
    /// The node's Service proxy as the Pod reaches it (bridge address, proxy port).
    pub proxy: SocketAddr,
}

impl Attachment {
    /// `env` plus the variables that send a container's HTTP clients to the node's Service
    /// proxy: `HTTP_PROXY`/`http_proxy` = `http://<bridge address>:<proxy port>` and
    /// `NO_PROXY`/`no_proxy` = `localhost,127.0.0.1,<pod subnet>` (Pod addresses are reached
    /// directly). Tools read either spelling, so a Pod that sets one spelling of a pair keeps
    /// the pair to itself: nothing of it is added.
    pub fn with_proxy_env(&self, env: &[(String, String)]) -> Vec<(String, String)> {
        let proxy = format!("http://{}", self.proxy);
        let no_proxy = format!("localhost,127.0.0.1,{}", self.subnet);
        let mut out = env.to_vec();
        for (upper, lower, value) in [
            ("HTTP_PROXY", "http_proxy", proxy),
            ("NO_PROXY", "no_proxy", no_proxy),
        ] {
            if !env.iter().any(|(k, _)| k == upper || k == lower) {
                out.push((upper.to_string(), value.clone()));
                out.push((lower.to_string(), value));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        Attachment {
            netns: PathBuf::from("/run/ketch/netns/ketch0/u1"),
            ip: "10.89.0.7".parse().unwrap(),
            gateway: "10.89.0.1".parse().unwrap(),
            subnet: "10.89.0.0/24".into(),
            proxy: "10.89.0.1:15080".parse().unwrap(),
        }
    }

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn containers_get_the_service_proxy_unless_the_pod_sets_it() {
        let att = attachment();
        assert_eq!(
            att.with_proxy_env(&pairs(&[("A", "1")])),
            pairs(&[
                ("A", "1"),
                ("HTTP_PROXY", "http://10.89.0.1:15080"),
                ("http_proxy", "http://10.89.0.1:15080"),
                ("NO_PROXY", "localhost,127.0.0.1,10.89.0.0/24"),
                ("no_proxy", "localhost,127.0.0.1,10.89.0.0/24"),
            ])
        );
        // Either spelling set by the Pod keeps the whole pair the Pod's.
        assert_eq!(
            att.with_proxy_env(&pairs(&[("http_proxy", ""), ("NO_PROXY", "x")])),
            pairs(&[("http_proxy", ""), ("NO_PROXY", "x")])
        );
        assert_eq!(
            att.with_proxy_env(&pairs(&[("HTTP_PROXY", "http://mine:3128")])),
            pairs(&[
                ("HTTP_PROXY", "http://mine:3128"),
                ("NO_PROXY", "localhost,127.0.0.1,10.89.0.0/24"),
                ("no_proxy", "localhost,127.0.0.1,10.89.0.0/24"),
            ])
        );
    }
}

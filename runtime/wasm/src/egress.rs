//! Which addresses guests' outbound connections may reach. The allow-list
//! (`allowed_outbound_hosts`) decides by name; this decides by the address the name resolves
//! to, at connect time, so a name that resolves (or is re-pointed by DNS rebinding) to the
//! node itself, its loopback services (the all-in-one API server and raft), link-local cloud
//! metadata or a multicast group is refused, and the connection goes to exactly the address
//! that was checked.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use ketch_api::discovery::special_address;

/// The node operator's exceptions to the refused ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Networks guests may reach although they are refused by default (e.g. `127.0.0.0/8`
    /// on a developer's machine, or a metadata address an app truly needs).
    pub allowed: Vec<IpNet>,
}

impl EgressPolicy {
    /// Whether a guest may connect to `ip`: not loopback, link-local, unspecified,
    /// multicast, broadcast or one of this node's own addresses, unless an operator's
    /// [`EgressPolicy::allowed`] network holds it.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        special_address(ip).is_none() && !is_own_address(ip)
    }

    /// The first of `addrs` a guest may connect to.
    pub(crate) fn choose(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> Option<SocketAddr> {
        addrs.into_iter().find(|a| self.permits(a.ip()))
    }
}

/// Whether `ip` is an address of this host (in the agent's network namespace): binding a
/// socket to it succeeds only then. One syscall pair, no interface list to keep fresh as
/// Pod bridges come and go.
fn is_own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_its_loopback_and_link_local_are_refused_unless_allowed() {
        let p = EgressPolicy::default();
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "100.100.100.200",
            "168.63.129.16",
            "fd00:ec2::254",
        ] {
            assert!(!p.permits(refused.parse().unwrap()), "{refused}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1", "10.1.2.3"] {
            assert!(p.permits(public.parse().unwrap()), "{public}");
        }
        // Every address of this host is the node's own.
        let own = local_ipv4();
        if let Some(own) = own {
            assert!(!p.permits(own), "{own}");
        }
        let allowed = EgressPolicy {
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(allowed.permits("127.0.0.1".parse().unwrap()));
        assert!(!allowed.permits("169.254.169.254".parse().unwrap()));
        let chosen = p.choose([
            "127.0.0.1:80".parse().unwrap(),
            "93.184.216.34:80".parse().unwrap(),
        ]);
        assert_eq!(chosen, Some("93.184.216.34:80".parse().unwrap()));
    }

    /// A non-loopback address of this machine, from the route a datagram would take.
    fn local_ipv4() -> Option<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        s.connect("10.255.255.1:9").ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
    }
}

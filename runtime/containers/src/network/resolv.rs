//! The `/etc/resolv.conf` a container gets: the host's, minus nameservers on loopback
//! addresses (which inside the Pod's network namespace would be the Pod itself).

use std::fs;
use std::net::IpAddr;

const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const RESOLVED_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// A container's `/etc/resolv.conf` made from the host's (`host`), as Docker does: every
/// line kept except `nameserver`s on loopback addresses (`127.0.0.0/8`, `::1`), which in the
/// Pod's network namespace would be the Pod itself. When no nameserver is left the file says
/// so in a comment and names none; there is no public fallback (Docker's 8.8.8.8), because
/// Pod traffic stays on this machine: a resolver then falls back to the Pod's own loopback
/// and fails at once, and Services are reached by name through the HTTP proxy anyway.
pub fn pod_resolv_conf(host: &str) -> String {
    let mut out = String::with_capacity(host.len() + 64);
    let mut kept = 0;
    let mut dropped = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver")
            && let Some(addr) = words.next()
        {
            // An IPv6 address may carry a zone (`fe80::1%eth0`).
            let ip = addr.split('%').next().unwrap_or(addr).parse::<IpAddr>();
            if ip.is_ok_and(|ip| ip.is_loopback()) {
                dropped.push(addr);
                continue;
            }
            kept += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if kept == 0 {
        out.push_str("# ketch: no nameserver: ");
        if dropped.is_empty() {
            out.push_str("the host names none");
        } else {
            out.push_str("the host's (");
            out.push_str(&dropped.join(", "));
            out.push_str(") are loopback addresses, not reachable from the Pod");
        }
        out.push_str("; reach Services by name through HTTP_PROXY\n");
    }
    out
}

/// [`pod_resolv_conf`] of the host's `/etc/resolv.conf`, or, when that leaves no nameserver
/// and systemd-resolved keeps its upstream servers in `/run/systemd/resolve/resolv.conf`, of
/// that file (the stub at `127.0.0.53` is not reachable from a Pod). A missing file reads as
/// empty.
pub fn host_pod_resolv_conf() -> String {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let conf = pod_resolv_conf(&read(HOST_RESOLV_CONF));
    if has_nameserver(&conf) {
        return conf;
    }
    let resolved = pod_resolv_conf(&read(RESOLVED_RESOLV_CONF));
    if has_nameserver(&resolved) {
        resolved
    } else {
        conf
    }
}

fn has_nameserver(conf: &str) -> bool {
    conf.lines()
        .any(|l| l.split_whitespace().next() == Some("nameserver"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_nameservers_and_keeps_the_rest() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 192.168.1.1\n\
                    nameserver ::1\nnameserver fe80::1%eth0\nsearch corp.example\n\
                    options edns0 trust-ad\nnameserver 127.1.2.3\n";
        assert_eq!(
            pod_resolv_conf(host),
            "# generated\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\n\
             search corp.example\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn resolv_conf_without_a_usable_nameserver_says_so() {
        let stub = pod_resolv_conf("nameserver 127.0.0.53\noptions edns0\nsearch .\n");
        assert_eq!(
            stub,
            "options edns0\nsearch .\n# ketch: no nameserver: the host's (127.0.0.53) are \
             loopback addresses, not reachable from the Pod; reach Services by name through \
             HTTP_PROXY\n"
        );
        assert!(!has_nameserver(&stub));
        let empty = pod_resolv_conf("");
        assert_eq!(
            empty,
            "# ketch: no nameserver: the host names none; reach Services by name through \
             HTTP_PROXY\n"
        );
        // A commented-out or malformed line is not a nameserver, and is kept as it is.
        let odd = pod_resolv_conf("#nameserver 1.1.1.1\nnameserver\nnameserver bogus\n");
        assert!(odd.starts_with("#nameserver 1.1.1.1\nnameserver\nnameserver bogus\n"));
        assert!(
            has_nameserver(&odd),
            "an unparsable address is the resolver's to judge"
        );
    }
}

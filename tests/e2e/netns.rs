//! Network namespaces made by a test, for partitions: each member gets a namespace with a
//! veth on a bridge of the test's own in the root namespace, so the test (in the root
//! namespace) reaches every member while the members' traffic to each other can be cut.
//!
//! A partition is a pair of blackhole routes per cut link, one in each namespace: a packet
//! to a blackholed address fails at once in the sender (no timeouts to wait out), the
//! test's own traffic is untouched, and healing is deleting the routes. Everything is
//! removed on drop. Needs root (`ip netns`); [`Net::create`] says `None` otherwise.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A bridge and `n` namespaces on it, named after this process and a counter so parallel
/// tests and leftovers of a killed run never collide.
pub struct Net {
    id: String,
    bridge: String,
    subnet: [u8; 3],
    members: usize,
    /// The blackhole routes in place: (namespace index, address cut off).
    cuts: Vec<(usize, usize)>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

impl Net {
    /// `None` (with a note on stderr) when this is not root: the test skips.
    ///
    /// # Panics
    /// When a namespace or link cannot be made although this is root.
    pub fn create(members: usize) -> Option<Net> {
        if !is_root() {
            eprintln!("SKIPPED: network namespaces need root");
            return None;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let seq = (std::process::id() << 3 | n) & 0xff_ffff;
        let id = format!("{seq:06x}");
        // 10.213.0.0/16 split into /24s by the low bits of the sequence number.
        let subnet = [10, 213, (seq % 251) as u8 + 1];
        let mut net = Net {
            bridge: format!("ktb{id}"),
            id,
            subnet,
            members: 0,
            cuts: Vec::new(),
        };
        let gw = format!("{}/24", net.gateway());
        run(&["ip", "link", "add", &net.bridge, "type", "bridge"]).unwrap();
        run(&["ip", "addr", "add", &gw, "dev", &net.bridge]).unwrap();
        run(&["ip", "link", "set", &net.bridge, "up"]).unwrap();
        for i in 0..members {
            net.add_member(i).unwrap();
            net.members += 1;
        }
        Some(net)
    }

    fn add_member(&self, i: usize) -> Result<(), String> {
        let ns = self.netns(i);
        let host = format!("ktv{}{i}", self.id);
        let peer = format!("ktp{}{i}", self.id);
        let addr = format!("{}/24", self.addr(i));
        run(&["ip", "netns", "add", &ns])?;
        run(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
        ])?;
        run(&["ip", "link", "set", &peer, "netns", &ns])?;
        run(&["ip", "link", "set", &host, "master", &self.bridge])?;
        run(&["ip", "link", "set", &host, "up"])?;
        let exec = ["ip", "netns", "exec", &ns];
        for cmd in [
            &["ip", "link", "set", "lo", "up"][..],
            &["ip", "link", "set", &peer, "name", "eth0"],
            &["ip", "addr", "add", &addr, "dev", "eth0"],
            &["ip", "link", "set", "eth0", "up"],
        ] {
            run(&[&exec[..], cmd].concat())?;
        }
        Ok(())
    }

    /// The root namespace's address on the bridge: an address of this host that is not
    /// loopback, for a test's own listener that ketch must reach as an outside address.
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Member `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 10 + i as u8)
    }

    /// Member `i`'s namespace name (for `ip netns exec`).
    pub fn netns(&self, i: usize) -> String {
        format!("ktn{}{i}", self.id)
    }

    fn blackhole(&self, op: &str, from: usize, to: usize) -> Result<(), String> {
        let ns = self.netns(from);
        let to = format!("{}/32", self.addr(to));
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "ip",
            "route",
            op,
            "blackhole",
            &to,
        ])
    }

    /// Cut member `i` off from every other member, both ways (the test still reaches all).
    pub fn isolate(&mut self, i: usize) {
        for j in (0..self.members).filter(|&j| j != i) {
            for (from, to) in [(i, j), (j, i)] {
                self.blackhole("add", from, to).unwrap();
                self.cuts.push((from, to));
            }
        }
    }

    /// Undo every cut.
    pub fn heal(&mut self) {
        for (from, to) in std::mem::take(&mut self.cuts) {
            self.blackhole("del", from, to).unwrap();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the bridge side.
        for i in 0..self.members {
            let _ = run(&["ip", "netns", "del", &self.netns(i)]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}

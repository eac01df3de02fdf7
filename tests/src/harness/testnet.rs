//! A private test network: one Linux bridge made by the test, and one network namespace per test
//! host or controller, joined to the bridge by a veth pair (`eth0` inside). The root namespace
//! has an address on the bridge too, so HAProxy, the S3 server, the delay proxy and the test
//! itself reach every namespace; test addresses exist only on this bridge and inside these
//! namespaces.
//!
//! Faults are iptables rules *inside* a namespace (its own tables: nothing in the root
//! namespace changes), so one host can be cut off both ways or one way, lose packets at random,
//! or stop reaching one address, and [`NetNs::heal_faults`] undoes all of it at once.
//!
//! Names and the /24 carry the test process's pid (`drs<pid>-<n>`, bridge `drsb<pid>`,
//! 10.(100+pid/256%100).(pid%256).0/24), so parallel test binaries never collide, and
//! [`clean_stale`] removes what a crashed earlier run (a dead pid) left behind. Everything is
//! removed on drop, also when the test panicked.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::netns::NetNs;

/// How a host is cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Nothing in, nothing out.
    Both,
    /// It can send, but receives nothing (INPUT dropped).
    Inbound,
    /// It receives, but nothing it sends leaves (OUTPUT dropped).
    Outbound,
}

pub struct TestNet {
    pub bridge: String,
    /// The root namespace's address on the bridge.
    pub root_ip: Ipv4Addr,
    prefix: String,
    subnet: [u8; 3],
    next: AtomicU32,
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in a name of this scheme (`drs<pid>-..`, `drs<pid>v..`, `drsb<pid>`), if any.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("drsb")
        .or_else(|| name.strip_prefix("drs"))?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Remove namespaces, links and mounts of this naming scheme whose test process is gone.
pub fn clean_stale() {
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if owner_pid(name).is_some_and(|p| !pid_alive(p)) && name.starts_with("drs") {
                kill_namespace_processes(name);
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(list) = run(&["ip", "-o", "link", "show"]) {
        for line in list.lines() {
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if name.starts_with("drs") && owner_pid(name).is_some_and(|p| !pid_alive(p)) {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
    if let Ok(rules) = run(&["iptables", "-w", "-S", "FORWARD"]) {
        for bridge in rules
            .lines()
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "-i").nth(1))
            .filter(|b| b.starts_with("drsb") && owner_pid(b).is_some_and(|p| !pid_alive(p)))
        {
            forget_forward_rule(bridge);
        }
    }
    super::disk::clean_stale_mounts();
}

fn kill_namespace_processes(name: &str) {
    if let Ok(pids) = run(&["ip", "netns", "pids", name]) {
        for pid in pids.lines().filter_map(|p| p.trim().parse::<u32>().ok()) {
            let _ = dr_proto::process::signal(pid, dr_proto::process::Sig::Cont);
            let _ = dr_proto::process::signal(pid, dr_proto::process::Sig::Kill);
        }
    }
}

impl TestNet {
    /// Make the bridge and give the root namespace its address (cleaning stale runs first).
    pub fn create() -> anyhow::Result<TestNet> {
        super::netns::available().map_err(|e| anyhow::anyhow!("test network: {e}"))?;
        clean_stale();
        let pid = std::process::id();
        let subnet = [10, 100 + ((pid / 256) % 100) as u8, (pid % 256) as u8];
        let net = TestNet {
            bridge: format!("drsb{pid}"),
            root_ip: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1),
            prefix: format!("drs{pid}"),
            subnet,
            next: AtomicU32::new(0),
        };
        let _ = run(&["ip", "link", "del", &net.bridge]);
        run(&["ip", "link", "add", &net.bridge, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", net.root_ip),
            "dev",
            &net.bridge,
        ])?;
        run(&["ip", "link", "set", &net.bridge, "up"])?;
        // with br_netfilter loaded, frames crossing the bridge go through the root FORWARD
        // chain: a host whose policy drops them (Docker sets DROP) must not cut the test net
        run(&[
            "iptables",
            "-w",
            "-I",
            "FORWARD",
            "1",
            "-i",
            &net.bridge,
            "-o",
            &net.bridge,
            "-j",
            "ACCEPT",
        ])?;
        Ok(net)
    }

    /// A new namespace on the bridge, with the next address of the /24.
    pub fn add_node(&self) -> anyhow::Result<NetNs> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        anyhow::ensure!(n < 200, "too many test namespaces");
        let name = format!("{}-{n}", self.prefix);
        let veth_root = format!("{}v{n}", self.prefix);
        let veth_peer = format!("{}p{n}", self.prefix);
        let [a, b, c] = self.subnet;
        let ns_ip = Ipv4Addr::new(a, b, c, 2 + n as u8);
        let _ = run(&["ip", "netns", "del", &name]);
        run(&["ip", "netns", "add", &name])?;
        // from here on, drop removes what exists
        let ns = NetNs {
            name: name.clone(),
            veth_root: veth_root.clone(),
            root_ip: self.root_ip,
            ns_ip,
        };
        run(&[
            "ip", "link", "add", &veth_root, "type", "veth", "peer", "name", &veth_peer,
        ])?;
        run(&["ip", "link", "set", &veth_root, "master", &self.bridge])?;
        run(&["ip", "link", "set", &veth_root, "up"])?;
        run(&["ip", "link", "set", &veth_peer, "netns", &name])?;
        let inside = |args: &[&str]| {
            let mut v = vec!["ip", "-n", &name];
            v.extend_from_slice(args);
            run(&v)
        };
        inside(&["link", "set", &veth_peer, "name", "eth0"])?;
        inside(&["addr", "add", &format!("{ns_ip}/24"), "dev", "eth0"])?;
        inside(&["link", "set", "eth0", "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        forget_forward_rule(&self.bridge);
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}

fn forget_forward_rule(bridge: &str) {
    while run(&[
        "iptables", "-w", "-D", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
    ])
    .is_ok()
    {}
}

impl NetNs {
    fn iptables(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut v = vec!["ip", "netns", "exec", &self.name, "iptables", "-w"];
        v.extend_from_slice(args);
        run(&v).map(|_| ())
    }

    /// Cut this namespace off from the bridge (iptables in the namespace; the rules go first,
    /// before any ESTABLISHED accept, so open connections stall too).
    pub fn cut_off(&self, how: Cut) -> anyhow::Result<()> {
        if matches!(how, Cut::Both | Cut::Inbound) {
            self.iptables(&["-I", "INPUT", "1", "-i", "eth0", "-j", "DROP"])?;
        }
        if matches!(how, Cut::Both | Cut::Outbound) {
            self.iptables(&["-I", "OUTPUT", "1", "-o", "eth0", "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Drop this share (0..1) of the packets arriving in this namespace, at random.
    pub fn lose_packets(&self, probability: f64) -> anyhow::Result<()> {
        self.iptables(&[
            "-I",
            "INPUT",
            "1",
            "-i",
            "eth0",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &format!("{probability}"),
            "-j",
            "DROP",
        ])
    }

    /// Stop reaching `ip:port` over TCP from this namespace (packets silently dropped).
    pub fn block_tcp_to(&self, ip: Ipv4Addr, port: u16) -> anyhow::Result<()> {
        self.iptables(&[
            "-I",
            "OUTPUT",
            "1",
            "-d",
            &ip.to_string(),
            "-p",
            "tcp",
            "--dport",
            &port.to_string(),
            "-j",
            "DROP",
        ])
    }

    /// Let only `per_second` TCP packets a second through to `ip:port` (drop the rest), so a
    /// transfer to it is slow enough to be caught in the middle; [`Self::throttled_bytes`]
    /// counts what went through. (veth offloads: one "packet" may carry up to 64 KiB.)
    pub fn throttle_tcp_to(&self, ip: Ipv4Addr, port: u16, per_second: u32) -> anyhow::Result<()> {
        let (ip, port) = (ip.to_string(), port.to_string());
        self.iptables(&[
            "-I", "OUTPUT", "1", "-d", &ip, "-p", "tcp", "--dport", &port, "-j", "DROP",
        ])?;
        self.iptables(&[
            "-I",
            "OUTPUT",
            "1",
            "-d",
            &ip,
            "-p",
            "tcp",
            "--dport",
            &port,
            "-m",
            "limit",
            "--limit",
            &format!("{per_second}/second"),
            "--limit-burst",
            "2",
            "-j",
            "ACCEPT",
        ])
    }

    /// Bytes the throttle let through so far.
    pub fn throttled_bytes(&self) -> u64 {
        self.counted_column("OUTPUT", "ACCEPT", 1)
    }

    fn counted(&self, chain: &str, target: &str) -> u64 {
        self.counted_column(chain, target, 0)
    }

    /// Sum of column `column` (0: packets, 1: bytes) of `chain`'s rules jumping to `target`.
    fn counted_column(&self, chain: &str, target: &str, column: usize) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "iptables", "-w", "-L", chain, "-v", "-n", "-x",
            ])
            .output();
        let Ok(out) = out else { return 0 };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(2)
            .filter(|l| l.split_whitespace().nth(2) == Some(target))
            .filter_map(|l| l.split_whitespace().nth(column)?.parse::<u64>().ok())
            .sum()
    }

    /// Remove every fault rule of this namespace.
    pub fn heal_faults(&self) -> anyhow::Result<()> {
        self.iptables(&["-F", "INPUT"])?;
        self.iptables(&["-F", "OUTPUT"])
    }

    /// Packets dropped so far by this namespace's fault rules (proof a fault took effect).
    pub fn dropped_packets(&self) -> u64 {
        self.counted("INPUT", "DROP") + self.counted("OUTPUT", "DROP")
    }
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn names_carry_their_owner_pid() {
        assert_eq!(owner_pid("drs1234-0"), Some(1234));
        assert_eq!(owner_pid("drs1234v3"), Some(1234));
        assert_eq!(owner_pid("drsb99"), Some(99));
        assert_eq!(owner_pid("drt17bc4"), None);
    }
}

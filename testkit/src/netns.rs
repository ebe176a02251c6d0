//! Several hosts on one machine: each a network namespace joined to this (the root) namespace by
//! a veth pair, with its own address. The root namespace reaches every host and every host
//! reaches the root's addresses; traffic between two hosts is routed through the root, so
//! turning that routing off (per interface, so the machine's own forwarding setting is left
//! alone) partitions the hosts from each other the way a real network does: packets vanish,
//! connections go silent. Needs root (CAP_NET_ADMIN), as the CI machines run.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// One host of a [`Lab`].
pub struct Host {
    /// The namespace's name.
    pub ns: String,
    /// The host's address (inside its namespace).
    pub addr: IpAddr,
    /// The root namespace's address on the link to this host.
    pub gateway: IpAddr,
    /// The root side of the veth pair.
    root_if: String,
}

/// Namespaces removed (with their links) when dropped, also when a test fails.
pub struct Lab {
    pub hosts: Vec<Host>,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed (network namespaces need root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    /// `hosts` namespaces on subnets of their own, connected.
    pub fn new(hosts: usize) -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // A /24 per host, unique per process and lab: 10.<100..199>.<m>.0/24.
        let second = 100 + (pid % 100) as u8;
        let mut lab = Lab { hosts: Vec::new() };
        for i in 0..hosts {
            let third = ((pid / 100) % 20) as u8 * 12 + (n % 3) as u8 * 4 + i as u8;
            let ns = format!("ews-{pid}-{n}-{i}");
            let root_if = format!("ewr{}{n}{i}", pid % 1_000_000);
            let host_if = format!("ewh{}{n}{i}", pid % 1_000_000);
            let gateway = Ipv4Addr::new(10, second, third, 1);
            let addr = Ipv4Addr::new(10, second, third, 2);
            run(&["ip", "netns", "add", &ns]);
            // Pushed now, so a failure below still removes what was made.
            lab.hosts.push(Host {
                ns: ns.clone(),
                addr: addr.into(),
                gateway: gateway.into(),
                root_if: root_if.clone(),
            });
            run(&[
                "ip", "link", "add", &root_if, "type", "veth", "peer", "name", &host_if,
            ]);
            run(&["ip", "link", "set", &host_if, "netns", &ns]);
            run(&[
                "ip",
                "addr",
                "add",
                &format!("{gateway}/24"),
                "dev",
                &root_if,
            ]);
            run(&["ip", "link", "set", &root_if, "up"]);
            let inside = |args: &[&str]| {
                let mut all = vec!["ip", "-n", &ns];
                all.extend_from_slice(args);
                run(&all);
            };
            inside(&["addr", "add", &format!("{addr}/24"), "dev", &host_if]);
            inside(&["link", "set", &host_if, "up"]);
            inside(&["link", "set", "lo", "up"]);
            inside(&["route", "add", "default", "via", &gateway.to_string()]);
        }
        lab.connect(true);
        lab
    }

    /// A command that runs `program` inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i].ns]).arg(program);
        cmd
    }

    /// Cuts (false) or restores (true) the routes between hosts; each host keeps reaching the
    /// root namespace, and the root namespace every host.
    pub fn connect(&self, on: bool) {
        for h in &self.hosts {
            let key = format!("net.ipv4.conf.{}.forwarding={}", h.root_if, u8::from(on));
            run(&["sysctl", "-qw", &key]);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &self.hosts {
            // Deleting the namespace deletes its end of the pair, and so the pair.
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).status();
            let _ = Command::new("ip")
                .args(["link", "del", &h.root_if])
                .output();
        }
    }
}

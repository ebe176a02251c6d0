//! Cluster nodes (`ews-leader`, `ews-worker`) on free loopback ports.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::{bin_path, free_port, free_udp_port, net, Proc, Scratch};

/// A loopback address whose port is free for both TCP and UDP: an internal port.
pub fn internal_addr() -> SocketAddr {
    ([127, 0, 0, 1], free_udp_port()).into()
}

/// A running node and where to reach it.
pub struct Node {
    pub node_id: String,
    /// Admin port: `/info`, `/members`, `/metrics`.
    pub admin: SocketAddr,
    /// Internal port: gossip (UDP) and node links (TCP). Other nodes use it as a seed.
    pub internal: SocketAddr,
    /// Public WebSocket port (workers only).
    pub public: Option<SocketAddr>,
    pub proc: Proc,
    /// A leader's own queue directory, where the spec names none: leaders of tests running at
    /// once would otherwise share `./data/queue`, and its lock. Removed with the node.
    pub queue_dir: Option<Scratch>,
}

/// What to start. `extra` flags come last, so they can override the defaults set here.
pub struct NodeSpec<'a> {
    pub node_id: &'a str,
    pub seeds: &'a [SocketAddr],
    /// Internal address to use, when peers must know it in advance (leaders seeding each other;
    /// see [`internal_addr`]). Default: a fresh free port.
    pub internal: Option<SocketAddr>,
    pub gossip_interval_ms: u64,
    pub extra: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// Workers: verify client tokens with this HS256 secret instead of running `--no-auth`.
    pub jwt_hs256_secret: Option<&'a str>,
    /// Workers: the public port to listen on, when a load balancer must know it in advance.
    /// Default: a fresh free port.
    pub public_port: Option<u16>,
}

impl<'a> NodeSpec<'a> {
    pub fn new(node_id: &'a str, seeds: &'a [SocketAddr]) -> NodeSpec<'a> {
        NodeSpec {
            node_id,
            seeds,
            internal: None,
            gossip_interval_ms: 200,
            extra: &[],
            env: &[],
            jwt_hs256_secret: None,
            public_port: None,
        }
    }
}

impl Node {
    /// Starts `leader-1` and `leader-2`, each the other's seed, with the same `extra` flags:
    /// the leaders and the seeds a worker lists.
    pub fn leader_pair(extra: &[&str]) -> ([Node; 2], [SocketAddr; 2]) {
        let (i1, i2) = (internal_addr(), internal_addr());
        let leader = |id: &str, internal: SocketAddr, peer: SocketAddr| {
            Node::leader(&NodeSpec {
                internal: Some(internal),
                extra,
                ..NodeSpec::new(id, &[peer])
            })
        };
        (
            [leader("leader-1", i1, i2), leader("leader-2", i2, i1)],
            [i1, i2],
        )
    }

    /// Starts `ews-leader` and waits until its admin port accepts connections.
    pub fn leader(spec: &NodeSpec) -> Node {
        Node::start("ews-leader", spec, None)
    }

    /// Starts `ews-worker` (stdout sink unless `extra` names one; no auth unless the spec gives a JWT secret) and waits until its admin port accepts
    /// connections (it does while still joining).
    pub fn worker(spec: &NodeSpec) -> Node {
        Node::worker_of("ews-worker", spec)
    }

    /// [`Node::worker`] for a binary built over the worker library (the same flags, its own
    /// handlers), such as the chat example's `ews-chat`.
    pub fn worker_of(binary: &str, spec: &NodeSpec) -> Node {
        Node::start(
            binary,
            spec,
            Some(spec.public_port.unwrap_or_else(free_port)),
        )
    }

    /// Starts the node without waiting for it (e.g. to watch it give up).
    pub fn spawn(binary: &str, spec: &NodeSpec) -> Node {
        let public = (binary == "ews-worker").then(free_port);
        Node::spawn_with(binary, spec, public)
    }

    /// Started means both TCP ports accept: the admin port and the node link (tests talk to
    /// either as soon as this returns; a cold CI run once saw the node link refuse right after
    /// the admin port answered).
    fn start(binary: &str, spec: &NodeSpec, public: Option<u16>) -> Node {
        let node = Node::spawn_with(binary, spec, public);
        for addr in [node.admin, node.internal] {
            if let Err(e) = net::wait_for_tcp(addr, Duration::from_secs(20)) {
                panic!(
                    "{} did not start: {e}\n{}",
                    spec.node_id,
                    node.proc.output()
                );
            }
        }
        node
    }

    fn spawn_with(binary: &str, spec: &NodeSpec, public: Option<u16>) -> Node {
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let internal = spec.internal.unwrap_or_else(internal_addr);
        let seeds = spec
            .seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new(bin_path(binary));
        cmd.env("RUST_LOG", "info")
            .arg("--node-id")
            .arg(spec.node_id)
            .arg("--admin-listen")
            .arg(admin.to_string())
            .arg("--internal-listen")
            .arg(internal.to_string())
            .arg("--gossip-interval-ms")
            .arg(spec.gossip_interval_ms.to_string());
        if !seeds.is_empty() {
            cmd.arg("--seeds").arg(seeds);
        }
        let public = public.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        if let Some(p) = public {
            match spec.jwt_hs256_secret {
                Some(secret) => cmd.args(["--jwt-hs256-secret", secret]),
                None => cmd.arg("--no-auth"),
            };
            // Unless the spec names a sink of its own.
            if !spec.extra.contains(&"--sink") {
                cmd.args(["--sink", "stdout"]);
            }
            cmd.arg("--listen").arg(p.to_string());
        }
        let queue_dir =
            (binary == "ews-leader" && !spec.extra.contains(&"--queue-dir")).then(|| {
                let dir = Scratch::new(&format!("queue-{}", spec.node_id));
                cmd.arg("--queue-dir").arg(dir.path());
                dir
            });
        cmd.args(spec.extra);
        for (k, v) in spec.env {
            cmd.env(k, v);
        }
        let proc = Proc::spawn(spec.node_id, cmd);
        Node {
            node_id: spec.node_id.to_string(),
            admin,
            internal,
            public,
            proc,
            queue_dir,
        }
    }

    /// The body of `GET /members` (JSON), or the error.
    pub fn members(&self) -> Result<String, String> {
        match net::http_get(self.admin, "/members") {
            Ok((200, body)) => Ok(body),
            Ok((code, body)) => Err(format!("{code} {body}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

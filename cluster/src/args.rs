//! The cluster flags every node binary shares (`ews-worker` and `ews-leader` flatten them).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ews_http::args::{positive_millis, positive_secs, read_secret_file, Secret};

/// Cluster membership flags. Defaults follow the paper's Akka configuration
/// (`seed-node-timeout = 10s`, `shutdown-after-unsuccessful-join-seed-nodes = 100s`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Unique, stable name of this node in the cluster (default: the host name). The live leader
    /// with the lowest node id is the active one.
    #[arg(long, env = "EWS_NODE_ID")]
    pub node_id: Option<String>,

    /// Comma-separated host:port of the leaders' internal port. Host names are re-resolved on
    /// every retry, so private DNS names survive a leader's replacement.
    #[arg(long, env = "EWS_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<Seed>,

    /// Host or IP peers use to reach this node (default: the listen IP if specific, else the
    /// local address that routes to the first seed, else 127.0.0.1).
    #[arg(long, env = "EWS_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// Gossip round interval in milliseconds (at least 10). Failure detection takes a few
    /// rounds.
    #[arg(
        long = "gossip-interval-ms",
        env = "EWS_GOSSIP_INTERVAL_MS",
        default_value = "500",
        value_parser = gossip_interval
    )]
    pub gossip_interval: Duration,

    /// Seconds between attempts to contact the seeds (the paper's `seed-node-timeout`).
    #[arg(
        long = "seed-node-timeout-secs",
        env = "EWS_SEED_NODE_TIMEOUT_SECS",
        default_value = "10",
        value_parser = positive_secs
    )]
    pub seed_node_timeout: Duration,

    /// A worker that has not joined after this many seconds exits non-zero (the paper's
    /// `shutdown-after-unsuccessful-join-seed-nodes`). 0 waits forever.
    #[arg(
        long,
        env = "EWS_SHUTDOWN_AFTER_UNSUCCESSFUL_JOIN_SECS",
        default_value_t = 100
    )]
    pub shutdown_after_unsuccessful_join_secs: u64,

    /// Seconds an unreachable node stays listed before it is forgotten. Short, so a replaced
    /// instance does not linger in the view (a restarted node comes back with a new generation).
    #[arg(
        long = "dead-node-grace-secs",
        env = "EWS_DEAD_NODE_GRACE_SECS",
        default_value = "60",
        value_parser = positive_secs
    )]
    pub dead_node_grace: Duration,

    /// Shared secret of the cluster: node links are signed with a key derived from it, and a peer
    /// counts only once it has proven it (gossip alone decides nothing).
    #[arg(
        long,
        env = "EWS_CLUSTER_SECRET",
        hide_env_values = true,
        conflicts_with = "cluster_secret_file"
    )]
    pub cluster_secret: Option<Secret>,

    /// File holding the cluster secret (trailing whitespace ignored).
    #[arg(long, env = "EWS_CLUSTER_SECRET_FILE", value_parser = read_secret_file)]
    pub cluster_secret_file: Option<Secret>,

    /// A second cluster secret this node also accepts (never signs with): the middle step of a
    /// rotation without downtime (docs/trust.md).
    #[arg(
        long,
        env = "EWS_CLUSTER_SECRET_ACCEPT",
        hide_env_values = true,
        conflicts_with = "cluster_secret_accept_file"
    )]
    pub cluster_secret_accept: Option<Secret>,

    /// File holding that second secret.
    #[arg(long, env = "EWS_CLUSTER_SECRET_ACCEPT_FILE", value_parser = read_secret_file)]
    pub cluster_secret_accept_file: Option<Secret>,

    /// How long a cluster publish waits for each worker (milliseconds). A worker that has not
    /// answered by then is named in the answer's `failed`; the others are not held up.
    #[arg(
        long = "publish-peer-timeout-ms",
        env = "EWS_PUBLISH_PEER_TIMEOUT_MS",
        default_value = "1000",
        value_parser = positive_millis
    )]
    pub publish_peer_timeout: Duration,
}

impl ClusterArgs {
    pub fn join_give_up(&self) -> Option<Duration> {
        (self.shutdown_after_unsuccessful_join_secs > 0)
            .then(|| Duration::from_secs(self.shutdown_after_unsuccessful_join_secs))
    }

    pub fn node_id(&self) -> String {
        self.node_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(host_name)
    }

    /// The cluster secret, from `--cluster-secret` or `--cluster-secret-file`.
    pub fn secret(&self) -> Option<&ClusterSecret> {
        self.cluster_secret
            .as_ref()
            .or(self.cluster_secret_file.as_ref())
    }

    /// The secret accepted besides it during a rotation.
    pub fn accepted_secret(&self) -> Option<&ClusterSecret> {
        self.cluster_secret_accept
            .as_ref()
            .or(self.cluster_secret_accept_file.as_ref())
    }
}

/// The shared secret of a cluster.
pub type ClusterSecret = Secret;

/// A seed: `host:port` of a leader's internal port. The host stays a name (it is resolved again
/// on every attempt); the port is checked now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    host: String,
    port: u16,
}

impl FromStr for Seed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
            Some((host, Ok(port))) if !host.is_empty() && port != 0 => Ok(Seed {
                host: host.to_string(),
                port,
            }),
            _ => Err(format!("{s:?} is not host:port")),
        }
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A gossip interval: whole milliseconds, at least 10.
fn gossip_interval(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(ms) if ms >= 10 => Ok(Duration::from_millis(ms)),
        Ok(ms) => Err(format!("{ms} ms is below the minimum of 10 ms")),
        Err(e) => Err(format!("not a whole number of milliseconds: {e}")),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    #[test]
    fn defaults_follow_the_paper() {
        let cli = Cli::parse_from(["x"]);
        assert_eq!(cli.cluster.seed_node_timeout, Duration::from_secs(10));
        assert_eq!(cli.cluster.join_give_up(), Some(Duration::from_secs(100)));
        assert!(cli.cluster.seeds.is_empty());
        assert!(!cli.cluster.node_id().is_empty());
    }

    #[test]
    fn seeds_are_comma_separated() {
        let cli = Cli::parse_from(["x", "--seeds", "leader-1.ews.internal:7070,10.0.0.2:7070"]);
        let seeds: Vec<String> = cli.cluster.seeds.iter().map(Seed::to_string).collect();
        assert_eq!(seeds, vec!["leader-1.ews.internal:7070", "10.0.0.2:7070"]);
    }

    #[test]
    fn secret_from_file_is_trimmed_and_hidden() {
        let path = std::env::temp_dir().join(format!("ews-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let cli = Cli::parse_from(["x", "--cluster-secret-file", path.to_str().unwrap()]);
        let secret = cli.cluster.secret().unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert!(!format!("{secret:?}").contains("s3cret"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn malformed_flags_are_errors_at_start() {
        let cli = Cli::parse_from(["x", "--seeds", "leader-1:7070,[::1]:7070"]);
        assert_eq!(cli.cluster.seeds.len(), 2);
        for bad in ["leader-1", "leader-1:http", ":7070", "leader-1:0"] {
            assert!(Cli::try_parse_from(["x", "--seeds", bad]).is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["x", "--gossip-interval-ms", "5"]).is_err());
        assert!(Cli::try_parse_from(["x", "--seed-node-timeout-secs", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--cluster-secret", ""]).is_err());
    }

    #[test]
    fn zero_give_up_waits_forever() {
        let cli = Cli::parse_from(["x", "--shutdown-after-unsuccessful-join-secs", "0"]);
        assert_eq!(cli.cluster.join_give_up(), None);
    }
}

//! The cluster flags every node binary shares (`ews-worker` and `ews-leader` flatten them).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

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
    pub seeds: Vec<String>,

    /// Host or IP peers use to reach this node (default: the listen IP if specific, else the
    /// local address that routes to the first seed, else 127.0.0.1).
    #[arg(long, env = "EWS_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// Gossip round interval in milliseconds. Failure detection takes a few rounds.
    #[arg(long, env = "EWS_GOSSIP_INTERVAL_MS", default_value_t = 500)]
    pub gossip_interval_ms: u64,

    /// Seconds between attempts to contact the seeds (the paper's `seed-node-timeout`).
    #[arg(long, env = "EWS_SEED_NODE_TIMEOUT_SECS", default_value_t = 10)]
    pub seed_node_timeout_secs: u64,

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
    #[arg(long, env = "EWS_DEAD_NODE_GRACE_SECS", default_value_t = 60)]
    pub dead_node_grace_secs: u64,

    /// Shared secret of the cluster, required on node-to-node links (TCP, internal port).
    /// Gossip (UDP) is not authenticated: keep the internal port private to the cluster.
    #[arg(
        long,
        env = "EWS_CLUSTER_SECRET",
        hide_env_values = true,
        conflicts_with = "cluster_secret_file"
    )]
    pub cluster_secret: Option<String>,

    /// File holding the cluster secret (trailing whitespace ignored).
    #[arg(long, env = "EWS_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
}

impl ClusterArgs {
    pub fn gossip_interval(&self) -> Duration {
        Duration::from_millis(self.gossip_interval_ms.max(10))
    }

    pub fn seed_node_timeout(&self) -> Duration {
        Duration::from_secs(self.seed_node_timeout_secs.max(1))
    }

    /// The seeds, checked to be `host:port` so a typo fails at start instead of after the
    /// give-up time.
    pub fn seeds(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for seed in self
            .seeds
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            let port = seed
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(p))) if !host.is_empty() && p != 0 => out.push(seed.to_string()),
                _ => bail!("--seeds: {seed:?} is not host:port"),
            }
        }
        Ok(out)
    }

    /// `None` when the node should keep trying forever.
    pub fn join_give_up(&self) -> Option<Duration> {
        (self.shutdown_after_unsuccessful_join_secs > 0)
            .then(|| Duration::from_secs(self.shutdown_after_unsuccessful_join_secs))
    }

    pub fn dead_node_grace(&self) -> Duration {
        Duration::from_secs(self.dead_node_grace_secs.max(1))
    }

    /// The configured node id, else the host name.
    pub fn node_id(&self) -> String {
        self.node_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(host_name)
    }

    /// Reads the cluster secret from the flag or the file; `None` when neither is set.
    pub fn secret(&self) -> anyhow::Result<Option<ClusterSecret>> {
        let raw = match (&self.cluster_secret, &self.cluster_secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading cluster secret file {}", path.display()))?,
            (None, None) => return Ok(None),
        };
        let secret = raw.trim_end().to_string();
        if secret.is_empty() {
            bail!("the cluster secret is empty");
        }
        Ok(Some(ClusterSecret(secret)))
    }
}

/// The shared cluster secret. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(String);

impl ClusterSecret {
    pub fn new(secret: impl Into<String>) -> ClusterSecret {
        ClusterSecret(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
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
        assert_eq!(cli.cluster.seed_node_timeout(), Duration::from_secs(10));
        assert_eq!(cli.cluster.join_give_up(), Some(Duration::from_secs(100)));
        assert!(cli.cluster.seeds.is_empty());
        assert!(!cli.cluster.node_id().is_empty());
    }

    #[test]
    fn seeds_are_comma_separated() {
        let cli = Cli::parse_from(["x", "--seeds", "leader-1.ews.internal:7070,10.0.0.2:7070"]);
        assert_eq!(
            cli.cluster.seeds,
            vec!["leader-1.ews.internal:7070", "10.0.0.2:7070"]
        );
    }

    #[test]
    fn secret_from_file_is_trimmed_and_hidden() {
        let path = std::env::temp_dir().join(format!("ews-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let cli = Cli::parse_from(["x", "--cluster-secret-file", path.to_str().unwrap()]);
        let secret = cli.cluster.secret().unwrap().unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert!(!format!("{secret:?}").contains("s3cret"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn malformed_seeds_are_rejected() {
        let cli = Cli::parse_from(["x", "--seeds", "leader-1:7070, ,[::1]:7070"]);
        assert_eq!(
            cli.cluster.seeds().unwrap(),
            vec!["leader-1:7070", "[::1]:7070"]
        );
        for bad in ["leader-1", "leader-1:http", ":7070", "leader-1:0"] {
            let cli = Cli::parse_from(["x", "--seeds", bad]);
            assert!(cli.cluster.seeds().is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_give_up_waits_forever() {
        let cli = Cli::parse_from(["x", "--shutdown-after-unsuccessful-join-secs", "0"]);
        assert_eq!(cli.cluster.join_give_up(), None);
    }
}

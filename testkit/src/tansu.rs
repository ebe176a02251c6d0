//! Tansu, a Kafka-protocol broker, on a free port; installed by `scripts/tools/tansu.sh`.
//!
//! [`Tansu::start`] keeps topics in memory (fast, lost when the process dies);
//! [`Tansu::start_on_s3`] stores them in an S3 bucket on a moto server. [`Tansu::pause`] and
//! [`Tansu::resume`] make an outage without losing what it stored (killed under load, Tansu 0.6.0
//! on S3 was seen losing records it had acknowledged).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::moto::Moto;
use crate::{free_port, net, tools_dir, Proc};

pub struct Tansu {
    pub addr: SocketAddr,
    storage: String,
    env: Vec<(String, String)>,
    proc: Option<Proc>,
}

fn binary() -> std::path::PathBuf {
    let bin = tools_dir().join("tansu/bin/tansu-broker");
    assert!(
        bin.exists(),
        "tansu not installed at {}: run `bash scripts/tools/tansu.sh`",
        bin.display()
    );
    bin
}

impl Tansu {
    /// A broker with in-memory storage.
    pub fn start() -> Tansu {
        Self::start_with("memory://tansu/", Vec::new())
    }

    /// A broker storing its topics in bucket `tansu` of `moto` (created here), which survives
    /// [`Tansu::kill`] + [`Tansu::restart`].
    pub fn start_on_s3(moto: &Moto) -> Tansu {
        let (code, body) = net::request(moto.addr, "PUT", "/tansu", &[], b"")
            .unwrap_or_else(|e| panic!("create bucket on moto: {e}"));
        assert!(code == 200 || code == 409, "create bucket: {code} {body}");
        let env = [
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT", moto.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self::start_with("s3://tansu/", env)
    }

    fn start_with(storage: &str, env: Vec<(String, String)>) -> Tansu {
        let mut t = Tansu {
            addr: ([127, 0, 0, 1], free_port()).into(),
            storage: storage.to_string(),
            env,
            proc: None,
        };
        t.launch();
        t
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Starts it on its port and storage, and waits until it accepts connections.
    fn launch(&mut self) {
        let url = format!("tcp://{}", self.addr);
        let mut cmd = Command::new(binary());
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", &self.storage])
        .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let proc = Proc::spawn("tansu", cmd);
        if let Err(e) = proc.wait_for_output("ready in", Duration::from_secs(20)) {
            panic!("tansu did not start: {e}");
        }
        if let Err(e) = net::wait_for_tcp(self.addr, Duration::from_secs(10)) {
            panic!("tansu not listening: {e}\n{}", proc.output());
        }
        self.proc = Some(proc);
    }

    /// SIGSTOP: the broker stops answering (an outage: a hung broker, a partition) and keeps
    /// everything it has stored; [`Tansu::resume`] lets it go on.
    pub fn pause(&self) {
        if let Some(p) = &self.proc {
            p.signal(libc::SIGSTOP);
        }
    }

    /// SIGCONT after [`Tansu::pause`].
    pub fn resume(&self) {
        if let Some(p) = &self.proc {
            p.signal(libc::SIGCONT);
        }
    }

    /// Creates `topic` with `partitions` partitions (topics are never auto-created in tests).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(binary())
            .args(["topic", "create", topic])
            .args(["--broker", &format!("tcp://{}", self.addr)])
            .args(["--partitions", &partitions.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("run tansu topic create: {e}"));
        assert!(
            out.status.success(),
            "tansu topic create {topic}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

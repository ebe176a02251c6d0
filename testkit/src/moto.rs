//! A moto server (AWS API emulator) on a free port, installed by `scripts/tools/moto.sh`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{free_port, net, tools_dir, Proc};

pub struct Moto {
    pub addr: SocketAddr,
    proc: Option<Proc>,
    /// Where every request is recorded, so a restart can bring the state back.
    recording: Option<PathBuf>,
}

impl Moto {
    /// Starts moto and waits until `GET /moto-api/` answers 200.
    pub fn start() -> Moto {
        Moto::start_on([127, 0, 0, 1].into())
    }

    /// Starts moto on `ip` (an address other network namespaces reach, say).
    pub fn start_on(ip: std::net::IpAddr) -> Moto {
        let addr = SocketAddr::new(ip, free_port());
        Moto {
            addr,
            proc: Some(spawn(addr, None)),
            recording: None,
        }
    }

    /// Starts moto recording every request into `file` (moto keeps its state in memory only):
    /// [`Moto::restart`] then replays them, so stopping and restarting it is an outage of the
    /// service, not a loss of its data, as with the real AWS.
    pub fn start_recording(file: &Path) -> Moto {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        Moto {
            addr,
            proc: Some(spawn(addr, Some(file))),
            recording: Some(file.to_path_buf()),
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` or an SDK `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forgets every resource (between tests sharing one server).
    pub fn reset(&self) {
        let _ = net::http_request(self.addr, "POST", "/moto-api/reset", &[], b"");
    }

    /// Creates the SQS queue `name` (AWS's query protocol, so a test needs no SDK) and returns
    /// its URL. A name ending in `.fifo` makes a FIFO queue.
    pub fn create_sqs_queue(&self, name: &str) -> String {
        let fifo = if name.ends_with(".fifo") {
            "&Attribute.1.Name=FifoQueue&Attribute.1.Value=true"
        } else {
            ""
        };
        let body = format!("Action=CreateQueue&QueueName={name}{fifo}&Version=2012-11-05");
        let (status, xml) = net::http_request(
            self.addr,
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request",
                ),
            ],
            body.as_bytes(),
        )
        .expect("CreateQueue");
        assert_eq!(status, 200, "CreateQueue: {xml}");
        xml.split("<QueueUrl>")
            .nth(1)
            .and_then(|rest| rest.split("</QueueUrl>").next())
            .unwrap_or_else(|| panic!("no QueueUrl in {xml}"))
            .to_string()
    }

    /// Creates the DynamoDB table `name` with the string hash key `key` (on demand billing), as
    /// Terraform creates the leaders' lease table.
    pub fn create_dynamodb_table(&self, name: &str, key: &str) {
        let body = format!(
            r#"{{"TableName":"{name}","KeySchema":[{{"AttributeName":"{key}","KeyType":"HASH"}}],"AttributeDefinitions":[{{"AttributeName":"{key}","AttributeType":"S"}}],"BillingMode":"PAY_PER_REQUEST"}}"#
        );
        let (status, answer) = net::http_request(
            self.addr,
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-amz-json-1.0"),
                ("X-Amz-Target", "DynamoDB_20120810.CreateTable"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request",
                ),
            ],
            body.as_bytes(),
        )
        .expect("CreateTable");
        assert_eq!(status, 200, "CreateTable: {answer}");
    }

    /// Environment for a process that should talk to this moto as if it were AWS.
    pub fn env(&self) -> [(&'static str, String); 4] {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ]
    }

    /// Stops the server: every request fails until [`Moto::restart`].
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal(libc::SIGTERM);
            if p.wait_timeout(Duration::from_secs(5)).is_none() {
                p.kill();
            }
        }
    }

    /// Starts the server again on the same port and, when it records, replays what it had
    /// been asked before it stopped.
    pub fn restart(&mut self) {
        self.stop();
        let proc = spawn(self.addr, self.recording.as_deref());
        if self.recording.is_some() {
            let r = net::http_request_within(
                self.addr,
                "POST",
                "/moto-api/recorder/replay-recording",
                &[],
                b"",
                Duration::from_secs(120),
            );
            assert!(
                r.as_ref().is_ok_and(|(status, _)| *status == 200),
                "moto replay failed: {r:?}\n{}",
                proc.output()
            );
        }
        self.proc = Some(proc);
    }
}

fn spawn(addr: SocketAddr, recording: Option<&Path>) -> Proc {
    let python = tools_dir().join("moto/bin/python");
    assert!(
        python.exists(),
        "moto not installed at {}: run `bash scripts/tools/moto.sh`",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.args(["-m", "moto.server", "-H"])
        .arg(addr.ip().to_string())
        .args(["-p", &addr.port().to_string()]);
    if let Some(file) = recording {
        cmd.env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", file);
    }
    let proc = Proc::spawn("moto", cmd);
    if let Err(e) = net::wait_for_http_ok(addr, "/moto-api/", Duration::from_secs(30)) {
        panic!("moto did not start: {e}\n{}", proc.output());
    }
    proc
}

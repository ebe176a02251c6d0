//! Elastic moves with real processes behind a real round-robin load balancer (nginx): a Spot
//! worker told of its interruption drains and exits within the notice while its clients move to
//! the others; and a scale-in removes the worker the termination policy picks, the least
//! loaded, so only its clients move.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ews_testkit::free_port;
use ews_testkit::nginx::RoundRobin;
use ews_testkit::nodes::{Node, NodeSpec};
use futures_util::StreamExt;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

fn active(node: &Node) -> u64 {
    support::metric(node, "ews_connections_active") as u64
}

/// One client that stays connected through `lb` and reconnects at once whenever it is closed,
/// counting its connections, until `stop`.
async fn client(lb: SocketAddr, opens: Arc<AtomicU64>, stop: CancellationToken) {
    let url = format!("ws://{lb}/ws");
    while !stop.is_cancelled() {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        opens.fetch_add(1, Ordering::Relaxed);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}

fn wait_until(what: &str, secs: u64, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what} within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The instance metadata service as a Spot instance sees it: IMDSv2 tokens, and
/// `spot/instance-action` 404 until `notice` is set.
struct FakeImds {
    url: String,
    notice: Arc<AtomicBool>,
    polls: Arc<AtomicU64>,
}

impl FakeImds {
    fn start() -> FakeImds {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let notice = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        let (n, p) = (notice.clone(), polls.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut token = false;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    token |= h
                        .to_ascii_lowercase()
                        .starts_with("x-aws-ec2-metadata-token:");
                }
                let (status, body) = if line.starts_with("PUT /latest/api/token") {
                    ("200 OK", "a-session-token".to_string())
                } else if !token {
                    ("401 Unauthorized", String::new())
                } else if line.starts_with("GET /latest/meta-data/spot/instance-action") {
                    p.fetch_add(1, Ordering::Relaxed);
                    if n.load(Ordering::Relaxed) {
                        (
                            "200 OK",
                            r#"{"action": "terminate", "time": "2026-12-07T23:59:00Z"}"#.into(),
                        )
                    } else {
                        ("404 Not Found", String::new())
                    }
                } else {
                    ("404 Not Found", String::new())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeImds { url, notice, polls }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_interruption_notice_drains_the_worker_within_the_notice() {
    const CLIENTS: u64 = 40;
    let imds = FakeImds::start();
    let (_leaders, seeds) = Node::leader_pair(&[]);
    let w1 = Node::worker(&NodeSpec::new("worker-1", &seeds));
    let spot_flags = [
        "--imds-url",
        &imds.url,
        "--imds-poll-secs",
        "1",
        "--drain-seconds",
        "4",
    ];
    let mut w2 = Node::worker(&NodeSpec {
        extra: &spot_flags,
        ..NodeSpec::new("worker-2", &seeds)
    });
    let lb = RoundRobin::start(&[w1.public.unwrap(), w2.public.unwrap()]);
    let opens = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(client(lb.addr, opens.clone(), stop.clone()));
    }
    wait_until("every client connected", 30, || {
        active(&w1) + active(&w2) == CLIENTS
    });
    wait_until("the worker polls the metadata service", 10, || {
        imds.polls.load(Ordering::Relaxed) > 0
    });
    let on_spot = active(&w2);
    assert!(on_spot > 0, "round robin put nobody on the Spot worker");

    let told = Instant::now();
    imds.notice.store(true, Ordering::Relaxed);
    let status = w2.proc.wait_timeout(Duration::from_secs(110));
    let took = told.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "the Spot worker did not drain and exit within the notice ({status:?}):\n{}",
        w2.proc.output()
    );
    assert!(took < Duration::from_secs(120), "{took:?}");
    assert!(
        w2.proc.output().contains("Spot interruption notice"),
        "{}",
        w2.proc.output()
    );
    // Its clients came back through the load balancer to the other worker; none was lost.
    wait_until("every client on the remaining worker", 30, || {
        active(&w1) == CLIENTS
    });
    assert!(opens.load(Ordering::Relaxed) >= CLIENTS + on_spot);
    stop.cancel();
    while clients.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_in_removes_the_least_loaded_worker_and_moves_only_its_clients() {
    use ews_lambdas::terminate::{TerminateConfig, Terminator};

    let moto = ews_testkit::moto::Moto::start();
    let endpoint = moto.endpoint();
    let aws_env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let (i1, i2) = (
        ews_testkit::nodes::internal_addr(),
        ews_testkit::nodes::internal_addr(),
    );
    let publishing = [
        "--publish-metric",
        "--cloudwatch-interval-secs",
        "1",
        "--cloudwatch-deployment",
        "ews-e2e",
    ];
    let leader = |id: &str, internal, peer| {
        Node::leader(&NodeSpec {
            internal: Some(internal),
            extra: &publishing,
            env: &aws_env,
            ..NodeSpec::new(id, &[peer])
        })
    };
    let _leaders = [leader("leader-1", i1, i2), leader("leader-2", i2, i1)];
    let seeds = [i1, i2];
    // No rebalancing: the third worker, added later, keeps only what arrives after it.
    let quiet = ["--rebalance-rate", "0", "--drain-seconds", "3"];
    let worker = |id: &str, port| {
        Node::worker(&NodeSpec {
            extra: &quiet,
            public_port: Some(port),
            ..NodeSpec::new(id, &seeds)
        })
    };
    let ports = [free_port(), free_port(), free_port()];
    let w1 = worker("i-0000000000000aaa1", ports[0]);
    let w2 = worker("i-0000000000000aaa2", ports[1]);
    let upstreams: Vec<SocketAddr> = ports.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect();
    let lb = RoundRobin::start(&upstreams);
    let opens = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut clients = JoinSet::new();
    for _ in 0..60 {
        clients.spawn(client(lb.addr, opens.clone(), stop.clone()));
    }
    wait_until("60 clients on two workers", 30, || {
        active(&w1) + active(&w2) == 60
    });
    let mut w3 = worker("i-0000000000000aaa3", ports[2]);
    for _ in 0..15 {
        clients.spawn(client(lb.addr, opens.clone(), stop.clone()));
    }
    wait_until("75 clients on three workers", 30, || {
        active(&w1) + active(&w2) + active(&w3) == 75
    });
    let before = [active(&w1), active(&w2), active(&w3)];
    assert!(before[2] < before[0].min(before[1]), "{before:?}");

    // EC2 Auto Scaling asks the termination policy which of the three to remove.
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("eu-central-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let terminator = Terminator::new(
        TerminateConfig {
            namespace: "ElasticWS".into(),
            deployment: "ews-e2e".into(),
        },
        aws_sdk_cloudwatch::Client::new(&shared),
    );
    let ids = [
        "i-0000000000000aaa1",
        "i-0000000000000aaa2",
        "i-0000000000000aaa3",
    ];
    let candidates: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({"AvailabilityZone": "eu-central-1a", "InstanceId": id}))
        .collect();
    let request = serde_json::json!({
        "AutoScalingGroupName": "ews-e2e-workers",
        "CapacityToTerminate": [{"AvailabilityZone": "eu-central-1a", "Capacity": 1}],
        "Instances": candidates,
        "Cause": "SCALE_IN"
    });
    // The leader publishes every second; wait until each worker's present count is in
    // CloudWatch.
    let start = Instant::now();
    let chosen = loop {
        let counts = terminator.clients(&ids).await.expect("GetMetricData");
        // Gossip brings each worker's count to the leader within a second or two.
        let published: Vec<u64> = ids
            .iter()
            .map(|id| counts.get(*id).copied().unwrap_or(0))
            .collect();
        if published == before {
            let out = terminator
                .handle(lambda_runtime::LambdaEvent::new(
                    request.clone(),
                    lambda_runtime::Context::default(),
                ))
                .await
                .expect("a choice");
            break out.instance_ids;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the per-worker metric never reached CloudWatch: {counts:?}, not {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(chosen, ["i-0000000000000aaa3"]);

    // The lifecycle hook drains the chosen worker (SIGTERM, as ews-lifecycle-watch stops its
    // unit); its clients reconnect to the other two, whose own clients stay where they are.
    let opens_before = opens.load(Ordering::Relaxed);
    w3.proc.signal(libc::SIGTERM);
    let status = w3.proc.wait_timeout(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", w3.proc.output());
    wait_until("every client on the two workers left", 30, || {
        active(&w1) + active(&w2) == 75
    });
    let moved = opens.load(Ordering::Relaxed) - opens_before;
    assert_eq!(
        moved, before[2],
        "only the removed worker's clients reconnected"
    );
    assert!(active(&w1) >= before[0] && active(&w2) >= before[1]);
    stop.cancel();
    while clients.join_next().await.is_some() {}
}

//! Rebalancing behind a real round-robin load balancer (nginx, `least_conn` off): 240 clients on
//! two workers, a third worker joins; the first two shed sessions with 1012 `rebalance`, paced,
//! their clients reconnect through nginx, and the spread comes within the margin without any
//! worker going below the mean. Real `ews-leader`/`ews-worker` processes, reconnecting
//! tokio-tungstenite clients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use ews_testkit::free_port;
use ews_testkit::nginx::RoundRobin;
use ews_testkit::nodes::{internal_addr, Node, NodeSpec};
use futures_util::StreamExt;
use support::metric;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const CLIENTS: u64 = 240;
const MARGIN: f64 = 0.2;
const RATE: f64 = 20.0;

fn worker(id: &str, seeds: &[SocketAddr], public_port: Option<u16>) -> Node {
    Node::worker(&NodeSpec {
        extra: &["--rebalance-margin", "0.2", "--rebalance-rate", "20"],
        public_port,
        ..NodeSpec::new(id, seeds)
    })
}

/// Closes the clients saw: (code, reason).
type Closes = Arc<Mutex<Vec<(u16, String)>>>;

/// One client that stays connected through `lb` and reconnects (after 0–200 ms, as the client
/// libraries do after a 1012) whenever the server closes it, until `stop`.
async fn client(lb: SocketAddr, closes: Closes, stop: CancellationToken) {
    let url = format!("ws://{lb}/ws");
    while !stop.is_cancelled() {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new()));
                        closes.lock().unwrap().push((code, reason));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
            }
        }
        let pause = rand_ms(200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

fn rand_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos % max
}

fn active(nodes: &[&Node]) -> Vec<u64> {
    nodes
        .iter()
        .map(|n| metric(n, "ews_connections_active") as u64)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_gets_its_share_paced_and_nobody_goes_below_the_mean() {
    let (i1, i2) = (internal_addr(), internal_addr());
    let leader = |id: &str, internal, peer| {
        Node::leader(&NodeSpec {
            internal: Some(internal),
            ..NodeSpec::new(id, &[peer])
        })
    };
    let _leaders = [leader("leader-1", i1, i2), leader("leader-2", i2, i1)];
    let seeds = [i1, i2];
    let w1 = worker("worker-1", &seeds, None);
    let w2 = worker("worker-2", &seeds, None);
    // The third worker's address is in the load balancer from the start; until it listens nginx
    // passes its turn to the next worker.
    let w3_port = free_port();
    let w3_public: SocketAddr = ([127, 0, 0, 1], w3_port).into();
    let lb = RoundRobin::start(&[w1.public.unwrap(), w2.public.unwrap(), w3_public]);

    let closes: Closes = Arc::default();
    let stop = CancellationToken::new();
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(client(lb.addr, closes.clone(), stop.clone()));
    }
    let wait_until = |what: &str, cond: &dyn Fn() -> bool, secs: u64| {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "{what} within {secs} s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_until(
        "all clients on the first two workers",
        &|| active(&[&w1, &w2]).iter().sum::<u64>() == CLIENTS,
        60,
    );
    let before = active(&[&w1, &w2]);
    assert!(
        closes.lock().unwrap().is_empty(),
        "a balanced pair sheds nothing: {before:?}"
    );

    let joined = Instant::now();
    let w3 = worker("worker-3", &seeds, Some(w3_port));
    let nodes = [&w1, &w2, &w3];
    let mean = CLIENTS as f64 / 3.0;
    let within = || {
        let now = active(&nodes);
        now.iter().sum::<u64>() == CLIENTS && now.iter().all(|&c| c as f64 <= mean * (1.0 + MARGIN))
    };
    wait_until("the spread within the margin", &within, 90);
    // Settled: within the margin for longer than a worker waits before it sheds again (the last
    // reconnects may put one a client or two over the line for a check or two).
    let settled = Instant::now();
    let mut calm = Instant::now();
    while calm.elapsed() < Duration::from_secs(4) {
        if !within() {
            calm = Instant::now();
        }
        assert!(
            settled.elapsed() < Duration::from_secs(60),
            "never stays within the margin: {:?}",
            active(&nodes)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = active(&nodes);
    let elapsed = joined.elapsed().as_secs_f64();

    let shed: Vec<u64> = nodes
        .iter()
        .map(|n| metric(n, "ews_rebalanced_total") as u64)
        .collect();
    assert_eq!(
        shed[2], 0,
        "the new worker, below the mean, sheds nothing: {shed:?}"
    );
    for (i, &c) in after[..2].iter().enumerate() {
        assert!(
            c as f64 >= mean.floor(),
            "worker {} went below the mean: {after:?}",
            i + 1
        );
        // Paced: at most `RATE` a second on average, the jitter allowing up to twice that.
        assert!(
            shed[i] as f64 <= 2.0 * RATE * elapsed + 2.0,
            "worker {} shed {} in {elapsed:.1} s",
            i + 1,
            shed[i]
        );
        assert!(shed[i] > 0, "worker {} shed nothing: {shed:?}", i + 1);
    }
    let seen = closes.lock().unwrap().clone();
    assert_eq!(seen.len() as u64, shed.iter().sum::<u64>(), "{seen:?}");
    assert!(
        seen.iter()
            .all(|(code, reason)| *code == 1012 && reason == "rebalance"),
        "{seen:?}"
    );
    println!(
        "rebalanced {before:?} + a new worker -> {after:?}: {shed:?} sessions moved in {elapsed:.1} s"
    );
    stop.cancel();
    while clients.join_next().await.is_some() {}
}

/// 600 clients arriving evenly (round robin, 5 ms apart) on two workers: nothing is moved. A
/// worker compares its live count with its peer's, which is up to a second old, so a ramp looks
/// like an imbalance to a naive rule; shedding starts only on one that lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_even_ramp_moves_nobody() {
    let (leaders, seeds) = Node::leader_pair(&[]);
    let w1 = worker("worker-1", &seeds, None);
    let w2 = worker("worker-2", &seeds, None);
    let lb = RoundRobin::start(&[w1.public.unwrap(), w2.public.unwrap()]);
    let closes: Closes = Arc::default();
    let stop = CancellationToken::new();
    let mut clients = JoinSet::new();
    for _ in 0..600 {
        clients.spawn(client(lb.addr, closes.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    while active(&[&w1, &w2]).iter().sum::<u64>() < 600 {
        assert!(start.elapsed() < Duration::from_secs(60), "clients connect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Longer than the rule's sustain, and than the views' lag.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let shed: Vec<u64> = [&w1, &w2]
        .iter()
        .map(|n| metric(n, "ews_rebalanced_total") as u64)
        .collect();
    let seen = closes.lock().unwrap().clone();
    println!(
        "even ramp: {:?} clients, {shed:?} moved",
        active(&[&w1, &w2])
    );
    assert_eq!(shed, [0, 0], "{seen:?}");
    assert!(seen.is_empty(), "{seen:?}");
    stop.cancel();
    while clients.join_next().await.is_some() {}
    drop(leaders);
}

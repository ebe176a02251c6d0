//! Lifecycle records a backend can trust: real `ews-leader` and `ews-worker` processes with
//! `--lifecycle-events`, the built-in queue as the sink. A consumer that reads the queue and
//! keeps `ews_proto::lifecycle::OnlineTable` (the logic docs/lifecycle.md shows) ends with
//! exactly the sessions presence reports, per client and per node:
//!
//! - after a worker is killed with `kill -9` (its sessions end by the leader's `node_lost`) and
//!   another is drained with SIGTERM (each session writes its own `disconnected`, 1012), while
//!   their clients reconnect elsewhere;
//! - after a worker is frozen long enough to be written off (`node_lost`, `dead`) and then
//!   thaws: it hears it was written off, ends its sessions and exits, so it cannot hold
//!   sessions the consumer believes gone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod support;

use ews_http::args::Secret;
use ews_http::link::LinkKey;
use ews_proto::lifecycle::{Lifecycle, OnlineTable, SinkRecord};
use ews_testkit::nodes::{internal_addr, Node, NodeSpec};
use support::{serving_workers, Ws};

const SECRET: &str = "lifecycle-cluster-secret";
const JWT_SECRET: &str = "lifecycle-jwt-secret";
const ADMIN_TOKEN: &str = "lifecycle-admin-token";
const CLIENTS: usize = 10;

fn leader(id: &str, internal: SocketAddr, peer: SocketAddr, dir: &str) -> Node {
    Node::leader(&NodeSpec {
        internal: Some(internal),
        extra: &[
            "--queue-dir",
            dir,
            "--cluster-secret",
            SECRET,
            "--admin-token",
            ADMIN_TOKEN,
            "--lifecycle-events",
            "--node-lost-after-secs",
            "2",
            "--dead-node-grace-secs",
            "5",
        ],
        ..NodeSpec::new(id, &[peer])
    })
}

fn worker(id: &str, seeds: &[SocketAddr]) -> Node {
    Node::worker(&NodeSpec {
        extra: &[
            "--sink",
            "queue",
            "--lifecycle-events",
            "--cluster-secret",
            SECRET,
            "--admin-token",
            ADMIN_TOKEN,
            "--drain-seconds",
            "1",
            "--rebalance-rate",
            "0",
            "--dead-node-grace-secs",
            "5",
        ],
        jwt_hs256_secret: Some(JWT_SECRET),
        ..NodeSpec::new(id, seeds)
    })
}

fn wait_serving(from: &Node, want: &[&str]) {
    let start = Instant::now();
    loop {
        let serving = serving_workers(from, ADMIN_TOKEN);
        if serving == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} sees {serving:?}, not {want:?}",
            from.node_id
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn connect(w: &Node, client: &str) -> Ws {
    let url = format!(
        "ws://{}/ws?access_token={}",
        w.public.expect("a worker"),
        ews_testkit::jwt::client_token(JWT_SECRET, client, &[])
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("{client} to {}: {e}", w.node_id));
    ws
}

/// Waits for the server's close frame (or the end of the connection) on each socket.
async fn closed(sockets: Vec<Ws>) -> Vec<Option<u16>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut codes = Vec::new();
    for mut ws in sockets {
        let code = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("the session ends within 20 s");
        codes.push(code);
    }
    codes
}

/// The consumer: everything read from the queue so far, and the table built from it.
#[derive(Default)]
struct Consumer {
    records: Vec<Lifecycle>,
    table: OnlineTable,
}

impl Consumer {
    /// Reads (and deletes) what the active leader's queue holds now.
    async fn read(&mut self, leader: SocketAddr) {
        let key = LinkKey::derive(&Secret::new(SECRET));
        let credential = ews_queue::client::Credential::choose(Some(&key), None);
        let opts = ews_queue::client::ReadOptions {
            delete: true,
            idle: Some(Duration::from_millis(500)),
            max: None,
        };
        let url = format!("ws://{leader}/queue/events");
        let mut got = Vec::new();
        let read = ews_queue::client::read(&url, credential, opts, |_, body, _| {
            got.push(body);
            ews_queue::client::Taken::Take
        })
        .await;
        if let Err(e) = read {
            eprintln!("queue read: {e}");
        }
        for body in got {
            let record: SinkRecord = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("a sink record, not {body}: {e}"));
            self.table.apply(&record);
            if let SinkRecord::Lifecycle(l) = record {
                self.records.push(l);
            }
        }
    }

    /// Sessions per client and node, as the table has them.
    fn by_client(&self) -> BTreeMap<String, BTreeMap<String, usize>> {
        let mut out: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for (k, s) in self.table.sessions() {
            *out.entry(s.client_id.clone())
                .or_default()
                .entry(k.node.clone())
                .or_default() += 1;
        }
        out
    }

    fn node_lost(&self, node: &str) -> Option<(u64, String)> {
        self.records.iter().find_map(|r| match r {
            Lifecycle::NodeLost(n) if n.node == node => Some((n.generation, n.reason.clone())),
            _ => None,
        })
    }
}

/// Sessions per client and node, as presence (the leaders' front door) reports them; `None`
/// while a worker does not answer (a killed one, until membership forgets it: its dead-node
/// grace, 5 s here).
fn presence(door: SocketAddr) -> Option<BTreeMap<String, BTreeMap<String, usize>>> {
    let mut out = BTreeMap::new();
    for i in 0..CLIENTS {
        let client = format!("c{i}");
        let (code, v) = support::admin(
            door,
            ADMIN_TOKEN,
            "GET",
            &format!("/api/v1/presence?clientId={client}"),
            &serde_json::Value::Null,
        );
        if code != 200 {
            eprintln!("presence of {client}: {code} {v}");
            return None;
        }
        let nodes: BTreeMap<String, usize> = v["nodes"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(n, p)| Some((n.clone(), p["sessions"].as_u64()? as usize)))
            .filter(|(_, s)| *s > 0)
            .collect();
        if !nodes.is_empty() {
            out.insert(client, nodes);
        }
    }
    Some(out)
}

/// Reads the queue until the table equals presence and `until` holds, within 30 s.
async fn converge(
    consumer: &mut Consumer,
    queue: SocketAddr,
    door: SocketAddr,
    until: impl Fn(&Consumer) -> bool,
) -> BTreeMap<String, BTreeMap<String, usize>> {
    let start = Instant::now();
    loop {
        consumer.read(queue).await;
        let (table, now) = (consumer.by_client(), presence(door));
        if now.as_ref() == Some(&table) && until(consumer) {
            return table;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the consumer's table {table:?} is not presence {now:?} (records: {:?})",
            consumer.records
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_a_consumer_builds_from_lifecycle_records_equals_presence() {
    let (d1, d2) = (
        ews_testkit::Scratch::new("lifecycle-l1"),
        ews_testkit::Scratch::new("lifecycle-l2"),
    );
    let (i1, i2) = (internal_addr(), internal_addr());
    // Leaders choose by view: leader-1 (the lowest id) is active and hosts the queue.
    let l1 = leader("leader-1", i1, i2, &d1.arg());
    let _l2 = leader("leader-2", i2, i1, &d2.arg());
    let seeds = [i1, i2];
    let mut w1 = worker("worker-1", &seeds);
    let mut w2 = worker("worker-2", &seeds);
    wait_serving(&l1, &["worker-1", "worker-2"]);

    let mut on_w1 = Vec::new();
    let mut on_w2 = Vec::new();
    for i in 0..CLIENTS {
        let c = format!("c{i}");
        if i < CLIENTS / 2 {
            on_w1.push(connect(&w1, &c).await);
        } else {
            on_w2.push(connect(&w2, &c).await);
        }
    }
    let mut consumer = Consumer::default();
    let now = converge(&mut consumer, i1, l1.admin, |_| true).await;
    assert_eq!(now.len(), CLIENTS, "{now:?}");

    // kill -9: worker-1 writes nothing more; its clients reconnect to worker-2.
    w1.proc.kill();
    drop(on_w1);
    for i in 0..CLIENTS / 2 {
        on_w2.push(connect(&w2, &format!("c{i}")).await);
    }
    let now = converge(&mut consumer, i1, l1.admin, |c| {
        c.node_lost("worker-1").is_some()
    })
    .await;
    assert!(now.values().all(|n| n.keys().eq(["worker-2"])), "{now:?}");
    assert_eq!(consumer.node_lost("worker-1").unwrap().1, "dead");

    // SIGTERM: worker-2 drains, each session says goodbye (1012) and writes its end; its
    // clients reconnect to worker-3.
    let mut w3 = worker("worker-3", &seeds);
    wait_serving(&l1, &["worker-2", "worker-3"]);
    w2.proc.signal(libc::SIGTERM);
    let codes = closed(on_w2).await;
    assert!(codes.iter().all(|c| *c == Some(1012)), "{codes:?}");
    let mut on_w3 = Vec::new();
    for i in 0..CLIENTS {
        on_w3.push(connect(&w3, &format!("c{i}")).await);
    }
    assert!(w2.proc.wait_timeout(Duration::from_secs(20)).is_some());
    let now = converge(&mut consumer, i1, l1.admin, |c| {
        c.node_lost("worker-2").is_some()
    })
    .await;
    assert_eq!(now.len(), CLIENTS);
    assert!(now.values().all(|n| n.keys().eq(["worker-3"])), "{now:?}");
    assert_eq!(consumer.node_lost("worker-2").unwrap().1, "left");
    let drained: Vec<_> = consumer
        .records
        .iter()
        .filter_map(|r| match r {
            Lifecycle::Disconnected(s) if s.node == "worker-2" => Some((s.reason.clone(), s.code)),
            _ => None,
        })
        .collect();
    assert_eq!(drained.len(), CLIENTS, "{drained:?}");
    assert!(
        drained
            .iter()
            .all(|(r, c)| r.as_deref() == Some("draining") && *c == Some(1012)),
        "{drained:?}"
    );
    // Every generation numbered its records 1, 2, 3, ... with no gap.
    let mut seqs: BTreeMap<(String, u64), Vec<u64>> = BTreeMap::new();
    for r in &consumer.records {
        if let Lifecycle::Connected(s) | Lifecycle::Disconnected(s) = r {
            seqs.entry((s.node.clone(), s.generation))
                .or_default()
                .push(s.node_seq);
        }
    }
    for (g, mut s) in seqs {
        s.sort();
        assert_eq!(s, (1..=s.len() as u64).collect::<Vec<_>>(), "{g:?}");
    }

    // Frozen past --node-lost-after-secs, worker-3 is written off; thawed, it is told, ends
    // its sessions and exits (to come back as a new generation).
    w3.proc.signal(libc::SIGSTOP);
    let start = Instant::now();
    while consumer.node_lost("worker-3").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no node_lost for the frozen worker-3: {:?}",
            consumer.records
        );
        consumer.read(i1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(consumer.node_lost("worker-3").unwrap().1, "dead");
    w3.proc.signal(libc::SIGCONT);
    let status = w3
        .proc
        .wait_timeout(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("worker-3 still runs:\n{}", w3.proc.output()));
    assert!(!status.success(), "{}", w3.proc.output());
    assert!(
        w3.proc.output().contains("wrote this worker off as lost"),
        "{}",
        w3.proc.output()
    );
    let codes = closed(on_w3).await;
    assert_eq!(codes.len(), CLIENTS);
    let now = converge(&mut consumer, i1, l1.admin, |_| true).await;
    assert!(now.is_empty(), "{now:?}");
}

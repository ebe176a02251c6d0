//! The membership library in-process: real chitchat instances gossiping over loopback UDP.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ews_cluster::{ClusterView, JoinState, Membership, MembershipConfig, Role, Status};

const GOSSIP: Duration = Duration::from_millis(100);

fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
}

fn config(id: &str, role: Role, listen: SocketAddr, seeds: &[SocketAddr]) -> MembershipConfig {
    MembershipConfig {
        capacity: 10,
        gossip_interval: GOSSIP,
        seed_node_timeout: Duration::from_secs(1),
        join_give_up: Some(Duration::from_secs(30)),
        dead_node_grace: Duration::from_secs(30),
        ..MembershipConfig::new(id, role, seeds, listen)
    }
}

async fn until(what: &str, m: &Membership, cond: impl Fn(&ClusterView) -> bool) -> Duration {
    let start = Instant::now();
    let mut rx = m.watch_view();
    loop {
        if cond(&rx.borrow_and_update()) {
            return start.elapsed();
        }
        let left = Duration::from_secs(10).saturating_sub(start.elapsed());
        if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
            panic!("{what}: not within 10 s; view: {}", m.view().to_json());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_joins_reports_load_and_leaves() {
    let leader_addr = free_addr();
    let leader = Membership::start(config("leader-1", Role::Leader, leader_addr, &[]))
        .await
        .unwrap();
    let worker = Membership::start(config(
        "worker-1",
        Role::Worker,
        free_addr(),
        &[leader_addr],
    ))
    .await
    .unwrap();
    let mut joined = worker.join_state();
    tokio::time::timeout(
        Duration::from_secs(10),
        joined.wait_for(|s| *s == JoinState::Joined),
    )
    .await
    .expect("worker joins")
    .unwrap();
    until("worker up at the leader", &leader, |v| {
        v.member("worker-1")
            .is_some_and(|m| m.status == Status::Up && m.capacity == 10)
    })
    .await;
    // Nobody is active until a leader claims a term; then peers follow the claim.
    assert_eq!(worker.view().active_leader, None);
    assert_eq!(worker.view().first_leader.as_deref(), Some("leader-1"));
    leader.set_active(Some(1)).await;
    until("the claim heard", &worker, |v| {
        v.active_leader.as_deref() == Some("leader-1")
    })
    .await;
    assert_eq!(worker.active_leader_internal_addr(), Some(leader_addr));
    leader.set_active(None).await;
    until("the claim withdrawn", &worker, |v| {
        v.active_leader.is_none()
    })
    .await;

    worker.set_conns(7);
    until("conns gossiped", &leader, |v| v.cluster_connections == 7).await;

    worker.leave().await;
    let took = until("leaving seen", &leader, |v| {
        v.member("worker-1")
            .is_some_and(|m| m.status == Status::Leaving)
    })
    .await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    worker.shutdown().await;
    until("left worker dropped", &leader, |v| {
        v.member("worker-1").is_none()
    })
    .await;
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_without_answering_seeds_gives_up() {
    let mut cfg = config("worker-1", Role::Worker, free_addr(), &[free_addr()]);
    cfg.join_give_up = Some(Duration::from_millis(500));
    let worker = Membership::start(cfg).await.unwrap();
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), worker.gave_up())
        .await
        .expect("gives up");
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert_eq!(*worker.join_state().borrow(), JoinState::GaveUp);
    assert_eq!(
        worker.view().member("worker-1").map(|m| m.status),
        Some(Status::Joining)
    );
}

//! `ews-queue send`, the sender of the queue's three roles, against a real broker: a full queue
//! holds it back (no message goes out past what the broker acknowledged), and it resumes as a
//! receiver (`ews-queue read --delete`) drains the queue.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ews_testkit::{bin_path, free_port, queue_broker, Scratch};

#[test]
fn a_full_queue_holds_the_sender_back_until_a_receiver_drains_it() {
    let dir = Scratch::new("queue-send");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _broker = queue_broker(addr, dir.path(), &["--queue-max-depth", "5"]);
    let url = format!("ws://{addr}/queue/lines");

    let mut sender = Command::new(bin_path("ews-queue"))
        .args(["send", "--url", &url, "--window", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ews-queue send starts");
    let mut stdin = sender.stdin.take().expect("stdin");
    for n in 1..=20 {
        writeln!(stdin, "line {n}").expect("a line");
    }
    drop(stdin); // end of input: the sender finishes once all are acknowledged
    let acked = Arc::new(Mutex::new(0usize));
    let out = sender.stdout.take().expect("stdout");
    let counter = acked.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("sent ") {
                *counter.lock().unwrap() += 1;
            }
        }
    });
    let count = || *acked.lock().unwrap();

    // The broker takes five, then holds the rest: the sender waits, it does not fail or buffer.
    let until = Instant::now() + Duration::from_secs(10);
    while count() < 5 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(count(), 5, "acknowledged while the queue is full");
    assert!(
        sender.try_wait().expect("status").is_none(),
        "the sender waits"
    );

    // A receiver drains the queue: the sender resumes and finishes.
    let read = Command::new(bin_path("ews-queue"))
        .args([
            "read",
            "--url",
            &url,
            "--delete",
            "--max",
            "20",
            "--idle-ms",
            "3000",
        ])
        .output()
        .expect("ews-queue read runs");
    assert!(read.status.success(), "{read:?}");
    let lines = String::from_utf8_lossy(&read.stdout);
    assert_eq!(lines.lines().count(), 20, "{lines}");
    assert!(lines.contains("\"line 20\""), "{lines}");
    let status = sender.wait().expect("the sender ends");
    reader.join().expect("stdout read");
    assert!(status.success());
    assert_eq!(count(), 20);
}

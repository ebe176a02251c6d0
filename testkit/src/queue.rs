//! The built-in queue broker, `ews-queue`, as a real process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{bin_path, wait_for_http_ok, Proc};

/// Starts `ews-queue` on `addr` over the segment log in `dir` (with extra `args`) and waits for
/// its `/info`. Restarting on the same `addr` and `dir` recovers what the last process acked.
pub fn queue_broker(addr: SocketAddr, dir: &Path, args: &[&str]) -> Proc {
    let mut cmd = Command::new(bin_path("ews-queue"));
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--queue-dir")
        .arg(dir)
        .args(args);
    let proc = Proc::spawn("ews-queue", cmd);
    if let Err(e) = wait_for_http_ok(addr, "/info", Duration::from_secs(10)) {
        panic!("ews-queue did not start: {e}\n{}", proc.output());
    }
    proc
}

//! Test support shared by every integration test in the workspace.
//!
//! Each helper starts a real process on a free loopback port and returns a guard that kills it
//! (the whole process group) when dropped, so a failing test never leaves a server behind; scratch
//! directories are removed the same way.
//! Everything here is synchronous std code on purpose: it works the same from `#[test]` and
//! `#[tokio::test]`, and it never depends on the crate under test.

pub mod backend;
pub mod jwt;
pub mod lambda;
pub mod moto;
pub mod net;
pub mod netns;
pub mod nginx;
pub mod nodes;
pub mod proc;
pub mod queue;
pub mod redis;
pub mod scratch;
pub mod tansu;
pub mod tmpfs;

use std::path::PathBuf;

pub use net::{free_port, free_udp_port, http_get, wait_for_http_ok, wait_for_tcp, ws_open};
pub use proc::Proc;
pub use queue::queue_broker;
pub use scratch::Scratch;
pub use tmpfs::Tmpfs;

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Where `scripts/tools/*.sh` install test tools (virtualenvs, broker binaries, npm packages).
/// `EWS_TOOLS_DIR` overrides the default `<workspace>/.tools`.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("EWS_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools"))
}

/// Path of a workspace binary (`ews-worker`, `ews-leader`, ...) in the same target dir and profile
/// as the running test. `scripts/test.sh` builds all binaries before running tests; a test that
/// needs a binary of its own package should prefer `env!("CARGO_BIN_EXE_<name>")`.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test-binary>  ->  target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` first (scripts/test.sh builds every binary)",
        path.display()
    );
    path
}

/// Directory for process logs of this test run: `target/test-logs`.
pub fn log_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let dir = exe
        .ancestors()
        .nth(3)
        .map(|t| t.join("test-logs"))
        .unwrap_or_else(std::env::temp_dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

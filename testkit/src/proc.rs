//! Child processes that are always stopped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process in its own process group, killed with its group when dropped. Its stdout and
/// stderr go to `target/test-logs/<name>-<pid>.log`, printed on drop when the test is panicking.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` in a new process group with output captured to a log file.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let log = crate::log_dir().join(format!("{name}-{}-{}.log", std::process::id(), unique()));
        let out = File::create(&log).expect("create process log");
        let err = out.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process has written so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal to the process (not its group): `libc::SIGTERM`, `libc::SIGKILL`, ...
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on a pid we own; a stale pid at worst fails with ESRCH.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// `kill -9`, then reap.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.wait_timeout(Duration::from_secs(5));
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits until the log contains `prefix` and answers the word it starts (up to the next white
    /// space): the URL a standalone worker prints, with its token.
    pub fn wait_for_word(&self, prefix: &str, timeout: Duration) -> Result<String, String> {
        self.wait_for_output(prefix, timeout)?;
        let out = self.output();
        let at = out.find(prefix).unwrap_or_default();
        Ok(out[at..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string())
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(needle) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} never printed {needle:?}; log:\n{}",
                    self.name,
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: the child leads its own process group (process_group(0) above).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.name,
                self.log.display(),
                self.output()
            );
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

//! The broker: named queues under one data directory, each with its dead-letter queue.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::queue::{Queue, QueueConfig};
use crate::QueueError;

/// Suffix of a queue's dead-letter queue: messages of `events` that were delivered
/// `max_deliveries` times without being deleted move to `events-dlq`.
pub const DEAD_LETTER_SUFFIX: &str = "-dlq";

/// Named queues stored under one directory (one subdirectory per queue).
pub struct Broker {
    /// Held (flock) while the broker lives: two processes on one directory would corrupt it.
    _lock: std::fs::File,
    dir: PathBuf,
    defaults: QueueConfig,
    overrides: HashMap<String, QueueConfig>,
    queues: Mutex<HashMap<String, Queue>>,
    /// Queues (not counting dead-letter queues) this broker creates at most. Each holds a
    /// directory, a writer thread and descriptors: without a bound, a client naming ever new
    /// queues exhausts the process.
    max_queues: usize,
}

/// Queues a broker creates unless told otherwise.
pub const DEFAULT_MAX_QUEUES: usize = 100;

/// Whether `name` can name a queue: 1 to 64 of `[A-Za-z0-9_.-]`, not starting with a dot.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Takes an exclusive advisory lock on `dir/.lock`, failing at once if another process holds it.
fn lock_dir(dir: &std::path::Path) -> Result<std::fs::File, QueueError> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    // SAFETY: flock(2) on a descriptor we own; it is released when the file is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(QueueError::Locked(dir.display().to_string()));
    }
    Ok(file)
}

impl Broker {
    /// A broker over `dir`; every queue already stored there is recovered now, so its undeleted
    /// messages are redelivered without waiting for a client to name the queue.
    pub fn open(dir: impl Into<PathBuf>, defaults: QueueConfig) -> Result<Broker, QueueError> {
        Self::with_overrides(dir, defaults, HashMap::new())
    }

    /// Like [`Broker::open`], with settings for particular queues (e.g. a shorter visibility
    /// timeout for one queue).
    pub fn with_overrides(
        dir: impl Into<PathBuf>,
        defaults: QueueConfig,
        overrides: HashMap<String, QueueConfig>,
    ) -> Result<Broker, QueueError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let lock = lock_dir(&dir)?;
        let broker = Broker {
            _lock: lock,
            dir,
            defaults,
            overrides,
            queues: Mutex::new(HashMap::new()),
            max_queues: DEFAULT_MAX_QUEUES,
        };
        let mut existing = Vec::new();
        for entry in std::fs::read_dir(&broker.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if valid_name(&name) && !name.ends_with(DEAD_LETTER_SUFFIX) {
                existing.push(name);
            }
        }
        for name in existing {
            broker.queue(&name)?;
        }
        Ok(broker)
    }

    /// Sets how many queues this broker creates at most (those already stored are always
    /// recovered, even past it).
    pub fn max_queues(mut self, max: usize) -> Broker {
        self.max_queues = max;
        self
    }

    /// Every open queue (each one stored is opened at start) with its depth: what another node
    /// has to take over from this one.
    pub fn depths(&self) -> Vec<(String, usize)> {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, usize)> =
            queues.iter().map(|(n, q)| (n.clone(), q.depth())).collect();
        out.sort();
        out
    }

    /// The queue called `name`, opened (and recovered) on first use.
    pub fn queue(&self, name: &str) -> Result<Queue, QueueError> {
        if !valid_name(name) {
            return Err(QueueError::BadName(name.to_string()));
        }
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(name) {
            return Ok(q.clone());
        }
        let primaries = queues
            .keys()
            .filter(|n| !n.ends_with(DEAD_LETTER_SUFFIX))
            .count();
        let stored = self.dir.join(name).is_dir();
        if primaries >= self.max_queues && !stored {
            return Err(QueueError::TooManyQueues(self.max_queues));
        }
        let dead_letters = if name.ends_with(DEAD_LETTER_SUFFIX) {
            None
        } else {
            let dlq_name = format!("{name}{DEAD_LETTER_SUFFIX}");
            match queues.get(&dlq_name) {
                Some(q) => Some(q.clone()),
                None => {
                    let q = self.open_one(&dlq_name, None)?;
                    queues.insert(dlq_name, q.clone());
                    Some(q)
                }
            }
        };
        let q = self.open_one(name, dead_letters)?;
        queues.insert(name.to_string(), q.clone());
        Ok(q)
    }

    fn open_one(&self, name: &str, dead_letters: Option<Queue>) -> Result<Queue, QueueError> {
        let mut config = self.overrides.get(name).unwrap_or(&self.defaults).clone();
        if dead_letters.is_none() {
            // A dead-letter queue keeps what it holds until someone deletes it.
            config.max_deliveries = 0;
        }
        Queue::open(name, &self.dir.join(name), config, dead_letters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_serves_one_broker_at_a_time() {
        let dir = std::env::temp_dir().join(format!("ews-queue-lock-{}", std::process::id()));
        let first = Broker::open(&dir, QueueConfig::default()).unwrap();
        assert!(matches!(
            Broker::open(&dir, QueueConfig::default()),
            Err(QueueError::Locked(_))
        ));
        drop(first);
        assert!(Broker::open(&dir, QueueConfig::default()).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn queues_past_the_cap_are_refused_and_the_others_still_serve() {
        let dir = std::env::temp_dir().join(format!("ews-queue-cap-{}", std::process::id()));
        let b = Broker::open(&dir, QueueConfig::default())
            .unwrap()
            .max_queues(3);
        for name in ["a", "b", "c"] {
            b.queue(name).unwrap();
        }
        assert!(matches!(b.queue("d"), Err(QueueError::TooManyQueues(3))));
        // Existing queues (and their dead-letter queues) are still served.
        assert!(b.queue("a").is_ok());
        assert!(b.queue("a-dlq").is_ok());
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names() {
        assert!(valid_name("events"));
        assert!(valid_name("a-b_c.1"));
        assert!(!valid_name(""));
        assert!(!valid_name(".."));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}

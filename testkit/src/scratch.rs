//! Scratch directories that are always removed.

use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, removed with its contents when dropped. When the
/// test is panicking it is kept and its path printed, so the queue segments, event files and
/// logs a failure left behind can be read.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `<tmp>/ews-<name>-<pid>-<n>`, unique within and across test processes.
    pub fn new(name: &str) -> Scratch {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ews-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create scratch dir {}: {e}", path.display()));
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a `String`, for command-line arguments.
    pub fn arg(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

/// Derefs to its path, so `&scratch` goes wherever a `&Path` does.
impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- scratch dir kept: {} ----", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_on_drop_and_unique() {
        let (a, b) = (Scratch::new("t"), Scratch::new("t"));
        assert_ne!(a.path(), b.path());
        std::fs::write(a.join("f"), b"x").expect("write");
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists());
        assert!(b.path().is_dir());
    }
}

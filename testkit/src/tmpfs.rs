//! A small tmpfs mount: a disk that fills up on purpose.

use std::path::Path;
use std::process::Command;

use crate::Scratch;

/// A tmpfs of a fixed size mounted on a scratch directory; unmounted (lazily, so a process
/// still holding a file cannot keep it) and removed when dropped.
pub struct Tmpfs {
    dir: Scratch,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` bytes. Needs root (CAP_SYS_ADMIN), as the CI machines run.
    pub fn mount(name: &str, bytes: u64) -> Tmpfs {
        let dir = Scratch::new(name);
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a {bytes}-byte tmpfs on {} failed (this test needs root): {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

//! File-descriptor limits. Every session is one socket, so the open-files limit is the node's
//! real connection ceiling: raise the soft limit to the hard one and derive capacity from it,
//! keeping a reserve for the listener, the sink, logs and the 503 answers given past capacity.

/// Raises RLIMIT_NOFILE's soft limit to its hard limit and returns the resulting soft limit.
pub fn raise_nofile() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read a plain struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "could not raise RLIMIT_NOFILE");
        }
    }
    // rlim_t is u64 here but not on every target.
    #[allow(clippy::unnecessary_cast)]
    Ok(lim.rlim_cur as u64)
}

/// Sessions a node with `nofile` open files can hold: all but a reserve of 64 + 2 %.
pub fn max_connections_for(nofile: u64) -> usize {
    let reserve = 64 + nofile / 50;
    nofile.saturating_sub(reserve).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_keeps_a_reserve() {
        assert_eq!(max_connections_for(20_000), 19_536);
        assert_eq!(max_connections_for(1024), 940);
        assert_eq!(max_connections_for(10), 1);
    }

    #[test]
    fn raising_never_lowers() {
        let before = raise_nofile().expect("getrlimit");
        assert!(raise_nofile().expect("getrlimit") >= before);
    }
}

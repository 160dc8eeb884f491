//! The open-file limit: raised to the hard limit at start, and checked before a step that
//! needs many sockets.

use std::io;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The soft and hard `RLIMIT_NOFILE` of this process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileLimit {
    /// Soft limit (what applies now).
    pub(crate) soft: u64,
    /// Hard limit (the ceiling the soft limit can be raised to without privileges).
    pub(crate) hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limits now in force.
/// Child processes (the servers under test) inherit them.
pub(crate) fn raise_nofile() -> io::Result<FileLimit> {
    let (mut soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        soft = hard;
    }
    Ok(FileLimit { soft, hard })
}

/// File descriptors this process has open now.
pub(crate) fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count() as u64)
        .unwrap_or(0)
}

/// Descriptors kept free for everything that is not a client socket (runtime, pipes, the
/// server's listener and stdio, ...).
pub(crate) const RESERVE: u64 = 128;

/// Whether `n` more client sockets fit under the limit, in this process and in a server child
/// (which inherits the same limit and holds one socket per client). `Err` is the reason.
pub(crate) fn check_sockets(n: u64) -> Result<(), String> {
    let limit = raise_nofile().map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    if n + open_fds() + RESERVE > limit.soft {
        return Err(format!("RLIMIT_NOFILE hard limit {}", limit.hard));
    }
    Ok(())
}

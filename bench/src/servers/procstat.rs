//! CPU time and resident memory of a process, read from `/proc/PID/stat`, and its open file
//! descriptors (`/proc/PID/fd`).

use std::io;

/// One reading of a process's resource use.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User + system CPU time so far, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size now, in bytes.
    pub rss_bytes: u64,
}

impl ProcStats {
    /// Reads `/proc/PID/stat` (CPU) and `/proc/PID/status` (`VmRSS`).
    pub fn of(pid: u32) -> io::Result<ProcStats> {
        Self::read(&format!("/proc/{pid}"))
    }

    /// This process (the load generator).
    pub fn current() -> io::Result<ProcStats> {
        Self::read("/proc/self")
    }

    fn read(dir: &str) -> io::Result<ProcStats> {
        let cpu_seconds = cpu_seconds(&std::fs::read_to_string(format!("{dir}/stat"))?)?;
        let rss_bytes = rss_bytes(&std::fs::read_to_string(format!("{dir}/status"))?)?;
        Ok(ProcStats {
            cpu_seconds,
            rss_bytes,
        })
    }
}

/// Open file descriptors of process `pid` (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// utime + stime (fields 14 and 15 of `stat`), in seconds.
fn cpu_seconds(stat: &str) -> io::Result<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count fields after
    // its closing parenthesis, where field 3 starts.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| io::Error::other("no ')' in /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad field {n} in /proc stat")))
    };
    // Clock ticks: sysconf(_SC_CLK_TCK) is 100 on every Linux ABI in use.
    Ok((field(14)? + field(15)?) as f64 / 100.0)
}

/// `VmRSS` of `status`, in bytes.
fn rss_bytes(status: &str) -> io::Result<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS in /proc status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_process_descriptors() {
        assert!(open_fds(std::process::id()).unwrap() >= 3);
    }

    #[test]
    fn parses_a_stat_line_with_spaces_in_the_name() {
        let line = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 99 123456 300 18446744073709551615";
        assert!((cpu_seconds(line).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(
            rss_bytes("Name:\tx\nVmRSS:\t  1234 kB\n").unwrap(),
            1234 * 1024
        );
    }
}

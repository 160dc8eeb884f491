//! A `redis-server` child process on a free 127.0.0.1 port, the broker of the multi-node
//! scenarios. Killed when dropped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Longest a `redis-server` may take to answer `PING`.
const START_WAIT: Duration = Duration::from_secs(15);

/// A running `redis-server` (no persistence), killed on drop.
#[derive(Debug)]
pub(crate) struct RedisProcess {
    /// Its port on 127.0.0.1.
    port: u16,
    /// Its process id.
    pid: u32,
    /// The child process (`kill_on_drop`).
    child: Child,
}

impl RedisProcess {
    /// Starts `redis-server` on a free port and waits (up to 15 s) until it answers `PING`.
    pub(crate) async fn start() -> Result<RedisProcess, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for redis-server: {e}"))?
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start redis-server (is it installed?): {e}"))?;
        let pid = child.id().ok_or("redis-server ended at once")?;
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            if ping(port).await {
                return Ok(RedisProcess { port, pid, child });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer PING in 15 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its URL, `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its process id, for `/proc/PID/stat`.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops it (SIGKILL) and waits for it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Whether a server on `port` answers an inline `PING` with `+PONG` within a second.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_answers_and_dies_on_drop() {
        let redis = RedisProcess::start().await.expect("redis-server starts");
        let port: u16 = redis.url().rsplit(':').next().unwrap().parse().unwrap();
        assert!(ping(port).await);
        let pid = redis.pid();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(redis);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!ping(port).await, "killed on drop");
    }
}

//! A `nats-server` child process on a free 127.0.0.1 port, the NATS broker of the multi-node
//! scenarios (`--brokers nats`). Killed when dropped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Longest a `nats-server` may take to answer `PING`.
const START_WAIT: Duration = Duration::from_secs(15);

/// A running standalone `nats-server` (no JetStream, no cluster), killed on drop.
#[derive(Debug)]
pub(crate) struct NatsProcess {
    /// Its client port on 127.0.0.1.
    port: u16,
    /// Its process id.
    pid: u32,
    /// The child process (`kill_on_drop`).
    child: Child,
}

impl NatsProcess {
    /// Starts `nats-server` on a free port and waits (up to 15 s) until it greets a client
    /// with `INFO` and answers `PING`.
    pub(crate) async fn start() -> Result<NatsProcess, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for nats-server: {e}"))?
            .port();
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-n", &format!("bench-{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start nats-server (is it installed?): {e}"))?;
        let pid = child.id().ok_or("nats-server ended at once")?;
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            if answers(port).await {
                return Ok(NatsProcess { port, pid, child });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("nats-server on port {port} exited: {status}"));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "nats-server on port {port} did not answer PING in 15 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its URL, `nats://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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

/// Whether a server on `port` greets a connection with `INFO` and answers `PING` with
/// `PONG` within two seconds.
async fn answers(port: u16) -> bool {
    let probe = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        stream.read_line(&mut line).await.ok()?;
        if !line.starts_with("INFO ") {
            return None;
        }
        stream
            .get_mut()
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
            .await
            .ok()?;
        loop {
            line.clear();
            if stream.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            if line.starts_with("PONG") {
                return Some(());
            }
        }
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Some(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_answers_and_dies_on_drop() {
        let nats = NatsProcess::start().await.expect("nats-server starts");
        let port: u16 = nats.url().rsplit(':').next().unwrap().parse().unwrap();
        assert!(answers(port).await);
        let pid = nats.pid();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(nats);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!answers(port).await, "killed on drop");
    }
}

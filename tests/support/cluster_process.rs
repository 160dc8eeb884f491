//! The `cluster` example as a separate OS process, for the multi-process tests of each
//! broker: started with the broker's flags, its listening address read from its output, and
//! killed on drop.

use std::time::Duration;

use tokio::io::AsyncBufReadExt;

/// The `cluster` example binary, built by `cargo test` (all targets) next to the tests.
fn cluster_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .map(|dir| dir.join("examples").join("cluster"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("target/debug/examples/cluster not found: run `cargo build --examples --all-features` first")
        })
}

/// One running `cluster` process.
pub struct ClusterProcess {
    child: tokio::process::Child,
    /// Its WebSocket address, `host:port`.
    pub addr: String,
}

impl Drop for ClusterProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl ClusterProcess {
    /// Kills the process at once (SIGKILL), as a crash would: it never says goodbye.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Its WebSocket address, parsed.
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        self.addr.parse().expect("a host:port address")
    }

    /// Starts node `name` on a free port with `broker_args` (e.g. `--broker redis --redis URL`)
    /// and waits until it listens; its later output goes to stderr, labelled with its name.
    pub async fn start(name: &str, broker_args: &[&str]) -> ClusterProcess {
        let mut child = tokio::process::Command::new(cluster_binary())
            .args(["--name", name, "--port", "0"])
            .args(broker_args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the cluster example");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on ws://").nth(1) {
                    return rest.split('/').next().map(str::to_owned);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!("cluster process {name} did not start listening (built with all features?)")
        });
        let label = name.to_owned();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{label}] {line}");
            }
        });
        ClusterProcess { child, addr }
    }
}

//! Cluster nodes of the real Node.js package `websocket-cross-server-adapter` as separate OS
//! processes: `node tests/js_package/server.js`, which serves crosswire's demo event set with
//! the package's own methods on a Redis shared with other nodes. Started on a free port, its
//! listening address read from its output, killed on drop.
//!
//! Needs `node` on the `PATH` and the package installed in `target/js-package`, which
//! `scripts/test.sh` does; without them a test fails saying so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// What to do when the Node.js side is missing.
const INSTALL_HINT: &str = "run scripts/test.sh, which installs the Node.js package, or by hand \
     (from the workspace root, with ../shared/js-package beside it; needs Node.js 18 or later \
     and npm): mkdir -p target && rm -rf target/js-package && cp -r ../shared/js-package/package \
     target/js-package && npm ci --omit=dev --prefix target/js-package --no-audit --no-fund";

/// Longest a node may take to listen and have its Redis subscriptions acknowledged.
const START_WAIT: Duration = Duration::from_secs(20);

/// The workspace root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The server script, `tests/js_package/server.js`.
pub fn server_script() -> PathBuf {
    root().join("tests/js_package/server.js")
}

/// The installed package, `target/js-package`.
pub fn package_dir() -> PathBuf {
    root().join("target/js-package")
}

/// Panics with [`INSTALL_HINT`] unless `node` runs and the package and its dependencies are
/// installed in `target/js-package`.
pub async fn require_package() {
    let version = Command::new("node").arg("--version").output().await;
    match version {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`node --version` failed ({}): {INSTALL_HINT}", out.status),
        Err(error) => panic!("Node.js (`node`) not found ({error}): {INSTALL_HINT}"),
    }
    for file in ["index.js", "node_modules/ioredis/package.json"] {
        let path = package_dir().join(file);
        assert!(
            path.exists(),
            "{} is missing: {INSTALL_HINT}",
            path.display()
        );
    }
}

/// One running Node.js package node.
pub struct JsPackageNode {
    child: Child,
    addr: SocketAddr,
    name: String,
}

impl Drop for JsPackageNode {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl JsPackageNode {
    /// Starts node `name` on a free port, on the Redis at `redis_url`, and waits until it
    /// accepts connections with its Redis subscriptions in place; its later output (stderr)
    /// goes to the test's output, labelled with its name.
    ///
    /// `json` turns the package's Redis data compression off (JSON instead of msgpack on the
    /// wire); `nodes` is how many replies its `askAll` waits for (the package cannot know how
    /// many nodes there are).
    pub async fn start(name: &str, redis_url: &str, json: bool, nodes: usize) -> JsPackageNode {
        require_package().await;
        let port = super::free_port();
        let mut command = Command::new("node");
        command
            .arg(server_script())
            .args([
                "--name",
                name,
                "--port",
                &port.to_string(),
                "--redis",
                redis_url,
            ])
            .args(["--nodes", &nodes.to_string()]);
        if json {
            command.arg("--json");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("start node {name}: {error}: {INSTALL_HINT}"));
        let stderr = child.stderr.take().expect("piped stderr");
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(START_WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("listening on ws://") {
                    return rest.trim_end_matches('/').parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!("Node.js package node {name} did not start listening (see its output above)")
        });
        let label = name.to_owned();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{label}] stdout: {line}");
            }
        });
        JsPackageNode {
            child,
            addr,
            name: name.to_owned(),
        }
    }

    /// Its WebSocket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its server name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kills the process at once (SIGKILL), as a crash would: it never says goodbye.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

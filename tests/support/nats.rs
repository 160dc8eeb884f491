//! Real `nats-server` processes for tests: [`NatsServer`] starts one on a free port, can kill
//! it (SIGKILL, as a crash would) and restart it on the same port, and kills it on drop.
//! [`NatsCluster`] starts several servers joined by routes and waits until the routes are up.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub use super::free_port;

/// Longest a `nats-server` may take to become ready (or a cluster to connect its routes).
const START_WAIT: Duration = Duration::from_secs(15);
/// Pause between two readiness probes.
const POLL: Duration = Duration::from_millis(20);

/// Route settings of a server that is a member of a [`NatsCluster`].
#[derive(Clone, Debug)]
struct Routes {
    cluster_name: String,
    cluster_port: u16,
    monitor_port: u16,
    peers: Vec<u16>,
}

/// A `nats-server` child process on 127.0.0.1.
pub struct NatsServer {
    port: u16,
    name: String,
    routes: Option<Routes>,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl NatsServer {
    /// Starts a standalone server on a free port and waits until it answers.
    pub async fn start() -> NatsServer {
        let mut server = NatsServer::not_started();
        server.restart().await;
        server
    }

    /// A port for a server that is not started yet (see [`NatsServer::restart`]).
    pub fn not_started() -> NatsServer {
        let port = free_port();
        NatsServer {
            port,
            name: format!("nats-{port}"),
            routes: None,
            child: None,
            log: Arc::default(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The HTTP monitoring port (cluster members only).
    pub fn monitor_port(&self) -> Option<u16> {
        self.routes.as_ref().map(|r| r.monitor_port)
    }

    /// Kills the server at once (SIGKILL), as a crash would, and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// (Re)starts the server on the same port(s) and waits until it answers `PING`.
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-n", &self.name]);
        if let Some(routes) = &self.routes {
            let peers: Vec<String> = routes
                .peers
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            command
                .args(["-m", &routes.monitor_port.to_string()])
                .args(["--cluster_name", &routes.cluster_name])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", routes.cluster_port),
                ])
                .args(["--routes", &peers.join(",")])
                .arg("--no_advertise=true");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server (install it: apt-get install -y nats-server)");
        // Keep its log (for failure messages) and never let it block on a full pipe.
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        self.log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                if log.len() < 64 * 1024 {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let port = self.port;
        let ready = tokio::time::timeout(START_WAIT, async {
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("nats-server exited with {status}"));
                }
                if answers(port).await {
                    return Ok(());
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {START_WAIT:?}")));
        self.child = Some(child);
        if let Err(why) = ready {
            panic!(
                "nats-server on port {port} did not become ready: {why}\n{}",
                self.log()
            );
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The number of routes the server has up, from its monitoring endpoint.
    pub async fn num_routes(&self) -> Option<u64> {
        let port = self.monitor_port()?;
        let body = http_get(port, "/routez").await?;
        serde_json::from_str::<Value>(&body).ok()?["num_routes"].as_u64()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

/// Whether a server on `port` accepts a connection, greets it with `INFO` and answers `PING`.
pub async fn answers(port: u16) -> bool {
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

/// The first `INFO` line a server on `port` sends to a new connection (without its CRLF).
pub async fn info_line(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to nats-server");
    let mut line = String::new();
    tokio::time::timeout(START_WAIT, BufReader::new(stream).read_line(&mut line))
        .await
        .expect("nats-server greets in time")
        .expect("read from nats-server");
    line.trim_end().to_owned()
}

/// A minimal HTTP/1.0 GET on 127.0.0.1; the body, or `None` on any failure.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let request = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.lines().next()?;
        status.contains(" 200 ").then(|| body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), request)
        .await
        .ok()
        .flatten()
}

/// Several `nats-server` processes, each routed to all the others.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` routed servers and waits until each has a route to every other one.
    pub async fn start(n: usize) -> NatsCluster {
        assert!(n >= 2, "a cluster needs two servers at least");
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let cluster_name = format!("cw-test-{}", cluster_ports[0]);
        let mut servers = Vec::new();
        for (i, &cluster_port) in cluster_ports.iter().enumerate() {
            let mut server = NatsServer::not_started();
            server.routes = Some(Routes {
                cluster_name: cluster_name.clone(),
                cluster_port,
                monitor_port: free_port(),
                peers: cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &p)| p)
                    .collect(),
            });
            server.restart().await;
            servers.push(server);
        }
        let cluster = NatsCluster { servers };
        cluster.wait_for_routes().await;
        cluster
    }

    /// Waits until every server reports a route to each of the others.
    pub async fn wait_for_routes(&self) {
        let want = self.servers.len() as u64 - 1;
        let up = tokio::time::timeout(START_WAIT, async {
            loop {
                let mut all = true;
                for server in &self.servers {
                    all &= server.num_routes().await.is_some_and(|n| n >= want);
                }
                if all {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        if up.is_err() {
            let logs: Vec<String> = self
                .servers
                .iter()
                .map(|s| format!("--- nats-server {} ---\n{}", s.port(), s.log()))
                .collect();
            panic!(
                "the NATS routes did not come up within {START_WAIT:?}\n{}",
                logs.join("\n")
            );
        }
    }

    pub fn url(&self, i: usize) -> String {
        self.servers[i].url()
    }
}

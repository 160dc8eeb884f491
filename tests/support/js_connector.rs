//! Clients of the real Node.js package's own JavaScript connector (`WebSocketConnector` of
//! `websocket-cross-server-adapter`), many of them in ONE Node.js process
//! (`node tests/js_package/connectors.js`), driven with JSON lines on its stdin and reporting
//! JSON lines on its stdout. [`JsConnectorClient`] offers the API of
//! [`TestClient`](super::client::TestClient) for the demo event set, so a test of a mixed
//! cluster can use the package's own clients.
//!
//! Needs `node` on the `PATH` and the package installed in `target/js-package`, which
//! `scripts/test.sh` does; without them a test fails saying so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::client::QUIET;
use super::WAIT;

/// Longest the Node.js process may take to load the package and say it is ready.
const START_WAIT: Duration = Duration::from_secs(20);

/// The driver script, `tests/js_package/connectors.js`.
pub fn connectors_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js_package/connectors.js")
}

/// The report lines of each client by name, until its [`JsConnectorClient`] takes them.
type Routes = Arc<Mutex<HashMap<String, UnboundedSender<Value>>>>;

/// What the clients of one process share: the command writer and the routing table.
struct Shared {
    /// The process's stdin, one JSON command a line.
    stdin: tokio::sync::Mutex<ChildStdin>,
    /// Where the reader task sends each client's lines.
    routes: Routes,
}

impl Shared {
    /// Writes `command` as one line to the process.
    async fn send(&self, command: &Value) {
        let mut line = command.to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        if let Err(error) = stdin.write_all(line.as_bytes()).await {
            panic!("connectors process: cannot send {command}: {error}");
        }
        let _ = stdin.flush().await;
    }
}

/// One Node.js process hosting the connector clients; killed on drop.
pub struct JsConnectors {
    /// The process (`kill_on_drop`).
    child: Child,
    /// Shared with the clients.
    shared: Arc<Shared>,
}

impl Drop for JsConnectors {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts the Node.js process and waits until it has loaded the package.
pub async fn start() -> JsConnectors {
    super::js_package::require_package().await;
    let ws = super::js_package::package_dir().join("node_modules/ws/package.json");
    assert!(
        ws.exists(),
        "{} is missing: install the package as scripts/test.sh does",
        ws.display()
    );
    let mut child = Command::new("node")
        .arg(connectors_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("start node {}: {error}", connectors_script().display()));
    let stderr = child.stderr.take().expect("piped stderr");
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[connectors] {line}");
        }
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(START_WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v["kind"] == "ready" => return true,
                _ => eprintln!("[connectors] stdout before ready: {line}"),
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        ready,
        "the connectors process did not get ready (see its output above)"
    );
    let routes: Routes = Arc::default();
    let table = routes.clone();
    // The reader: each line to its client's channel; the others to the test's output. When the
    // process ends, the table is dropped and every client's channel closes.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                eprintln!("[connectors] stdout: {line}");
                continue;
            };
            let route = value["client"]
                .as_str()
                .and_then(|name| table.lock().expect("routes").get(name).cloned());
            match route {
                Some(tx) => {
                    let _ = tx.send(value);
                }
                None => eprintln!("[connectors] unrouted: {line}"),
            }
        }
        table.lock().expect("routes").clear();
    });
    let stdin = child.stdin.take().expect("piped stdin");
    JsConnectors {
        child,
        shared: Arc::new(Shared {
            stdin: tokio::sync::Mutex::new(stdin),
            routes,
        }),
    }
}

impl JsConnectors {
    /// Starts the Node.js process, as [`start`].
    pub async fn start() -> JsConnectors {
        start().await
    }

    /// Creates client `name` connecting to `url` (automatic reconnection off, heartbeat on)
    /// and waits for its `open` event; panics if it closes or fails first.
    pub async fn connect(&self, name: &str, url: &str) -> JsConnectorClient {
        let (tx, rx) = unbounded_channel();
        let previous = self
            .shared
            .routes
            .lock()
            .expect("routes")
            .insert(name.to_owned(), tx);
        assert!(previous.is_none(), "connector client {name} exists already");
        let mut client = JsConnectorClient {
            name: name.to_owned(),
            shared: self.shared.clone(),
            lines: rx,
            next_ref: 0,
        };
        client
            .shared
            .send(&json!({ "op": "connect", "client": name, "url": url }))
            .await;
        let line = client.next(&format!("open of {url}")).await;
        assert_eq!(
            line["kind"], "open",
            "connector client {name} ({url}) did not open: {line}"
        );
        client
    }

    /// Connects client `id` to `addr` with `?id=ID` and returns once a `say` request is
    /// answered with its echo and no push, as [`TestClient::served`](super::client::TestClient::served).
    pub async fn served(&self, addr: SocketAddr, id: &str) -> JsConnectorClient {
        self.served_as(id, addr, id).await
    }

    /// Like [`served`](Self::served), with client name `name` in the process (a client that
    /// comes back after its node went away is a new connector of the same socket id).
    pub async fn served_as(&self, name: &str, addr: SocketAddr, id: &str) -> JsConnectorClient {
        let mut client = self.connect(name, &format!("ws://{addr}/?id={id}")).await;
        let (reply, pushes) = client.request("say", json!("hello")).await;
        assert_eq!(reply["echo"], "hello", "connector client {id} is served");
        assert!(
            pushes.is_empty(),
            "connector client {id} got unexpected pushes: {pushes:?}"
        );
        client
    }
}

/// One `WebSocketConnector` in the Node.js process, with the API of
/// [`TestClient`](super::client::TestClient). Dropping it only stops routing its reports: its
/// connection stays open until [`JsConnectorClient::close`] or the process ends.
pub struct JsConnectorClient {
    /// Its name in the process (the socket id for [`JsConnectors::served`]).
    name: String,
    /// The process's command writer and routing table.
    shared: Arc<Shared>,
    /// Its report lines, in order.
    lines: UnboundedReceiver<Value>,
    /// The `ref` of its next request.
    next_ref: u64,
}

impl Drop for JsConnectorClient {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.shared.routes.lock() {
            routes.remove(&self.name);
        }
    }
}

impl JsConnectorClient {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next report line within `wait`, or `None`; panics if the process is gone.
    async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        match tokio::time::timeout(wait, self.lines.recv()).await {
            Err(_) => None,
            Ok(Some(line)) => Some(line),
            Ok(None) => panic!(
                "connector client {}: the connectors process is gone",
                self.name
            ),
        }
    }

    /// The next report line; panics after [`WAIT`], naming what was awaited.
    async fn next(&mut self, awaited: &str) -> Value {
        match self.next_within(WAIT).await {
            Some(line) => line,
            None => panic!(
                "connector client {}: no {awaited} within {WAIT:?}",
                self.name
            ),
        }
    }

    /// Sends `emit(event, payload, callback)` through the connector and waits for the
    /// callback: returns the reply payload and the pushes delivered before it, as
    /// `{"event", "payload"}` frames, in order (as [`TestClient::request`](super::client::TestClient::request)).
    pub async fn request(&mut self, event: &str, payload: Value) -> (Value, Vec<Value>) {
        self.next_ref += 1;
        let reference = self.next_ref;
        let command = json!({
            "op": "request", "client": self.name, "event": event, "payload": payload,
            "ref": reference,
        });
        self.shared.send(&command).await;
        let mut pushes = Vec::new();
        loop {
            let awaited = format!("reply to {event} (ref {reference})");
            let line = self.next(&awaited).await;
            match line["kind"].as_str() {
                Some("reply") if line["ref"] == reference => {
                    return (line["payload"].clone(), pushes)
                }
                Some("push") => {
                    pushes.push(json!({ "event": line["event"], "payload": line["payload"] }))
                }
                _ => panic!(
                    "connector client {}: expected {awaited}, got {line}",
                    self.name
                ),
            }
        }
    }

    /// Sends `emit(event, payload)` without a callback.
    pub async fn emit(&mut self, event: &str, payload: Value) {
        let command = json!({
            "op": "emit", "client": self.name, "event": event, "payload": payload,
        });
        self.shared.send(&command).await;
    }

    /// The next push `(event, payload)` a listener got; panics on anything else.
    pub async fn recv_push(&mut self) -> (String, Value) {
        let line = self.next("push").await;
        match line["kind"].as_str() {
            Some("push") => (
                line["event"].as_str().unwrap_or_default().to_owned(),
                line["payload"].clone(),
            ),
            _ => panic!(
                "connector client {}: expected a push, got {line}",
                self.name
            ),
        }
    }

    /// Asserts that nothing is reported for [`QUIET`]; `who` names the client in the failure.
    pub async fn assert_silent(&mut self, who: &str) {
        if let Some(line) = self.next_within(QUIET).await {
            panic!("{who} should have received nothing, got {line}");
        }
    }

    /// Waits for the connector's `close` event, skipping everything before it; returns its
    /// code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            let line = self.next("close").await;
            if line["kind"] == "close" {
                let code = line["code"].as_u64().and_then(|c| u16::try_from(c).ok());
                let code = code.unwrap_or_else(|| {
                    panic!("connector client {}: close without code: {line}", self.name)
                });
                return (code, line["reason"].as_str().unwrap_or_default().to_owned());
            }
        }
    }

    /// Closes with the connector's `manualClose()` (close code 4001, "client manual close")
    /// and waits until the closing handshake is over.
    pub async fn close(mut self) {
        let command = json!({ "op": "close", "client": self.name });
        self.shared.send(&command).await;
        loop {
            let line = self.next("end of manualClose").await;
            if line["kind"] == "closed" {
                return;
            }
        }
    }
}

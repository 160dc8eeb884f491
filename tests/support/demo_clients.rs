//! Clients of the demo event set (`crosswire::demo`, tests/js_package/server.js) of either
//! kind, the Rust [`TestClient`] or the Node.js package's own connector
//! ([`JsConnectorClient`]), and the checks the cluster tests make with a group of them.

use futures_util::future::join_all;
use serde_json::{json, Value};

use super::client::TestClient;
use super::js_connector::JsConnectorClient;

/// A demo client of either kind.
#[allow(clippy::large_enum_variant)] // a handful per test
pub enum AnyClient {
    /// A raw WebSocket client in the test process.
    Rust(TestClient),
    /// A `WebSocketConnector` of the Node.js package, in the connectors process.
    Js(JsConnectorClient),
}

impl AnyClient {
    /// Sends a request and waits for its reply: the reply's payload and the pushes that came
    /// before it (`{event, payload}` frames).
    pub async fn request(&mut self, event: &str, payload: Value) -> (Value, Vec<Value>) {
        match self {
            AnyClient::Rust(client) => client.request(event, payload).await,
            AnyClient::Js(client) => client.request(event, payload).await,
        }
    }

    /// The next push: its event and payload.
    pub async fn recv_push(&mut self) -> (String, Value) {
        match self {
            AnyClient::Rust(client) => client.recv_push().await,
            AnyClient::Js(client) => client.recv_push().await,
        }
    }

    /// Asserts that nothing arrives for `QUIET`; `who` names the client in the failure.
    pub async fn assert_silent(&mut self, who: &str) {
        match self {
            AnyClient::Rust(client) => client.assert_silent(who).await,
            AnyClient::Js(client) => client.assert_silent(who).await,
        }
    }

    /// Waits for the connection to close: its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        match self {
            AnyClient::Rust(client) => client.expect_close().await,
            AnyClient::Js(client) => client.expect_close().await,
        }
    }
}

/// Demo clients bound as socket ids "1", "2", ... (`clients.0[i]` is id `i + 1`).
pub struct Clients(pub Vec<AnyClient>);

impl Clients {
    /// Client `from` sends the demo's `command`; the reply says it was sent, and exactly the
    /// clients at `receivers` get its `say` push, each once; then every client is silent.
    pub async fn command_reaches(&mut self, from: usize, command: Value, receivers: &[usize]) {
        let action = command["action"].as_str().expect("an action").to_owned();
        let push = json!({ "action": action, "msg": command["msg"] });
        let (reply, early) = self.0[from].request("command", command.clone()).await;
        assert_eq!(
            reply,
            json!({ "msg": format!("Message sent successfully [action:{action}] ") }),
            "reply to {command} from client {}",
            from + 1
        );
        assert!(early.len() <= 1, "client {} got {early:?}", from + 1);
        for (i, client) in self.0.iter_mut().enumerate() {
            let got = if i == from && !early.is_empty() {
                let frame = &early[0];
                let event = frame["event"].as_str().unwrap_or_default().to_owned();
                (event, frame["payload"].clone())
            } else if receivers.contains(&i) {
                client.recv_push().await
            } else {
                continue;
            };
            assert!(
                receivers.contains(&i),
                "client {} got {got:?} ({command})",
                i + 1
            );
            assert_eq!(
                got,
                ("say".to_owned(), push.clone()),
                "client {} ({command})",
                i + 1
            );
        }
        self.all_silent(&action).await;
    }

    /// Asserts that no client receives anything more (for `QUIET`, all at once).
    pub async fn all_silent(&mut self, after: &str) {
        let checks = self.0.iter_mut().enumerate().map(|(i, client)| {
            let who = format!("client {} after {after}", i + 1);
            async move { client.assert_silent(&who).await }
        });
        join_all(checks).await;
    }

    /// Every client joins room `room` of the demo's namespace.
    pub async fn join_room(&mut self, room: &str) {
        for (i, client) in self.0.iter_mut().enumerate() {
            let (reply, pushes) = client.request("joinRoom", json!({ "roomId": room })).await;
            let joined = json!({ "msg": format!("Successfully joined the roomId:{room}") });
            assert_eq!(reply, joined, "client {}", i + 1);
            assert!(pushes.is_empty(), "client {} got {pushes:?}", i + 1);
        }
    }

    /// Client `from` asks every node `demo:whoami` (waiting for as many replies as `names`)
    /// and must hear from exactly `names`.
    pub async fn ask_all(&mut self, from: usize, names: &[&str]) {
        let expect = names.len();
        let (reply, pushes) = self.0[from]
            .request("askAll", json!({ "expect": expect }))
            .await;
        let mut sorted = names.to_vec();
        sorted.sort_unstable();
        assert_eq!(
            reply,
            json!({ "names": sorted }),
            "askAll from client {}",
            from + 1
        );
        assert!(pushes.is_empty(), "client {} got {pushes:?}", from + 1);
    }

    /// Client `from` asks only the nodes `names` `demo:whoami` and must hear from each.
    pub async fn ask_nodes(&mut self, from: usize, names: &[&str]) {
        let request = json!({ "expect": names.len(), "nodes": names });
        let (reply, pushes) = self.0[from].request("askAll", request).await;
        let mut sorted = names.to_vec();
        sorted.sort_unstable();
        assert_eq!(
            reply,
            json!({ "names": sorted }),
            "askAll {names:?} from client {}",
            from + 1
        );
        assert!(pushes.is_empty(), "client {} got {pushes:?}", from + 1);
    }
}

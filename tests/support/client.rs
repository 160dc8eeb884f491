//! A real WebSocket client (tokio-tungstenite, a different implementation than the server's)
//! speaking the JSON protocol as the JavaScript connector does.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::WAIT;

/// What a client received.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A text frame, parsed as JSON when it is JSON.
    Json(Value),
    /// A text frame that is not JSON (e.g. the heartbeat echo).
    Text(String),
    /// The server closed the connection.
    Closed(u16, String),
}

pub struct TestClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_callback: u64,
}

impl TestClient {
    /// Connects to `url` (e.g. `ws://127.0.0.1:9000/?id=1`).
    pub async fn connect(url: &str) -> TestClient {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        TestClient {
            ws,
            next_callback: 0,
        }
    }

    /// Connects to `addr` with `?id=ID`.
    pub async fn with_id(addr: std::net::SocketAddr, id: &str) -> TestClient {
        TestClient::connect(&format!("ws://{addr}/?id={id}")).await
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned()))
            .await
            .expect("send failed");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes))
            .await
            .expect("send failed");
    }

    /// Sends `{"event": E, "payload": P}`.
    pub async fn emit(&mut self, event: &str, payload: Value) {
        let frame = json!({ "event": event, "payload": payload });
        self.send_text(&frame.to_string()).await;
    }

    /// Sends a request with a fresh callbackId and waits for its reply, skipping pushes
    /// (which are returned as well, in order).
    pub async fn request(&mut self, event: &str, payload: Value) -> (Value, Vec<Value>) {
        self.next_callback += 1;
        let id = format!("cb{}", self.next_callback);
        let frame = json!({ "event": event, "payload": payload, "callbackId": id });
        self.send_text(&frame.to_string()).await;
        let mut pushes = Vec::new();
        loop {
            match self.recv().await {
                Received::Json(v) if v["callbackId"] == json!(id) => {
                    return (v["payload"].clone(), pushes)
                }
                Received::Json(v) => pushes.push(v),
                other => panic!("expected reply to {id}, got {other:?}"),
            }
        }
    }

    /// The next frame or close; panics after [`WAIT`].
    pub async fn recv(&mut self) -> Received {
        self.recv_within(WAIT)
            .await
            .expect("nothing received in time")
    }

    /// The next frame or close within `wait`, or `None`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Received> {
        loop {
            let next = match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return None,
                Ok(next) => next,
            };
            return Some(match next {
                None => Received::Closed(1006, String::new()),
                Some(Err(_)) => Received::Closed(1006, String::new()),
                Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                    Ok(value) => Received::Json(value),
                    Err(_) => Received::Text(text),
                },
                Some(Ok(Message::Close(frame))) => match frame {
                    Some(f) => Received::Closed(u16::from(f.code), f.reason.into_owned()),
                    None => Received::Closed(1005, String::new()),
                },
                Some(Ok(_)) => continue, // ping/pong/binary
            });
        }
    }

    /// The next push `{"event", "payload"}`; panics on anything else.
    pub async fn recv_push(&mut self) -> (String, Value) {
        match self.recv().await {
            Received::Json(v) if v["event"].is_string() => (
                v["event"].as_str().unwrap_or_default().to_owned(),
                v["payload"].clone(),
            ),
            other => panic!("expected a push, got {other:?}"),
        }
    }

    /// Waits for the server to close; returns code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.recv().await {
                Received::Closed(code, reason) => return (code, reason),
                _ => continue,
            }
        }
    }

    /// Closes from the client side with `code`.
    pub async fn close(mut self, code: u16) {
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "bye".into(),
            }))
            .await;
        // Drain until the server's close echo arrives.
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }
}

/// Helpers added for the single-server, bad-input and attach-mode tests.
impl TestClient {
    /// Connects to `url`, returning the handshake error instead of panicking (e.g. an HTTP 401
    /// answered before any WebSocket exists).
    pub async fn try_connect(
        url: &str,
    ) -> Result<TestClient, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")?;
        Ok(TestClient {
            ws,
            next_callback: 0,
        })
    }

    /// The next frame or close before `deadline`, or `None`. Unlike [`TestClient::recv_within`],
    /// protocol pings (answered automatically while reading) do not extend the wait.
    pub async fn recv_until(&mut self, deadline: tokio::time::Instant) -> Option<Received> {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::timeout(wait, self.recv_within(wait))
            .await
            .ok()
            .flatten()
    }

    /// Waits for the server to close, then keeps reading so that the close echo goes out and
    /// the server sees a complete closing handshake; returns code and reason.
    pub async fn expect_close_then_drain(mut self) -> (u16, String) {
        let closed = self.expect_close().await;
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
        closed
    }
}

/// How long a client listens to make sure that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(200);

/// Helpers for clients of a demo server (`crosswire::demo`).
impl TestClient {
    /// Connects with `?id=ID` and returns once a `say` request is answered: connection
    /// handlers finish before the first message is read, so the client is bound by then.
    pub async fn served(addr: std::net::SocketAddr, id: &str) -> TestClient {
        let mut client = TestClient::with_id(addr, id).await;
        let (reply, pushes) = client.request("say", json!("hello")).await;
        assert_eq!(reply["echo"], "hello", "client {id} is served");
        assert!(
            pushes.is_empty(),
            "client {id} got unexpected pushes: {pushes:?}"
        );
        client
    }

    /// Asserts that nothing arrives for [`QUIET`]; `who` names the client in the failure.
    pub async fn assert_silent(&mut self, who: &str) {
        if let Some(frame) = self.recv_within(QUIET).await {
            panic!("{who} should have received nothing, got {frame:?}");
        }
    }
}

//! Log spans: everything logged for one client connection carries its `conn` span (with its
//! socket id once bound), and cross-server work its `cross` span, so that filtering logs by
//! socket id or event tells one client's story.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use crosswire::memory::MemoryHub;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{system, Node};
use serde_json::json;
use tokio::sync::mpsc;
use tracing_subscriber::fmt::MakeWriter;

use support::client::TestClient;
use support::WAIT;

/// Formatted log output, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The captured line holding `message`.
    fn line(&self, message: &str) -> String {
        let text = self.text();
        text.lines()
            .find(|line| line.contains(message))
            .unwrap_or_else(|| panic!("no line logged {message:?}; captured:\n{text}"))
            .to_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn subscriber(captured: &Captured, filter: &str) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .finish()
}

/// Node `a` serves WebSocket clients with the demo set (which binds `?id=`); node `b` answers
/// the cross-server event `ping`. Both log from their handlers.
async fn two_nodes() -> (Node, Node, WsServer) {
    let hub = MemoryHub::new();
    let a = Node::builder()
        .server_name("a")
        .broker(hub.broker())
        .build()
        .await
        .expect("node a");
    let b = Node::builder()
        .server_name("b")
        .broker(hub.broker())
        .build()
        .await
        .expect("node b");
    crosswire::demo::install(&a);
    a.on_system(system::Connection, |_socket| async {
        tracing::info!("the connection handler ran");
    });
    a.on("shout", |ev| async move {
        tracing::info!("hello from the handler");
        // Waiting: the rest runs on a task of its own.
        tokio::task::yield_now().await;
        tracing::info!("the handler waited");
        let asked = ev
            .node()
            .emit_cross("ping", &())
            .to(["b"])
            .timeout(WAIT)
            .on_reply(|reply| async move {
                tracing::info!(?reply, "a reply came");
            })
            .await;
        assert!(asked.is_ok(), "{asked:?}");
        let result = ev.node().emit_cross("ping", &()).to(["b"]).timeout(WAIT);
        let result = result.collect().await.expect("collected");
        assert!(result.success, "{result:?}");
        ev.reply(&"heard").expect("reply queued");
    });
    b.on_cross("ping", |ev| async move {
        tracing::info!("hello from the cross handler");
        tokio::task::yield_now().await;
        tracing::info!("the cross handler waited");
        ev.reply(&"pong").await.expect("pong");
    });
    let server = WsServer::bind("127.0.0.1:0", a.clone(), WsConfig::default())
        .await
        .expect("server binds a loopback port");
    (a, b, server)
}

#[tokio::test(flavor = "current_thread")]
async fn a_clients_logs_carry_its_connection_span_and_socket_id() {
    let captured = Captured::default();
    let _default = tracing::subscriber::set_default(subscriber(&captured, "info"));
    let (a, _b, server) = two_nodes().await;
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    a.on_system(system::Close, move |event| {
        tracing::info!("the close handler ran");
        let _ = closed_tx.send(event.socket_id.clone());
        async {}
    });

    let mut client = TestClient::with_id(server.local_addr(), "u7").await;
    let (reply, _) = client.request("shout", json!("hi")).await;
    assert_eq!(reply, "heard");
    client.close(1000).await;
    let closed_id = tokio::time::timeout(WAIT, closed.recv())
        .await
        .expect("the close handlers ran")
        .expect("channel open");
    assert_eq!(closed_id.as_deref(), Some("u7"));

    // Connection handlers run in the span, after the bind recorded the socket id.
    let line = captured.line("the connection handler ran");
    assert!(line.contains("conn{node=a conn="), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(line.contains("socket_id=\"u7\"}"), "{line}");
    // A client event handler: its first poll, and what it does after waiting on its own task.
    for message in [
        "hello from the handler",
        "the handler waited",
        "the close handler ran",
    ] {
        let line = captured.line(message);
        assert!(line.contains("socket_id=\"u7\"}"), "{line}");
    }
    // The emit's replies, gathered in its `cross` span, inside the client's.
    let line = captured.line("a reply came");
    // (`fmt` appends a field recorded after the span started: `callback`, `socket_id`.)
    assert!(
        line.contains("socket_id=\"u7\"}:cross{node=a event=ping targets=b callback="),
        "{line}"
    );
    // The receiving node's handler, in its own `cross` span.
    for message in ["hello from the cross handler", "the cross handler waited"] {
        let line = captured.line(message);
        assert!(
            line.contains("cross{node=b event=ping sender=a callback="),
            "{line}"
        );
    }

    server.shutdown().await;
}

/// An `EnvFilter` directive on the span's socket id (recorded at bind time) selects one
/// client's logs.
#[tokio::test(flavor = "current_thread")]
async fn an_env_filter_on_the_socket_id_selects_one_client() {
    let captured = Captured::default();
    let filter = "warn,[conn{socket_id=u7}]=info";
    let _default = tracing::subscriber::set_default(subscriber(&captured, filter));
    let (_a, _b, server) = two_nodes().await;
    for id in ["u8", "u7"] {
        let mut client = TestClient::with_id(server.local_addr(), id).await;
        let (reply, _) = client.request("shout", json!("hi")).await;
        assert_eq!(reply, "heard");
    }
    let text = captured.text();
    let handler_lines: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("hello from the handler"))
        .collect();
    assert_eq!(handler_lines.len(), 1, "{text}");
    assert!(handler_lines[0].contains("socket_id=\"u7\""), "{text}");
    server.shutdown().await;
}

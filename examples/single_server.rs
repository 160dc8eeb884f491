//! One WebSocket server, no broker: the JavaScript package's first chapter.
//!
//! Run with `cargo run --example single_server -- --port 9000`, then connect a client with
//! `?id=...` (for example `cargo run --example client`, or any WebSocket client). A client
//! without an id is closed with 4011. `say` requests get a reply, `joinRoom` puts the client in
//! room `testRoom/1000`; every 15 s the server broadcasts `serverSay`, every 10 s it sends
//! `roomSay` to the room.

use std::error::Error;
use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{close_codes, system, Node};
use serde_json::json;

/// One WebSocket server, no broker.
#[derive(Parser)]
#[command(name = "single_server", args_override_self = true)]
struct Args {
    /// The port to listen on (127.0.0.1)
    #[arg(long, value_name = "P", default_value_t = 9000)]
    port: u16,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let Args { port } = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    let node = Node::builder().build().await?;

    let n = node.clone();
    node.on_system(system::Connection, move |socket| {
        let n = n.clone();
        async move {
            println!("client connected: {:?}", socket.request().params());
            // Authenticate here (e.g. verify a token). For the demo, trust the `id` parameter.
            match socket.request().param("id").map(str::to_owned) {
                Some(id) => {
                    if let Err(error) = n.bind(&socket, &id) {
                        println!("bind failed: {error}");
                    }
                }
                None => socket.close(close_codes::AUTH_FAILED, "Auth failure"),
            }
        }
    });
    // No cleanup needed on close: the binding and its rooms are removed automatically.
    node.on_system(system::Close, |close| async move {
        println!(
            "client {:?} disconnected ({} {})",
            close.socket_id, close.code, close.reason
        );
    });

    node.on("say", |ev| async move {
        println!("say from {:?}: {}", ev.socket().socket_id(), ev.value());
        if ev.wants_reply() {
            let _ = ev.reply(&json!({ "msg": "I am a callback for your say event" }));
        }
    });

    let n = node.clone();
    node.on("joinRoom", move |ev| {
        let n = n.clone();
        async move {
            if let Some(id) = ev.socket().socket_id() {
                if let Err(error) = n.join_room("testRoom", "1000", &id).await {
                    println!("join failed: {error}");
                }
            }
            if ev.wants_reply() {
                let _ = ev.reply(&json!({ "msg": "JoinRoom successfully" }));
            }
        }
    });

    let server = WsServer::bind(("127.0.0.1", port), node.clone(), WsConfig::default()).await?;
    println!("listening on ws://{}/?id=1", server.local_addr());

    let mut broadcast = tokio::time::interval(Duration::from_secs(15));
    let mut room = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = broadcast.tick() => {
                node.broadcast().emit("serverSay", &json!({ "msg": "I'm sending this message to everyone" })).await?;
            }
            _ = room.tick() => {
                let msg = json!({ "msg": "This is a message sent to the test room" });
                node.to_room("testRoom", "1000").emit("roomSay", &msg).await?;
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    server.shutdown().await;
    Ok(())
}

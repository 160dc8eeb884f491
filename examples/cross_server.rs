//! Cross-server events between nodes without WebSocket clients: the JavaScript package's
//! second chapter (`cserver.js` and `sender.js`), here as five servers and one sender in one
//! process on the in-memory broker.
//!
//! Run with `cargo run --example cross_server`.
//!
//! The sender emits `say` three ways: without a callback, with a callback called once per
//! reply (with the count still expected, then a timeout notice), and awaiting the collected
//! result.

use std::error::Error;
use std::time::Duration;

use crosswire::memory::MemoryHub;
use crosswire::{CrossReply, Node};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt().init();
    let hub = MemoryHub::new();

    let mut servers = Vec::new();
    for name in ["serverA", "serverB", "serverC", "serverD", "serverE"] {
        let node = Node::builder()
            .server_name(name)
            .broker(hub.broker())
            .build()
            .await?;
        install_say(&node);
        servers.push(node);
    }
    let sender = Node::builder()
        .server_name("senderA")
        .broker(hub.broker())
        .build()
        .await?;
    install_say(&sender);

    // 1. Fire and forget, to every node (the sender's own handler runs too, locally).
    sender
        .emit_cross("say", &json!({ "content": "Hi everyone, I am senderA" }))
        .send()
        .await?;

    // 2. A callback per reply: expect 3 of the 6 handlers, the rest come too late.
    let done = tokio::sync::oneshot::channel::<()>();
    let mut done_tx = Some(done.0);
    sender
        .emit_cross(
            "say",
            &json!({ "content": "please respond with your callback" }),
        )
        .expect(3)
        .on_reply(move |reply| {
            match reply {
                CrossReply::Reply {
                    server,
                    data,
                    remaining,
                } => {
                    println!("callback: {server} answered {data}; still expected: {remaining}");
                    if remaining == 0 {
                        if let Some(tx) = done_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
                CrossReply::TimedOut { unresponded } => {
                    println!("callback: timed out, {unresponded} did not respond");
                }
            }
            async {}
        })
        .await?;
    let _ = done.1.await;

    // 3. Await the collected result: every node except the sender, with a short timeout.
    let result = sender
        .emit_cross(
            "say",
            &json!({ "content": "please respond for the promise" }),
        )
        .except_self(true)
        .expect(servers.len())
        .timeout(Duration::from_secs(2))
        .collect()
        .await?;
    println!(
        "collected: success={} unresponded={} responses={:?}",
        result.success, result.unresponded, result.responses
    );
    Ok(())
}

fn install_say(node: &Node) {
    let name = node.server_name().to_owned();
    node.on_cross("say", move |ev| {
        let name = name.clone();
        async move {
            println!("{name} received say from {}: {}", ev.sender(), ev.value());
            if ev.wants_reply() {
                let reply =
                    json!({ "msg": format!("Hi, this is server {name} responding to you") });
                if let Err(error) = ev.reply(&reply).await {
                    println!("{name} could not reply: {error}");
                }
            }
        }
    });
}

//! Cross-server events between nodes without WebSocket clients: the JavaScript package's
//! second chapter (`cserver.js` and `sender.js`), here as five servers and one sender in one
//! process on the in-memory broker.
//!
//! Run with `cargo run --example cross_server`.
//!
//! The sender emits `say` three ways: without a callback, with a callback called once per
//! reply (with the count still expected, then a timeout notice), and awaiting the collected
//! result.
//!
//! On Redis, as the JavaScript package's `cserver.js` / `sender.js`, one node per process:
//! `cargo run --features redis --example cross_server -- --redis-server --name serverA`
//! (start several with different names), then
//! `cargo run --features redis --example cross_server -- --redis-sender --name senderA`.
//! `--redis URL` (repeatable) picks the Redis servers; default `redis://127.0.0.1:6379`.
//! The sender's `--expect N` (default 1) is how many servers' replies it collects.
//!
//! On NATS the same with `--nats-server` / `--nats-sender` and `--features nats`;
//! `--nats URL` (repeatable: servers of one NATS cluster) defaults to `nats://127.0.0.1:4222`.

use std::error::Error;
use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use crosswire::memory::MemoryHub;
use crosswire::{CrossReply, Node};
use serde_json::json;

/// Cross-server events between nodes without WebSocket clients: five servers and one sender in
/// one process on the in-memory broker, or one node per process on Redis or NATS.
#[derive(Parser)]
#[command(name = "cross_server", args_override_self = true)]
struct Args {
    /// On Redis: this process is one server, waiting for `say` and answering it
    #[arg(long)]
    redis_server: bool,
    /// On Redis: this process emits `say` to every node and prints the replies
    #[arg(long)]
    redis_sender: bool,
    /// On NATS: this process is one server, waiting for `say` and answering it
    #[arg(long)]
    nats_server: bool,
    /// On NATS: this process emits `say` to every node and prints the replies
    #[arg(long)]
    nats_sender: bool,
    /// This process's node (default serverA, or senderA for a sender)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// How many servers' replies the sender collects
    #[arg(long, value_name = "N", default_value_t = 1)]
    expect: usize,
    /// A Redis server (repeatable; default redis://127.0.0.1:6379)
    #[arg(long = "redis", value_name = "URL")]
    redis: Vec<String>,
    /// A server of the NATS cluster (repeatable; default nats://127.0.0.1:4222)
    #[arg(long = "nats", value_name = "URL")]
    nats: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    if args.redis_server || args.redis_sender {
        return redis_mode(args).await;
    }
    if args.nats_server || args.nats_sender {
        return nats_mode(args).await;
    }
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
                CrossReply::ShutDown { unresponded } => {
                    println!("callback: this node shut down, {unresponded} did not respond");
                }
                other => println!("callback: {other:?}"),
            }
            async {}
        })
        .await?;
    let _ = done.1.await;

    // 3. Await the collected result: every node except the sender (the cluster's members,
    //    counted automatically), with a short timeout.
    let result = sender
        .emit_cross(
            "say",
            &json!({ "content": "please respond for the promise" }),
        )
        .except_self(true)
        .timeout(Duration::from_secs(2))
        .collect()
        .await?;
    println!(
        "collected: success={} unresponded={} missing={:?} responses={:?}",
        result.success, result.unresponded, result.missing, result.responses
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

/// The command line of the one-node-per-process modes: the node's name, whether it is the
/// sender, how many replies the sender waits for, and the broker URLs.
#[cfg(any(feature = "redis", feature = "nats"))]
struct ProcessArgs {
    name: String,
    sender: bool,
    expect: usize,
    urls: Vec<String>,
}

#[cfg(any(feature = "redis", feature = "nats"))]
impl ProcessArgs {
    fn new(name: Option<String>, sender: bool, expect: usize, urls: Vec<String>) -> ProcessArgs {
        let name = name.unwrap_or_else(|| if sender { "senderA" } else { "serverA" }.into());
        println!("Using configured values - serverName: {name}");
        ProcessArgs {
            name,
            sender,
            expect,
            urls,
        }
    }
}

/// `--redis-server` waits for `say` and answers it; `--redis-sender` emits `say` to every
/// node and prints the replies.
#[cfg(feature = "redis")]
async fn redis_mode(args: Args) -> Result<(), Box<dyn Error>> {
    use crosswire::redis::{RedisBroker, DEFAULT_REDIS_URL};

    let mut p = ProcessArgs::new(args.name, args.redis_sender, args.expect, args.redis);
    if p.urls.is_empty() {
        p.urls.push(DEFAULT_REDIS_URL.into());
    }
    let broker = p
        .urls
        .iter()
        .fold(RedisBroker::builder(), |b, url| b.url(url))
        .server_name(&p.name)
        .on_health_change(|e| println!("Node health status changed: {e:?}"))
        .on_subscription_error(|e| println!("onRedisSubscriptionError: {e:?}"))
        .build()
        .await?;
    let node = Node::builder()
        .server_name(&p.name)
        .broker(broker)
        .build()
        .await?;
    say_mode(node, &p).await
}

/// `--nats-server` waits for `say` and answers it; `--nats-sender` emits `say` to every
/// node and prints the replies.
#[cfg(feature = "nats")]
async fn nats_mode(args: Args) -> Result<(), Box<dyn Error>> {
    use crosswire::nats::NatsBroker;

    let p = ProcessArgs::new(args.name, args.nats_sender, args.expect, args.nats);
    let broker = p
        .urls
        .iter()
        .fold(NatsBroker::builder(), |b, url| b.url(url))
        .server_name(&p.name)
        .on_health_change(|e| println!("NATS health changed: {e:?}"))
        .build()
        .await?;
    let node = Node::builder()
        .server_name(&p.name)
        .broker(broker)
        .build()
        .await?;
    say_mode(node, &p).await
}

#[cfg(not(feature = "nats"))]
async fn nats_mode(_args: Args) -> Result<(), Box<dyn Error>> {
    eprintln!("this example was built without NATS: run it with `--features nats`");
    std::process::exit(2);
}

/// A server waits for `say` and answers it; a sender emits `say` to every node and prints
/// the replies.
#[cfg(any(feature = "redis", feature = "nats"))]
async fn say_mode(node: Node, p: &ProcessArgs) -> Result<(), Box<dyn Error>> {
    let name = &p.name;
    install_say(&node);
    if !p.sender {
        println!("{name} waits for cross-server events; Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
        node.shutdown(Duration::from_secs(5)).await;
        return Ok(());
    }
    node.emit_cross(
        "say",
        &json!({ "content": format!("Hi everyone, I am {name}") }),
    )
    .send()
    .await?;
    let result = node
        .emit_cross(
            "say",
            &json!({ "content": "please respond for the promise" }),
        )
        .except_self(true)
        .expect(p.expect)
        .timeout(Duration::from_secs(2))
        .collect()
        .await?;
    println!(
        "collected: success={} unresponded={} missing={:?} responses={:?}",
        result.success, result.unresponded, result.missing, result.responses
    );
    Ok(())
}

#[cfg(not(feature = "redis"))]
async fn redis_mode(_args: Args) -> Result<(), Box<dyn Error>> {
    eprintln!("this example was built without Redis: run it with `--features redis`");
    std::process::exit(2);
}

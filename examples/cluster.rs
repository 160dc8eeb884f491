//! The default demo: several crosswire nodes in one process on the in-memory broker, each on
//! its own port, all serving the demo event set (`crosswire::demo`). Clients on different
//! ports reach each other through the cluster.
//!
//! Run with `cargo run --example cluster` (3 nodes on 127.0.0.1:9000..9002), or
//! `cargo run --example cluster -- --nodes 5 --port 9100`.
//!
//! Then connect clients, e.g. with websocat:
//! `websocat 'ws://127.0.0.1:9000/?id=1'` and `websocat 'ws://127.0.0.1:9001/?id=2'`, and send
//! `{"event":"command","payload":{"action":"toPlayer","toPlayerId":"2","msg":"hi"},"callbackId":"c1"}`.

use std::error::Error;

use crosswire::memory::MemoryHub;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{system, Node};

struct Args {
    nodes: u16,
    port: u16,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        nodes: 3,
        port: 9000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--nodes" => args.nodes = value()?.parse().map_err(|e| format!("--nodes: {e}"))?,
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--help" | "-h" => {
                return Err(
                    "usage: cluster [--nodes N (default 3)] [--port P (default 9000)]".into(),
                )
            }
            other => return Err(format!("unknown flag {other}; try --help")),
        }
    }
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };

    let hub = MemoryHub::new();
    let mut servers = Vec::new();
    for i in 0..args.nodes {
        let name = format!("node{}", i + 1);
        let node = Node::builder()
            .server_name(&name)
            .broker(hub.broker())
            .build()
            .await?;
        crosswire::demo::install(&node);
        log_connections(&node);
        let port = args.port + i;
        let server = WsServer::bind(("127.0.0.1", port), node, WsConfig::default()).await?;
        println!(
            "{name} listening on ws://{}/?id=<your id>",
            server.local_addr()
        );
        servers.push(server);
    }
    println!(
        "{} nodes on the in-memory broker; Ctrl-C to stop",
        servers.len()
    );
    tokio::signal::ctrl_c().await?;
    for server in servers {
        server.shutdown().await;
    }
    Ok(())
}

fn log_connections(node: &Node) {
    let name = node.server_name().to_owned();
    node.on_system(system::Connection, move |socket| {
        let name = name.clone();
        async move {
            tracing::info!(node = %name, id = ?socket.socket_id(), params = ?socket.request().params(), "client connected");
        }
    });
    let name = node.server_name().to_owned();
    node.on_system(system::Close, move |close| {
        let name = name.clone();
        async move {
            tracing::info!(node = %name, id = ?close.socket_id, code = close.code, reason = %close.reason, "client disconnected");
        }
    });
}

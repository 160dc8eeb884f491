//! A chat page served by crosswire: every node serves the page and its WebSocket on one port
//! (a hyper service with crosswire's [`WsAcceptor`] at `/ws`), and users on different nodes
//! chat with each other through the cluster.
//!
//! Run with `cargo run --example chat` (2 nodes on the in-memory broker, on 127.0.0.1:9000 and
//! 9001), then open <http://127.0.0.1:9000/> and <http://127.0.0.1:9001/> in two tabs.
//! `--nodes N --port P` puts N nodes on P, P+1, ...
//!
//! On Redis, one node per process: `cargo run --features redis --example chat -- --broker redis
//! --name a --port 9000` (then `b` on 9001). `--redis URL` is repeatable; the default is
//! `redis://127.0.0.1:6379`.
//!
//! The page (`examples/chat/`) and the JavaScript client's module (`clients/js/src/index.js`,
//! plain JavaScript that runs as it is) are read from disk at each request, so editing them
//! needs no rebuild, and nothing needs building but the example.
//!
//! The events (rooms live in the namespace `chat`; the socket id comes from `?id=`, the
//! nickname from `?name=`):
//! - `join {room}` / `leave {room}` → reply `{ok, members}` (the room's size cluster-wide);
//! - `say {room, text}` → push `chat {room, from, fromId, text, at}` to the room;
//! - `shout {text}` → push `chat {room: null, from, fromId, text, at}` to everyone;
//! - `whisper {to, text}` → push `private {from, fromId, text, at}` to the socket id `to`,
//!   reply `{delivered}` (whether `to` is online anywhere in the cluster);
//! - `online` → reply `{total, rooms: {room: members}}`, cluster-wide;
//! - pushed to everyone: `presence {kind: online|offline|join|leave, id, name, room?}`.

use std::convert::Infallible;
use std::error::Error;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use crosswire::ws::{WsAcceptor, WsConfig};
use crosswire::{close_codes, system, ClientEvent, Match, Node};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The room namespace of the chat.
const NAMESPACE: &str = "chat";
/// How long cluster-wide queries wait for the nodes.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest message, in characters.
const MAX_TEXT: usize = 500;
/// Longest room name or nickname, in characters.
const MAX_NAME: usize = 32;

/// A chat page and its WebSocket on every node; users on different nodes chat through the
/// cluster.
#[derive(Parser)]
#[command(name = "chat", args_override_self = true)]
struct Args {
    /// Nodes in this process (memory broker), on ports P, P+1, ...
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = at_least_one)]
    nodes: u16,
    /// Port of the first node
    #[arg(long, value_name = "P", default_value_t = 9000)]
    port: u16,
    /// Broker connecting the nodes
    #[arg(long, value_enum, default_value_t = Broker::Memory)]
    broker: Broker,
    /// This process's node (redis; default node-<port>)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A Redis server (repeatable, for several independent servers; default
    /// redis://127.0.0.1:6379)
    #[arg(long = "redis", value_name = "URL")]
    redis: Vec<String>,
}

/// The broker of `--broker`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Broker {
    /// Every node in this process, on the in-memory broker
    Memory,
    /// One node in this process on Redis (needs `--features redis`)
    Redis,
}

/// Parses a node count, at least 1.
fn at_least_one(value: &str) -> Result<u16, String> {
    match value.parse() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let nodes = if args.broker == Broker::Redis {
        vec![(redis_node(&args).await?, args.port)]
    } else {
        let hub = crosswire::memory::MemoryHub::new();
        let mut nodes = Vec::new();
        for i in 0..args.nodes {
            let node = Node::builder()
                .server_name(format!("node{}", i + 1))
                .broker(hub.broker())
                .build()
                .await?;
            nodes.push((node, args.port + i));
        }
        nodes
    };
    for (node, port) in &nodes {
        install(node);
        let listener = TcpListener::bind(("127.0.0.1", *port)).await?;
        println!(
            "chat: http://{}/ ({})",
            listener.local_addr()?,
            node.server_name()
        );
        tokio::spawn(serve(listener, node.clone()));
    }
    println!("Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    for (node, _) in nodes {
        node.shutdown(Duration::from_secs(2)).await;
    }
    Ok(())
}

/// The node of this process on Redis; other processes with other names join the cluster.
#[cfg(feature = "redis")]
async fn redis_node(args: &Args) -> Result<Node, Box<dyn Error>> {
    use crosswire::redis::{RedisBroker, DEFAULT_REDIS_URL};

    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("node-{}", args.port));
    let urls = if args.redis.is_empty() {
        vec![DEFAULT_REDIS_URL.to_owned()]
    } else {
        args.redis.clone()
    };
    let broker = urls
        .iter()
        .fold(RedisBroker::builder(), |b, url| b.url(url))
        .server_name(&name)
        .build()
        .await?;
    println!("on Redis {}", urls.join(", "));
    Ok(Node::builder()
        .server_name(&name)
        .broker(broker)
        .build()
        .await?)
}

#[cfg(not(feature = "redis"))]
async fn redis_node(_args: &Args) -> Result<Node, Box<dyn Error>> {
    eprintln!("this example was built without Redis: run it with `--features redis`");
    std::process::exit(2);
}

// ---- HTTP: the page, its files, and the WebSocket at /ws -------------------------------------

type Body = Either<Empty<Bytes>, Full<Bytes>>;

/// Accepts HTTP connections on `listener` and serves them with [`route`].
async fn serve(listener: TcpListener, node: Node) {
    // The page offers this subprotocol, as a browser app may; the server echoes it.
    let config = WsConfig::default().subprotocols(["crosswire.chat"]);
    let acceptor = WsAcceptor::new(node, config);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| route(acceptor.clone(), request));
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "HTTP connection error");
            }
        });
    }
}

async fn route(
    acceptor: WsAcceptor,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if request.uri().path() == "/ws" {
        return Ok(acceptor.accept(request).map(Either::Left));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET only"));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = root.join("examples/chat");
    let (path, content_type) = match request.uri().path() {
        "/" | "/index.html" => (page.join("index.html"), "text/html; charset=utf-8"),
        "/chat.css" => (page.join("chat.css"), "text/css; charset=utf-8"),
        "/chat.js" => (page.join("chat.js"), "text/javascript; charset=utf-8"),
        "/crosswire-client.js" => (
            root.join("clients/js/src/index.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return Ok(plain(StatusCode::NOT_FOUND, "not found")),
    };
    Ok(match tokio::fs::read(&path).await {
        Ok(content) => {
            let mut response = Response::new(Either::Right(Full::new(Bytes::from(content))));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read a file of the page");
            plain(StatusCode::NOT_FOUND, "not found")
        }
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

// ---- The chat ---------------------------------------------------------------------------------

/// Installs the chat's connection handlers and events on `node`.
fn install(node: &Node) {
    let n = node.clone();
    node.on_system(system::Connection, move |socket| {
        let n = n.clone();
        async move {
            let id = socket
                .request()
                .param("id")
                .filter(|id| !id.is_empty() && id.chars().count() <= 64)
                .map(str::to_owned);
            let Some(id) = id else {
                socket.close(close_codes::AUTH_FAILED, "missing id");
                return;
            };
            if let Err(error) = n.bind(&socket, &id) {
                tracing::info!(%error, "chat: bind refused");
                return;
            }
            let name = nickname(socket.request().param("name"));
            tracing::info!(node = %n.server_name(), %id, %name, "connected");
            push_presence(&n, "online", &id, &name, None).await;
        }
    });

    let n = node.clone();
    node.on_system(system::Close, move |close| {
        let n = n.clone();
        async move {
            // The binding and the rooms are already gone: counts asked now are up to date.
            if let Some(id) = close.socket_id {
                let name = nickname(close.socket.request().param("name"));
                tracing::info!(node = %n.server_name(), %id, code = close.code, "disconnected");
                push_presence(&n, "offline", &id, &name, None).await;
            }
        }
    });

    let n = node.clone();
    node.on("join", move |ev| {
        let n = n.clone();
        async move { join_or_leave(&n, &ev, true).await }
    });

    let n = node.clone();
    node.on("leave", move |ev| {
        let n = n.clone();
        async move { join_or_leave(&n, &ev, false).await }
    });

    let n = node.clone();
    node.on("say", move |ev| {
        let n = n.clone();
        async move {
            let data = ev.value();
            let (Some((id, name)), Some(room), Some(text)) =
                (sender(&ev), room_of(&data), text_of(&data))
            else {
                return reply(
                    &ev,
                    json!({ "ok": false, "error": "need a room and a text" }),
                );
            };
            if !n.is_joined(&id, NAMESPACE, Some(&room)) {
                return reply(&ev, json!({ "ok": false, "error": "join the room first" }));
            }
            let message =
                json!({ "room": room, "from": name, "fromId": id, "text": text, "at": now_ms() });
            let sent = n.to_room(NAMESPACE, &room).emit("chat", &message).await;
            reply(&ev, json!({ "ok": sent.is_ok() }));
        }
    });

    let n = node.clone();
    node.on("shout", move |ev| {
        let n = n.clone();
        async move {
            let (Some((id, name)), Some(text)) = (sender(&ev), text_of(&ev.value())) else {
                return reply(&ev, json!({ "ok": false, "error": "need a text" }));
            };
            let message =
                json!({ "room": null, "from": name, "fromId": id, "text": text, "at": now_ms() });
            let sent = n.broadcast().emit("chat", &message).await;
            reply(&ev, json!({ "ok": sent.is_ok() }));
        }
    });

    let n = node.clone();
    node.on("whisper", move |ev| {
        let n = n.clone();
        async move {
            let data = ev.value();
            let to = data["to"].as_str().filter(|to| !to.is_empty());
            let (Some((id, name)), Some(to), Some(text)) = (sender(&ev), to, text_of(&data)) else {
                return reply(
                    &ev,
                    json!({ "delivered": false, "error": "need to and text" }),
                );
            };
            // Ask first, so the sender hears honestly whether anyone was there to receive it.
            let online = n.cluster().timeout(QUERY_TIMEOUT).is_online(to).await;
            if !matches!(online, Ok(ref answer) if answer.value) {
                return reply(&ev, json!({ "delivered": false, "error": "not online" }));
            }
            let message = json!({ "from": name, "fromId": id, "text": text, "at": now_ms() });
            let sent = n.to(to).emit("private", &message).await;
            reply(&ev, json!({ "delivered": sent.is_ok() }));
        }
    });

    let n = node.clone();
    node.on("online", move |ev| {
        let n = n.clone();
        async move {
            let value = online(&n).await;
            reply(&ev, value);
        }
    });
}

async fn join_or_leave(node: &Node, ev: &ClientEvent, join: bool) {
    let (Some((id, name)), Some(room)) = (sender(ev), room_of(&ev.value())) else {
        return reply(ev, json!({ "ok": false, "error": "need a room" }));
    };
    let done = if join {
        node.join_room(NAMESPACE, &room, &id).await
    } else {
        node.leave_room(NAMESPACE, &room, &id).await
    };
    if let Err(error) = done {
        return reply(ev, json!({ "ok": false, "error": error.to_string() }));
    }
    let members = node
        .cluster()
        .timeout(QUERY_TIMEOUT)
        .room_socket_count(NAMESPACE, Some(&room), Match::Exact)
        .await
        .map(|answer| answer.value)
        .ok();
    reply(ev, json!({ "ok": true, "members": members }));
    let kind = if join { "join" } else { "leave" };
    push_presence(node, kind, &id, &name, Some(&room)).await;
}

/// The cluster-wide counts: `{total, rooms: {room: members}}`.
async fn online(node: &Node) -> Value {
    let cluster = node.cluster().timeout(QUERY_TIMEOUT);
    let (total, rooms) = tokio::join!(cluster.client_count(), cluster.room_sizes(NAMESPACE));
    match (total, rooms) {
        (Ok(total), Ok(rooms)) => json!({ "total": total.value, "rooms": rooms.value }),
        (Err(error), _) | (_, Err(error)) => json!({ "error": error.to_string() }),
    }
}

/// Tells everyone that `id` came, went, joined or left a room, so pages update their counts.
async fn push_presence(node: &Node, kind: &str, id: &str, name: &str, room: Option<&str>) {
    let presence = json!({ "kind": kind, "id": id, "name": name, "room": room });
    if let Err(error) = node.broadcast().emit("presence", &presence).await {
        tracing::debug!(%error, "chat: presence not sent");
    }
}

/// The sender's socket id and nickname.
fn sender(ev: &ClientEvent) -> Option<(String, String)> {
    let id = ev.socket().socket_id()?;
    let name = nickname(ev.socket().request().param("name"));
    Some((id.to_string(), name))
}

fn nickname(name: Option<&str>) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => name.chars().take(MAX_NAME).collect(),
        None => "anonymous".to_owned(),
    }
}

fn room_of(data: &Value) -> Option<String> {
    let room = data["room"].as_str()?.trim();
    (!room.is_empty() && room.chars().count() <= MAX_NAME).then(|| room.to_owned())
}

fn text_of(data: &Value) -> Option<String> {
    let text = data["text"].as_str()?.trim();
    (!text.is_empty()).then(|| text.chars().take(MAX_TEXT).collect())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn reply(ev: &ClientEvent, value: Value) {
    if ev.wants_reply() {
        if let Err(error) = ev.reply(&value) {
            tracing::debug!(%error, "chat: reply not sent");
        }
    }
}

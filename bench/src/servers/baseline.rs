//! The bare baseline server: hyper 1 + fastwebsockets, no framework, one node.
//!
//! It serves the demo events of `crosswire::demo` with byte-for-byte the same replies and
//! pushes, so that both servers can be put under the same load. It is the floor a framework
//! could reach: one reader task and one writer task per connection, a bounded outbound queue
//! per connection (full = slow consumer, dropped), every push serialized once into [`Bytes`]
//! and cloned into each recipient's queue, and the writer putting every queued frame on the
//! wire with one `write_all`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::upgrade::{is_upgrade_request, upgrade};
use fastwebsockets::{after_handshake_split, Frame, OpCode, Role, WebSocketRead};
use http_body_util::Empty;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::{announce, ServerSpec};

/// The application heartbeat string: crosswire's default, the empty string.
const HEARTBEAT: &str = "";
/// The longest `callbackId` the protocol accepts, in characters.
const MAX_CALLBACK_ID_LEN: usize = 64;
/// How long the writer waits for the peer's answer after sending a close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Write buffer capacity kept between batches; larger buffers are released.
const KEEP_BUFFER: usize = 64 * 1024;
/// Batch capacity (in frames) kept between batches; larger batch vectors are released.
const KEEP_BATCH: usize = 64;

/// Starts the server on a free port of 127.0.0.1, announces it, and returns its counters.
pub(super) async fn start(
    spec: &ServerSpec,
) -> Result<Box<dyn Fn() -> serde_json::Value + Send>, String> {
    if !spec.redis.is_empty() {
        return Err("the baseline server is a single node: it takes no --redis".into());
    }
    if spec.outbound_queue == 0 {
        return Err("--outbound-queue must be at least 1".into());
    }
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("bind: {e}"))?;
    let state = Arc::new(State {
        queue: spec.outbound_queue,
        ..State::default()
    });
    tokio::spawn(accept_loop(listener, state.clone()));
    if spec.ping_interval_secs > 0 {
        let interval = Duration::from_secs(spec.ping_interval_secs);
        tokio::spawn(ping_loop(state.clone(), interval));
    }
    announce(spec, addr)?;
    Ok(Box::new(move || {
        json!({
            "connections": state.conns.lock().len(),
            "bound_ids": state.ids.read().len(),
            "slow_consumer_closes": state.slow_consumer_closes.load(Ordering::Relaxed),
            "malformed_frames": state.malformed_frames.load(Ordering::Relaxed),
            "dead_connections": state.dead_connections.load(Ordering::Relaxed),
        })
    }))
}

/// Everything the server shares between connections.
#[derive(Debug, Default)]
struct State {
    /// Outbound queue capacity of each connection, in frames.
    queue: usize,
    /// Source of connection serial numbers.
    next_serial: AtomicU64,
    /// Every open connection by serial number (for pings and the connection count).
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// The connection each socket id is bound to; a newer connection replaces an older one.
    ids: RwLock<HashMap<String, Arc<Conn>>>,
    /// Room memberships of socket ids (namespace "chat" only). Lock order: `rooms`, then `ids`.
    rooms: RwLock<Rooms>,
    /// Connections dropped because their outbound queue was full.
    slow_consumer_closes: AtomicU64,
    /// Text frames that were not a JSON object with a non-empty string `event`.
    malformed_frames: AtomicU64,
    /// Connections closed because they did not answer the previous ping.
    dead_connections: AtomicU64,
}

/// Room membership, indexed both ways so that a closing id leaves its rooms cheaply.
#[derive(Debug, Default)]
struct Rooms {
    /// Members (socket ids) of each room.
    members: HashMap<String, HashSet<String>>,
    /// Rooms of each socket id.
    of_id: HashMap<String, HashSet<String>>,
}

/// Something for a connection's writer to put on the wire.
#[derive(Debug)]
enum Out {
    /// A text frame (reply, push or heartbeat echo).
    Text(Bytes),
    /// A protocol ping.
    Ping,
    /// The answer to the peer's ping.
    Pong(Bytes),
    /// A close frame with this payload (code + reason); the writer stops after it.
    Close(Bytes),
}

/// The shared handle on one connection.
#[derive(Debug)]
struct Conn {
    /// Unique among this process's connections.
    serial: u64,
    /// The writer's queue.
    tx: mpsc::Sender<Out>,
    /// Set once the connection is closing: nothing more is queued.
    closing: AtomicBool,
    /// Whether a pong arrived since the last ping.
    alive: AtomicBool,
    /// Tells the writer to stop at once.
    kill: Notify,
}

impl Conn {
    /// Queues a frame; a full queue drops the connection (counted as a slow consumer).
    fn send(&self, state: &State, out: Out) -> bool {
        if self.closing.load(Ordering::Acquire) {
            return false;
        }
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.closing.swap(true, Ordering::AcqRel) {
                    state.slow_consumer_closes.fetch_add(1, Ordering::Relaxed);
                }
                self.kill.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Stops the connection without a close handshake.
    fn terminate(&self) {
        self.closing.store(true, Ordering::Release);
        self.kill.notify_one();
    }
}

/// Accepts TCP connections and serves each with hyper in a task of its own.
async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors and the like: breathe, go on.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = accept(request, state.clone());
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Answers an HTTP request: 426 unless it is a WebSocket upgrade, else starts the connection.
fn accept<B>(mut request: Request<B>, state: Arc<State>) -> Response<Empty<Bytes>> {
    if !is_upgrade_request(&request) {
        return status(StatusCode::UPGRADE_REQUIRED);
    }
    let Ok((response, upgrade_future)) = upgrade(&mut request) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let id = request.uri().query().and_then(id_param);
    tokio::spawn(async move {
        let Ok(websocket) = upgrade_future.await else {
            return;
        };
        let (read, write) = tokio::io::split(websocket.into_inner());
        let (read, _) = after_handshake_split(read, tokio::io::sink(), Role::Server);
        run_connection(state, id, read, write).await;
    });
    response
}

/// An empty response with `code`.
fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = code;
    response
}

/// The non-empty, percent-decoded query parameter `id`.
fn id_param(query: &str) -> Option<String> {
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("id="))
        .filter(|v| !v.is_empty())?;
    let (bytes, mut out, mut i) = (raw.as_bytes(), Vec::with_capacity(raw.len()), 0);
    while i < bytes.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => (out.push(byte), i += 3),
            (b'+', _) => (out.push(b' '), i += 1),
            (byte, _) => (out.push(byte), i += 1),
        };
    }
    String::from_utf8(out).ok()
}

/// Registers the connection, runs its reader task and (in this task) its writer, then
/// unregisters it.
async fn run_connection<R, W>(
    state: Arc<State>,
    id: Option<String>,
    read: WebSocketRead<R>,
    write: W,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(state.queue);
    let conn = Arc::new(Conn {
        serial: state.next_serial.fetch_add(1, Ordering::Relaxed),
        tx,
        closing: AtomicBool::new(false),
        alive: AtomicBool::new(true),
        kill: Notify::new(),
    });
    state.conns.lock().insert(conn.serial, conn.clone());
    match &id {
        Some(id) => {
            state.ids.write().insert(id.clone(), conn.clone());
        }
        None => {
            let mut payload = 4011u16.to_be_bytes().to_vec();
            payload.extend_from_slice(b"Auth failure");
            conn.send(&state, Out::Close(payload.into()));
            conn.closing.store(true, Ordering::Release);
        }
    }
    let reader = tokio::spawn(read_loop(state.clone(), conn.clone(), id.clone(), read));
    write_loop(write, rx, &conn, reader).await;
    state.conns.lock().remove(&conn.serial);
    if let Some(id) = id {
        let mut ids = state.ids.write();
        let current = ids.get(&id).is_some_and(|c| c.serial == conn.serial);
        if !current {
            return; // replaced by a newer connection, which keeps the id and its rooms
        }
        ids.remove(&id);
        drop(ids);
        let mut rooms = state.rooms.write();
        for room in rooms.of_id.remove(&id).unwrap_or_default() {
            leave(&mut rooms.members, &room, &id);
        }
    }
}

/// Reads frames until the peer closes or fails; answers pings and closes through the queue.
async fn read_loop<R: AsyncRead + Unpin>(
    state: Arc<State>,
    conn: Arc<Conn>,
    id: Option<String>,
    mut read: WebSocketRead<R>,
) {
    let tx = conn.tx.clone();
    let mut obligated = |frame: Frame<'_>| {
        let payload = Bytes::copy_from_slice(&frame.payload);
        let out = match frame.opcode {
            OpCode::Close => Out::Close(payload),
            _ => Out::Pong(payload),
        };
        let _ = tx.try_send(out); // a control answer may not fit a full queue: no matter
        std::future::ready(Ok::<(), Infallible>(()))
    };
    let mut fragments: Option<Vec<u8>> = None;
    loop {
        let Ok(frame) = read.read_frame(&mut obligated).await else {
            conn.terminate(); // EOF, I/O or protocol error
            return;
        };
        let text = match frame.opcode {
            OpCode::Text if frame.fin => Cow::Borrowed(&frame.payload[..]),
            OpCode::Text => {
                fragments = Some(frame.payload.to_vec());
                continue;
            }
            OpCode::Continuation => match fragments.as_mut() {
                Some(buffer) => {
                    buffer.extend_from_slice(&frame.payload);
                    if !frame.fin {
                        continue;
                    }
                    Cow::Owned(fragments.take().unwrap_or_default())
                }
                None => continue,
            },
            OpCode::Pong => {
                conn.alive.store(true, Ordering::Relaxed);
                continue;
            }
            OpCode::Close => return, // the echo is queued; the writer stops after it
            OpCode::Binary => {
                fragments = None;
                continue;
            }
            OpCode::Ping => continue,
        };
        if let Some(id) = &id {
            handle_text(&state, &conn, id, &text);
        }
    }
}

/// Writes every queued frame of a batch with one `write_all` until a close frame, a write
/// error or a kill; then stops the reader.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::Receiver<Out>,
    conn: &Conn,
    mut reader: JoinHandle<()>,
) {
    let limit = rx.max_capacity(); // everything queued goes out in one batch
    let mut batch = Vec::new();
    let mut buffer = Vec::new();
    loop {
        let received = tokio::select! {
            biased;
            _ = conn.kill.notified() => break,
            n = rx.recv_many(&mut batch, limit) => n,
        };
        if received == 0 {
            break;
        }
        let mut last = false;
        for out in batch.drain(..) {
            let (opcode, payload) = match &out {
                Out::Text(bytes) => (OpCode::Text, &bytes[..]),
                Out::Ping => (OpCode::Ping, &[][..]),
                Out::Pong(bytes) => (OpCode::Pong, &bytes[..]),
                Out::Close(bytes) => (OpCode::Close, &bytes[..]),
            };
            append_frame(&mut buffer, opcode, payload);
            if opcode == OpCode::Close {
                last = true;
                break;
            }
        }
        let written = tokio::select! {
            biased;
            _ = conn.kill.notified() => break,
            result = io.write_all(&buffer) => result,
        };
        buffer.clear();
        if buffer.capacity() > KEEP_BUFFER {
            buffer = Vec::new();
        }
        if batch.capacity() > KEEP_BATCH {
            batch = Vec::new();
        }
        if written.is_err() {
            break;
        }
        if last {
            // Give the peer a moment to answer the close frame before dropping TCP.
            let _ = io.flush().await;
            let _ = tokio::time::timeout(CLOSE_WAIT, &mut reader).await;
            break;
        }
    }
    conn.closing.store(true, Ordering::Release);
    reader.abort();
    let _ = io.shutdown().await;
}

/// Appends one unmasked, final server frame (header + payload) to `buffer`.
fn append_frame(buffer: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    buffer.push(0x80 | opcode as u8);
    match payload.len() {
        len if len < 126 => buffer.push(len as u8),
        len if len < 65536 => {
            buffer.push(126);
            buffer.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            buffer.push(127);
            buffer.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    buffer.extend_from_slice(payload);
}

/// Every `interval`: terminates connections that did not answer the previous ping, pings
/// the rest.
async fn ping_loop(state: Arc<State>, interval: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let conns: Vec<Arc<Conn>> = state.conns.lock().values().cloned().collect();
        for conn in conns {
            if conn.alive.swap(false, Ordering::Relaxed) {
                if !conn.closing.load(Ordering::Acquire) {
                    let _ = conn.tx.try_send(Out::Ping);
                }
            } else {
                state.dead_connections.fetch_add(1, Ordering::Relaxed);
                conn.terminate();
            }
        }
    }
}

/// A client frame `{"event": E, "payload": P, "callbackId"?: C}`, payload left raw.
#[derive(Deserialize)]
struct ClientFrame<'a> {
    /// The event name.
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    /// The payload, as raw JSON.
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    /// The callback id, any JSON (only a string of 1 to 64 characters asks for a reply).
    #[serde(borrow, default, rename = "callbackId")]
    callback_id: Option<&'a RawValue>,
}

/// A reply frame `{"callbackId": C, "payload": R}`.
#[derive(Serialize)]
struct ReplyFrame<'a> {
    /// The request's callback id.
    #[serde(rename = "callbackId")]
    callback_id: &'a str,
    /// The reply.
    payload: &'a Value,
}

/// A push frame `{"event": E, "payload": P}`.
#[derive(Serialize)]
struct PushFrame<'a> {
    /// The event name.
    event: &'a str,
    /// The payload.
    payload: &'a Value,
}

/// Handles one text message of the connection bound to `id`.
fn handle_text(state: &State, conn: &Conn, id: &str, text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        state.malformed_frames.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if text == HEARTBEAT {
        conn.send(state, Out::Text(Bytes::from_static(HEARTBEAT.as_bytes())));
        return;
    }
    // An array would deserialize into the struct too: only objects are frames.
    let parsed = if text.trim_start().starts_with('{') {
        serde_json::from_str::<ClientFrame<'_>>(text).ok()
    } else {
        None
    };
    let Some(frame) = parsed else {
        state.malformed_frames.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some(event) = frame.event.filter(|e| !e.is_empty()) else {
        state.malformed_frames.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let payload: Value = frame
        .payload
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or(Value::Null);
    let reply = match &*event {
        "joinRoom" => json!({ "msg": match id_value(&payload["roomId"]) {
            Some(room) => {
                let mut rooms = state.rooms.write();
                rooms.members.entry(room.clone()).or_default().insert(id.to_owned());
                rooms.of_id.entry(id.to_owned()).or_default().insert(room.clone());
                format!("Successfully joined the roomId:{room}")
            }
            None => "Failed to join the room".to_owned(),
        }}),
        "leaveRoom" => json!({ "msg": match id_value(&payload["roomId"]) {
            Some(room) => {
                let mut rooms = state.rooms.write();
                leave(&mut rooms.members, &room, id);
                leave(&mut rooms.of_id, id, &room);
                format!("Left the roomId:{room}")
            }
            None => "Failed to leave the room".to_owned(),
        }}),
        "command" => json!({ "msg": command(state, &payload) }),
        "say" => json!({ "msg": "I am a callback for your say event", "echo": payload }),
        _ => return, // no handler (including reserved `$` events): no reply
    };
    let callback_id = frame
        .callback_id
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .filter(|c| !c.is_empty() && c.chars().count() <= MAX_CALLBACK_ID_LEN);
    if let Some(callback_id) = callback_id {
        let frame = ReplyFrame {
            callback_id: &callback_id,
            payload: &reply,
        };
        if let Ok(bytes) = serde_json::to_vec(&frame) {
            conn.send(state, Out::Text(bytes.into()));
        }
    }
}

/// Removes `value` from the set at `key`, and the set when it becomes empty.
fn leave(map: &mut HashMap<String, HashSet<String>>, key: &str, value: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(value);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// The demo's `command`: pushes `say {action, msg}` to its targets; returns the reply's `msg`.
fn command(state: &State, data: &Value) -> String {
    let Some(action) = data["action"].as_str() else {
        return "Failed to send message".to_owned();
    };
    let push = json!({ "action": action, "msg": data["msg"] });
    let frame = match serde_json::to_vec(&PushFrame {
        event: "say",
        payload: &push,
    }) {
        Ok(bytes) => Bytes::from(bytes),
        Err(error) => return format!("Failed to send message: {error}"),
    };
    let send = |conn: &Conn| conn.send(state, Out::Text(frame.clone()));
    match action {
        "broadcast" => state.ids.read().values().for_each(|c| _ = send(c)),
        "toPlayer" => match id_value(&data["toPlayerId"]) {
            Some(to) => _ = state.ids.read().get(&to).map(|c| send(c)),
            None => return "Missing toPlayerId".to_owned(),
        },
        "toPlayers" => match data["toPlayerIds"].as_array() {
            Some(list) => {
                let ids = state.ids.read();
                list.iter()
                    .filter_map(id_value)
                    .filter_map(|to| ids.get(&to))
                    .for_each(|c| _ = send(c));
            }
            None => return "Missing toPlayerIds".to_owned(),
        },
        "toRoom" => match id_value(&data["roomId"]) {
            Some(room) => {
                let rooms = state.rooms.read();
                let ids = state.ids.read();
                rooms
                    .members
                    .get(&room)
                    .into_iter()
                    .flatten()
                    .filter_map(|member| ids.get(member))
                    .for_each(|c| _ = send(c));
            }
            None => return "Missing roomId".to_owned(),
        },
        _ => return "Unknown action type".to_owned(),
    }
    format!("Message sent successfully [action:{action}] ")
}

/// A socket or room id from a JSON string (non-empty) or number.
fn id_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

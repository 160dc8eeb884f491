//! One client connection: TCP connect from a chosen source address, the fastwebsockets
//! client handshake, then a reader task (classifies frames, answers pings, optionally reads at
//! a bounded byte rate) and a writer task (frames queued by the generator, heartbeats, a close
//! frame of our own). The frames the protocol obliges us to send (pong, the answer to a close)
//! go ahead of queued text frames, so that a client with a long send queue (a flood) still
//! answers the server's pings in time. How each connection ended is counted by kind (server
//! close code, our close answered, EOF, error).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketRead, WebSocketWrite};
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::Request;
use hyper_util::rt::TokioIo;
use nix::sys::socket::setsockopt;
use nix::sys::socket::sockopt::IpBindAddressNoPort;
use parking_lot::Mutex;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpSocket;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::record::Recorder;
use super::token::{classify, Received};

type Io = TokioIo<Upgraded>;

/// Something the writer task must send.
#[derive(Debug)]
pub(crate) enum Out {
    /// A text frame.
    Text(Vec<u8>),
    /// A pong answering the server's ping.
    Pong(Vec<u8>),
    /// Our answer to the server's close frame (its payload echoed); the writer then stops.
    CloseReply(Vec<u8>),
    /// A close frame of our own with this code; the writer then sends nothing more and stops
    /// when the server's answer comes.
    Close(u16),
}

/// Counters shared by all clients of a pool.
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    /// Connections that ended (close frame, EOF or error) after the handshake.
    pub(crate) closed: AtomicU64,
    /// Of those, closed by a close frame from the server.
    pub(crate) closed_by_server: AtomicU64,
    /// Replies whose callbackId is not a delivery token, by the callbackId's first byte
    /// (ASCII; `c` commands, `j` joins, ...).
    pub(crate) replies: ReplyCounts,
    /// Of those, replies saying the request failed.
    pub(crate) failed_replies: ReplyCounts,
    /// Heartbeat replies (empty text frames).
    pub(crate) heartbeats: AtomicU64,
    /// Heartbeats sent.
    pub(crate) heartbeats_sent: AtomicU64,
    /// While set, heartbeat ticks send nothing (to count the replies of the last ones).
    pub(crate) heartbeats_paused: AtomicBool,
    /// Pongs sent in answer to the server's protocol pings.
    pub(crate) pongs: AtomicU64,
    /// Text frames that carried no token.
    pub(crate) other_frames: AtomicU64,
    /// How connections ended, by kind: `server close <code>` (the server's close frame),
    /// `close answered <code>` (the server's answer to ours), `eof`, `error: <text>`.
    /// Connections the generator aborted are not counted here.
    pub(crate) ends: Mutex<BTreeMap<String, u64>>,
    /// Woken when `replies` grows.
    pub(crate) reply_notify: Notify,
}

impl PoolCounters {
    fn count_end(&self, kind: String) {
        *self.ends.lock().entry(kind).or_default() += 1;
    }
}

/// Counters by an ASCII byte.
#[derive(Debug)]
pub(crate) struct ReplyCounts([AtomicU64; 128]);

impl Default for ReplyCounts {
    fn default() -> Self {
        ReplyCounts(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl ReplyCounts {
    fn add(&self, kind: u8) {
        self.0[usize::from(kind & 0x7f)].fetch_add(1, Ordering::AcqRel);
    }

    /// The count of `kind`.
    pub(crate) fn get(&self, kind: u8) -> u64 {
        self.0[usize::from(kind & 0x7f)].load(Ordering::Acquire)
    }
}

/// The part of a client its reader task shares with the pool.
#[derive(Debug)]
pub(crate) struct ClientShared {
    /// Pool index (the `id` query parameter is the pool's id base plus this).
    pub(crate) index: usize,
    /// What it received in the current step.
    pub(crate) rec: Mutex<Recorder>,
    /// Woken on every delivery that came as a reply (closed-loop RPC).
    pub(crate) replied: Notify,
    /// The connection ended.
    pub(crate) closed: AtomicBool,
    /// We sent a close frame.
    pub(crate) closing: AtomicBool,
    /// Generator-clock nanoseconds when the handshake completed.
    pub(crate) connected_nanos: u64,
    /// Generator-clock nanoseconds when the reader ended (0 while open).
    pub(crate) ended_nanos: AtomicU64,
    /// Heartbeats this connection sent.
    pub(crate) beats_sent: AtomicU64,
    /// Heartbeat replies this connection received.
    pub(crate) beats_answered: AtomicU64,
}

/// A connected client.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) shared: Arc<ClientShared>,
    out: UnboundedSender<Out>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Client {
    /// Queues a text frame; false if the connection is gone.
    pub(crate) fn send(&self, text: Vec<u8>) -> bool {
        self.out.send(Out::Text(text)).is_ok()
    }

    /// Ends both tasks at once (the socket is dropped: the server sees the TCP connection
    /// end without a close frame).
    pub(crate) fn abort(&self) {
        self.reader.abort();
        self.writer.abort();
    }

    /// Starts the closing handshake with `code`; false if the connection is gone.
    pub(crate) fn close(&self, code: u16) -> bool {
        self.shared.closing.store(true, Ordering::Release);
        self.out.send(Out::Close(code)).is_ok()
    }

    /// Waits until the reader ended (the server answered our close, closed, or the connection
    /// broke), at most `timeout`; returns whether it did.
    pub(crate) async fn wait_ended(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, &mut self.reader)
            .await
            .is_ok()
    }
}

/// How one client behaves besides answering the protocol.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientOptions {
    /// Application heartbeats, if any.
    pub(crate) heartbeat: Option<Heartbeat>,
    /// Most bytes per second the reader consumes (`None`: as fast as they come). A slow
    /// reader: what it does not read waits in the kernel's buffers and then in the server.
    pub(crate) read_rate: Option<u64>,
    /// Added to the index to make the socket id (`?id=`), so that two pools on one server do
    /// not share ids.
    pub(crate) id_base: usize,
}

/// Heartbeat schedule of one client: first beat, then every `every`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    pub(crate) first: Instant,
    pub(crate) every: Duration,
}

/// Connects client `index` (socket id `options.id_base + index`) from `source` to `server`
/// and starts its tasks.
pub(crate) async fn connect(
    index: usize,
    source: Ipv4Addr,
    server: SocketAddr,
    counters: Arc<PoolCounters>,
    options: ClientOptions,
) -> Result<Client, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .set_reuseaddr(true)
        .map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    bind_address_no_port(&socket)?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket
        .connect(server)
        .await
        .map_err(|e| format!("connect from {source}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let request = Request::builder()
        .method("GET")
        .uri(format!("/?id={}", options.id_base + index))
        .header(HOST, server.to_string())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let (ws, _response) = fastwebsockets::handshake::client(&SpawnExecutor, request, stream)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (read, write) = ws.split(tokio::io::split);
    let shared = Arc::new(ClientShared {
        index,
        rec: Mutex::new(Recorder::default()),
        replied: Notify::new(),
        closed: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        connected_nanos: super::clock::now_nanos(),
        ended_nanos: AtomicU64::new(0),
        beats_sent: AtomicU64::new(0),
        beats_answered: AtomicU64::new(0),
    });
    let (out, queue) = unbounded_channel();
    let (control, control_queue) = unbounded_channel();
    let reader = tokio::spawn(read_loop(
        read,
        control,
        shared.clone(),
        counters.clone(),
        options.read_rate,
    ));
    let writer = tokio::spawn(write_loop(
        write,
        (control_queue, queue),
        options.heartbeat,
        shared.clone(),
        counters,
    ));
    Ok(Client {
        shared,
        out,
        reader,
        writer,
    })
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: the port is then chosen at `connect` (cheap, per
/// destination) instead of at `bind` (a search among every port bound on the source address,
/// which costs the generator milliseconds per socket once thousands are bound).
fn bind_address_no_port(socket: &TcpSocket) -> Result<(), String> {
    setsockopt(socket, IpBindAddressNoPort, &true)
        .map_err(|e| format!("IP_BIND_ADDRESS_NO_PORT: {}", std::io::Error::from(e)))
}

/// Runs hyper's connection futures (the handshake) on tokio.
#[derive(Debug, Clone, Copy)]
struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

async fn read_loop(
    mut read: WebSocketRead<ReadHalf<Io>>,
    out: UnboundedSender<Out>,
    me: Arc<ClientShared>,
    counters: Arc<PoolCounters>,
    read_rate: Option<u64>,
) {
    // Frames the protocol obliges us to send (pong, close reply) go through the writer.
    let pongs = &counters.pongs;
    let mut obligated = |frame: Frame<'_>| {
        let payload = frame.payload.to_vec();
        let sent = match frame.opcode {
            OpCode::Pong => {
                pongs.fetch_add(1, Ordering::Relaxed);
                out.send(Out::Pong(payload))
            }
            OpCode::Close => out.send(Out::CloseReply(payload)),
            _ => Ok(()),
        };
        std::future::ready(sent.map_err(|_| "writer gone"))
    };
    let mut pacer = read_rate.map(ReadPacer::new);
    let end = loop {
        let frame = match read.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(error) => break end_kind(&error),
        };
        if let Some(pacer) = &mut pacer {
            pacer.consumed(frame.payload.len()).await;
        }
        match frame.opcode {
            OpCode::Text => on_text(&frame.payload, &me, &counters),
            OpCode::Close => {
                let code = match frame.payload.get(..2) {
                    Some(code) => u16::from_be_bytes([code[0], code[1]]).to_string(),
                    None => "none".into(),
                };
                if me.closing.load(Ordering::Acquire) {
                    break format!("close answered {code}");
                }
                counters.closed_by_server.fetch_add(1, Ordering::Relaxed);
                break format!("server close {code}");
            }
            _ => {}
        }
    };
    me.ended_nanos
        .store(super::clock::now_nanos().max(1), Ordering::Release);
    me.closed.store(true, Ordering::Release);
    counters.closed.fetch_add(1, Ordering::Relaxed);
    counters.count_end(end);
}

/// The kind of a read error, as counted in [`PoolCounters::ends`].
fn end_kind(error: &fastwebsockets::WebSocketError) -> String {
    use fastwebsockets::WebSocketError;
    match error {
        WebSocketError::UnexpectedEOF => "eof".into(),
        WebSocketError::IoError(io) => format!("error: {:?}", io.kind()),
        other => {
            let mut text = format!("error: {other}");
            text.truncate(60);
            text
        }
    }
}

/// Keeps a reader at or under a byte rate: after each frame it sleeps until the time at
/// which the bytes read so far are due.
#[derive(Debug)]
struct ReadPacer {
    start: Instant,
    bytes: u64,
    per_second: u64,
}

impl ReadPacer {
    fn new(per_second: u64) -> Self {
        ReadPacer {
            start: Instant::now(),
            bytes: 0,
            per_second: per_second.max(1),
        }
    }

    async fn consumed(&mut self, payload: usize) {
        // Payload plus a typical server frame header.
        self.bytes += payload as u64 + 4;
        let due = self.start + Duration::from_secs_f64(self.bytes as f64 / self.per_second as f64);
        tokio::time::sleep_until(due).await;
    }
}

fn on_text(payload: &[u8], me: &ClientShared, counters: &PoolCounters) {
    match classify(payload) {
        Received::Delivery {
            step,
            seq,
            sent_nanos,
            reply,
        } => {
            me.rec.lock().on_delivery(me.index, step, seq, sent_nanos);
            if reply {
                me.replied.notify_one();
            }
        }
        Received::Reply { kind, failed } => {
            if failed {
                counters.failed_replies.add(kind);
            }
            counters.replies.add(kind);
            counters.reply_notify.notify_one();
        }
        Received::Heartbeat => {
            me.beats_answered.fetch_add(1, Ordering::Relaxed);
            counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        }
        Received::Other => {
            counters.other_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes the control frames of the first queue (from the reader) before the frames of the
/// second (from the generator), and the heartbeats.
async fn write_loop(
    mut write: WebSocketWrite<WriteHalf<Io>>,
    (mut control, mut queue): (UnboundedReceiver<Out>, UnboundedReceiver<Out>),
    heartbeat: Option<Heartbeat>,
    me: Arc<ClientShared>,
    counters: Arc<PoolCounters>,
) {
    let mut beats = heartbeat.map(|h| {
        let mut every = tokio::time::interval_at(h.first, h.every);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        every
    });
    // After our own close frame nothing more may be sent; the queue stays open so that the
    // reader can still hand over the (ignored) answer to the server's close.
    let mut closing = false;
    loop {
        let next = tokio::select! {
            biased;
            Some(next) = control.recv() => next,
            next = queue.recv() => match next {
                Some(next) => next,
                None => break,
            },
            () = tick(&mut beats) => {
                if closing || counters.heartbeats_paused.load(Ordering::Relaxed) {
                    continue;
                }
                me.beats_sent.fetch_add(1, Ordering::Relaxed);
                counters.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
                Out::Text(Vec::new())
            }
        };
        if closing {
            if matches!(next, Out::CloseReply(_)) {
                break;
            }
            continue;
        }
        let (frame, last) = match next {
            Out::Text(text) => (Frame::text(Payload::Owned(text)), false),
            Out::Pong(data) => (Frame::pong(Payload::Owned(data)), false),
            Out::CloseReply(data) => (
                Frame::new(true, OpCode::Close, None, Payload::Owned(data)),
                true,
            ),
            Out::Close(code) => {
                closing = true;
                (Frame::close(code, b""), false)
            }
        };
        if write.write_frame(frame).await.is_err() || last {
            break;
        }
    }
}

async fn tick(beats: &mut Option<Interval>) {
    match beats {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}

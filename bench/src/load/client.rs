//! One client connection: TCP connect from a chosen source address, the fastwebsockets
//! client handshake, then a reader task (classifies frames, answers pings) and a writer task
//! (frames queued by the generator, heartbeats).

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
    /// Text frames that carried no token.
    pub(crate) other_frames: AtomicU64,
    /// Woken when `replies` grows.
    pub(crate) reply_notify: Notify,
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
    /// Pool index (also the `id` query parameter).
    pub(crate) index: usize,
    /// What it received in the current step.
    pub(crate) rec: Mutex<Recorder>,
    /// Woken on every delivery that came as a reply (closed-loop RPC).
    pub(crate) replied: Notify,
    /// The connection ended.
    pub(crate) closed: AtomicBool,
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

    /// Ends both tasks at once (the socket is dropped).
    pub(crate) fn abort(&self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// Heartbeat schedule of one client: first beat, then every `every`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    pub(crate) first: Instant,
    pub(crate) every: Duration,
}

/// Connects client `index` from `source` to `server` and starts its tasks.
pub(crate) async fn connect(
    index: usize,
    source: Ipv4Addr,
    server: SocketAddr,
    counters: Arc<PoolCounters>,
    heartbeat: Option<Heartbeat>,
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
        .uri(format!("/?id={index}"))
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
    });
    let (out, queue) = unbounded_channel();
    let reader = tokio::spawn(read_loop(read, out.clone(), shared.clone(), counters));
    let writer = tokio::spawn(write_loop(write, queue, heartbeat));
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
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!(
            "IP_BIND_ADDRESS_NO_PORT: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
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
) {
    // Frames the protocol obliges us to send (pong, close reply) go through the writer.
    let mut obligated = |frame: Frame<'_>| {
        let payload = frame.payload.to_vec();
        let sent = match frame.opcode {
            OpCode::Pong => out.send(Out::Pong(payload)),
            OpCode::Close => out.send(Out::CloseReply(payload)),
            _ => Ok(()),
        };
        std::future::ready(sent.map_err(|_| "writer gone"))
    };
    loop {
        let frame = match read.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(_) => break,
        };
        match frame.opcode {
            OpCode::Text => on_text(&frame.payload, &me, &counters),
            OpCode::Close => {
                counters.closed_by_server.fetch_add(1, Ordering::Relaxed);
                break;
            }
            _ => {}
        }
    }
    me.closed.store(true, Ordering::Release);
    counters.closed.fetch_add(1, Ordering::Relaxed);
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
            counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        }
        Received::Other => {
            counters.other_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn write_loop(
    mut write: WebSocketWrite<WriteHalf<Io>>,
    mut queue: UnboundedReceiver<Out>,
    heartbeat: Option<Heartbeat>,
) {
    let mut beats = heartbeat.map(|h| {
        let mut every = tokio::time::interval_at(h.first, h.every);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        every
    });
    loop {
        let next = tokio::select! {
            biased;
            next = queue.recv() => match next {
                Some(next) => next,
                None => break,
            },
            () = tick(&mut beats) => Out::Text(Vec::new()),
        };
        let (frame, last) = match next {
            Out::Text(text) => (Frame::text(Payload::Owned(text)), false),
            Out::Pong(data) => (Frame::pong(Payload::Owned(data)), false),
            Out::CloseReply(data) => (
                Frame::new(true, OpCode::Close, None, Payload::Owned(data)),
                true,
            ),
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

//! One connection of a connector: opening it (TCP, TLS, WebSocket handshake), then one task
//! that reads frames, writes queued frames, and keeps the heartbeat, until it ends.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::connector::{Command, Inner};
use super::options::ConnectorOptions;
use super::system;
use crosswire_core::close_codes;

/// How long a closing client waits for the server to answer its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A byte stream a WebSocket runs over: TCP, or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(crate) type Socket = WebSocketStream<Box<dyn Io>>;

/// Opens a connection to the connector's URL.
pub(crate) async fn open(options: &ConnectorOptions) -> Result<Socket, String> {
    let uri: http::Uri = options.url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let host = uri
        .host()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if options.secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if options.secure {
        let config = match &options.tls {
            Some(config) => config.clone(),
            None => default_tls()?,
        };
        let name =
            ServerName::try_from(host.clone()).map_err(|e| format!("TLS name {host}: {e}"))?;
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let config = WebSocketConfig {
        max_message_size: Some(options.max_message_size),
        max_frame_size: Some(options.max_message_size),
        ..WebSocketConfig::default()
    };
    let (socket, _response) =
        tokio_tungstenite::client_async_with_config(options.url.as_str(), io, Some(config))
            .await
            .map_err(|e| format!("WebSocket handshake: {e}"))?;
    Ok(socket)
}

/// The TLS settings used when none were given: Mozilla's root certificates, the `ring`
/// provider (named explicitly, so no process-wide default provider is needed).
fn default_tls() -> Result<Arc<ClientConfig>, String> {
    static DEFAULT: std::sync::OnceLock<Result<Arc<ClientConfig>, String>> =
        std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
                })
                .map_err(|e| format!("TLS setup: {e}"))
        })
        .clone()
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The server closed it, or it dropped (`error` is set when it broke without a close).
    Closed {
        code: u16,
        reason: String,
        error: Option<String>,
    },
    /// No heartbeat echo in time; closed with 4002.
    PongTimeout,
    /// [`Connector::manual_close`](super::Connector::manual_close), or every handle dropped;
    /// closed with 4001.
    Manual,
}

/// Runs an open connection until it ends.
pub(crate) async fn run(
    inner: &Inner,
    mut socket: Socket,
    mut outbound: mpsc::Receiver<String>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> End {
    let mut next_ping = later(Instant::now(), inner.ping_interval());
    let mut ping_sent: Option<Instant> = None;
    let mut closed_by_server: Option<(u16, String)> = None;
    loop {
        let pong_deadline = ping_sent.map(|sent| later(sent, inner.options.pong_timeout));
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if text == inner.options.ping_message {
                        if let Some(sent) = ping_sent.take() {
                            inner.events.fire(system::Pong, sent.elapsed());
                        }
                    }
                    inner.on_text(text);
                }
                Some(Ok(Message::Close(frame))) => {
                    closed_by_server = Some(frame.map_or((close_codes::NO_STATUS, String::new()), |f| {
                        (u16::from(f.code), f.reason.into_owned())
                    }));
                }
                Some(Ok(Message::Binary(_))) => {
                    tracing::debug!("ignored a binary message: the protocol uses text frames");
                }
                Some(Ok(_)) => {} // ping / pong: answered by tungstenite
                Some(Err(error)) => return broken(closed_by_server, error.to_string()),
                None => return broken(closed_by_server, "the connection closed without a close frame".into()),
            },
            Some(text) = outbound.recv() => {
                // The echo of a heartbeat due meanwhile is needed by then, as when it is sent.
                let deadline = pong_deadline
                    .unwrap_or_else(|| later(next_ping, inner.options.pong_timeout));
                let write = write_queued(&mut socket, text, &mut outbound);
                match guard(write, deadline, commands, inner, &mut next_ping).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return broken(closed_by_server, error.to_string()),
                    Err(stop) => return stop.close(&mut socket).await,
                }
            }
            _ = sleep_until(next_ping) => {
                next_ping = later(Instant::now(), inner.ping_interval());
                // The echo is awaited from when the heartbeat is queued, as in the JS connector.
                let sent = *ping_sent.get_or_insert_with(Instant::now);
                let deadline = later(sent, inner.options.pong_timeout);
                let write = socket.send(Message::Text(inner.options.ping_message.clone()));
                match guard(write, deadline, commands, inner, &mut next_ping).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return broken(closed_by_server, error.to_string()),
                    Err(stop) => return stop.close(&mut socket).await,
                }
                inner.events.fire(system::Ping, ());
            }
            _ = sleep_until(pong_deadline.unwrap_or(next_ping)), if pong_deadline.is_some() => {
                return Stop::PongTimeout.close(&mut socket).await;
            }
            command = commands.recv() => match command {
                None | Some(Command::ManualClose) => {
                    return Stop::Manual.close(&mut socket).await;
                }
                Some(Command::PingIntervalChanged { immediate: true }) => {
                    next_ping = later(Instant::now(), inner.ping_interval());
                }
                Some(Command::PingIntervalChanged { immediate: false } | Command::Reconnect { .. }) => {}
            },
        }
    }
}

/// Why a connection is being closed from this side.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// No heartbeat echo in time (or a write stuck past that time).
    PongTimeout,
    /// A manual close, or every handle dropped.
    Manual,
}

impl Stop {
    /// Sends the close frame (waiting at most [`CLOSE_WAIT`]) and says how the connection
    /// ended.
    async fn close(self, socket: &mut Socket) -> End {
        match self {
            Stop::PongTimeout => {
                close(socket, close_codes::PONG_TIMEOUT, "pong timeout").await;
                End::PongTimeout
            }
            Stop::Manual => {
                close(socket, close_codes::CLIENT_MANUAL, "manual close").await;
                End::Manual
            }
        }
    }
}

/// Runs a write, which waits for as long as the peer does not read, while keeping the
/// heartbeat deadline and the application's commands: a peer that stopped reading is then
/// detected by the heartbeat, and a manual close still stops the connection.
async fn guard<F>(
    write: F,
    deadline: Instant,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    inner: &Inner,
    next_ping: &mut Instant,
) -> Result<Result<(), tokio_tungstenite::tungstenite::Error>, Stop>
where
    F: std::future::Future<Output = Result<(), tokio_tungstenite::tungstenite::Error>>,
{
    tokio::pin!(write);
    loop {
        tokio::select! {
            written = &mut write => return Ok(written),
            _ = sleep_until(deadline) => return Err(Stop::PongTimeout),
            command = commands.recv() => match command {
                None | Some(Command::ManualClose) => return Err(Stop::Manual),
                Some(Command::PingIntervalChanged { immediate: true }) => {
                    *next_ping = later(Instant::now(), inner.ping_interval());
                }
                Some(Command::PingIntervalChanged { immediate: false } | Command::Reconnect { .. }) => {}
            },
        }
    }
}

/// `start + delay`, or about 30 years from `start` when that overflows: an interval or timeout
/// of `Duration::MAX` means "never", not a panic of the connector's task.
pub(crate) fn later(start: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    start.checked_add(delay).unwrap_or_else(|| start + FAR)
}

/// The end of a connection that stopped: closed if the server sent a close frame, broken
/// otherwise.
fn broken(closed_by_server: Option<(u16, String)>, error: String) -> End {
    match closed_by_server {
        Some((code, reason)) => End::Closed {
            code,
            reason,
            error: None,
        },
        None => End::Closed {
            code: close_codes::ABNORMAL,
            reason: String::new(),
            error: Some(error),
        },
    }
}

/// Writes `first` and whatever else is queued, then flushes once.
async fn write_queued(
    socket: &mut Socket,
    first: String,
    outbound: &mut mpsc::Receiver<String>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    socket.feed(Message::Text(first)).await?;
    while let Ok(text) = outbound.try_recv() {
        socket.feed(Message::Text(text)).await?;
    }
    socket.flush().await
}

/// Sends a close frame and waits a little for the server's answer.
async fn close(socket: &mut Socket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if socket.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = socket.next().await {}
        }
    })
    .await;
}

//! A slow consumer: a WebSocket client whose upgrade request is written by hand on a socket
//! with a small receive buffer, and which never reads anything after the response head. The
//! server's frames then pile up in the kernel buffers and in the server's outbound queue for
//! that connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest response head accepted.
const MAX_HEAD: usize = 4096;

/// A connected client that never reads; the connection closes when it is dropped.
#[derive(Debug)]
pub(crate) struct StalledClient {
    /// Kept open, never read.
    _stream: TcpStream,
    /// The receive buffer the kernel granted (`SO_RCVBUF` as read back), bytes.
    pub(crate) rcvbuf: u32,
}

impl StalledClient {
    /// Connects to `server` with `SO_RCVBUF` = `rcvbuf` bytes (set before `connect`, so the
    /// advertised window stays small), upgrades with `?id=<id>` and checks the `101` answer.
    pub(crate) async fn connect(
        server: SocketAddr,
        id: &str,
        rcvbuf: u32,
    ) -> Result<StalledClient, String> {
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        socket
            .set_recv_buffer_size(rcvbuf)
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
        let granted = socket
            .recv_buffer_size()
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
        let handshake = async {
            let mut stream = socket
                .connect(server)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let request = format!(
                "GET /?id={id} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
                fastwebsockets::handshake::generate_key()
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| format!("writing the upgrade request: {e}"))?;
            let head = read_head(&mut stream).await?;
            if !head.starts_with("HTTP/1.1 101") {
                let line = head.lines().next().unwrap_or_default();
                return Err(format!("upgrade refused: {line}"));
            }
            Ok(stream)
        };
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| format!("no handshake within {HANDSHAKE_TIMEOUT:?}"))??;
        Ok(StalledClient {
            _stream: stream,
            rcvbuf: granted,
        })
    }
}

/// Reads the response head one byte at a time, so that not a byte of the first WebSocket
/// frame behind it is consumed.
async fn read_head(stream: &mut TcpStream) -> Result<String, String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err("response head too long".into());
        }
        let byte = stream
            .read_u8()
            .await
            .map_err(|e| format!("reading the upgrade response: {e}"))?;
        head.push(byte);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

//! A slow consumer: a WebSocket client whose upgrade request is written by hand on a socket
//! with a small receive buffer, and which never reads anything after the response head. The
//! server's frames then pile up in the kernel buffers and in the server's outbound queue for
//! that connection. [`StalledClient::keep_sending`] makes it a client that sends but never
//! reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Longest the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest response head accepted.
const MAX_HEAD: usize = 4096;

/// A connected client that never reads; the connection closes when it is dropped.
#[derive(Debug)]
pub(crate) struct StalledClient {
    /// Kept open, never read.
    stream: TcpStream,
    /// The receive buffer the kernel granted (`SO_RCVBUF` as read back), bytes.
    pub(crate) rcvbuf: u32,
    /// The local (client) address of the connection.
    pub(crate) local: SocketAddr,
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
        let local = stream
            .local_addr()
            .map_err(|e| format!("local address: {e}"))?;
        Ok(StalledClient {
            stream,
            rcvbuf: granted,
            local,
        })
    }

    /// Writes `frame(k)` as a masked text frame, for k = 0, 1, ... until it returns `None`,
    /// as fast as the kernel takes them (still never reading), then holds the connection
    /// open. Stops at the first write error (the server dropped the connection).
    pub(crate) fn keep_sending(
        self,
        mut frame: impl FnMut(u64) -> Option<String> + Send + 'static,
    ) -> StalledSender {
        let written = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(Mutex::new(None));
        let start = Instant::now();
        let mut stream = self.stream;
        let task = tokio::spawn({
            let (written, ended) = (written.clone(), ended.clone());
            async move {
                let mut k = 0;
                while let Some(text) = frame(k) {
                    if let Err(error) = stream.write_all(&masked_text(text.as_bytes())).await {
                        *ended.lock() = Some((start.elapsed(), error.kind().to_string()));
                        return;
                    }
                    k += 1;
                    written.store(k, Ordering::Release);
                }
                // Keep the connection, unread, until dropped.
                std::future::pending::<()>().await;
                drop(stream);
            }
        });
        StalledSender {
            written,
            ended,
            task,
            rcvbuf: self.rcvbuf,
        }
    }
}

/// A [`StalledClient`] that sends (see [`StalledClient::keep_sending`]); the connection closes
/// when it is dropped.
#[derive(Debug)]
pub(crate) struct StalledSender {
    written: Arc<AtomicU64>,
    ended: Arc<Mutex<Option<(Duration, String)>>>,
    task: JoinHandle<()>,
    /// The receive buffer the kernel granted, bytes.
    pub(crate) rcvbuf: u32,
}

impl StalledSender {
    /// Frames the kernel took so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// When (after the start of sending) and how writing failed, if it did.
    pub(crate) fn ended(&self) -> Option<(Duration, String)> {
        self.ended.lock().clone()
    }
}

impl Drop for StalledSender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client text frame carrying `payload`, masked (with a fixed key: the server does not care
/// which).
fn masked_text(payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x81); // FIN, text
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&KEY);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    frame
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

#[cfg(test)]
mod tests {
    use super::masked_text;

    #[test]
    fn masks_and_sizes_frames() {
        let short = masked_text(b"hi");
        assert_eq!(&short[..2], &[0x81, 0x82]);
        assert_eq!(short[6] ^ short[2], b'h');
        let long = masked_text(&[b'a'; 2000]);
        assert_eq!(&long[..4], &[0x81, 0x80 | 126, 0x07, 0xd0]);
        assert_eq!(long.len(), 2 + 2 + 4 + 2000);
    }
}

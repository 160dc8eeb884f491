//! A raw WebSocket client for protocol tests: it writes every byte itself (any frame, valid or
//! not, in writes of the size asked for) over a real TCP connection, and reads the server's
//! frames as they are on the wire, checking that they follow RFC 6455 for a server.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use super::WAIT;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The masking key of every masked frame built here.
pub const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// `Sec-WebSocket-Key` of the upgrade request, and the `Sec-WebSocket-Accept` it must get
/// (the example of RFC 6455 1.3).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// How a frame header writes the payload length (RFC 6455 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenForm {
    /// The shortest form for the length, as the RFC requires.
    Shortest,
    /// 7 bits in the second byte (lengths up to 125).
    Short,
    /// 126, then 16 bits.
    Ext16,
    /// 127, then 64 bits.
    Ext64,
}

/// A client frame to put on the wire, built field by field.
#[derive(Debug, Clone)]
pub struct Frame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: Vec<u8>,
    form: LenForm,
    claimed_len: Option<u64>,
}

impl Frame {
    /// A final, masked frame with the shortest length form.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(MASK),
            payload: payload.into(),
            form: LenForm::Shortest,
            claimed_len: None,
        }
    }

    pub fn text(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(TEXT, payload)
    }

    pub fn binary(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(BINARY, payload)
    }

    pub fn continuation(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(CONTINUATION, payload)
    }

    pub fn ping(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(PING, payload)
    }

    pub fn pong(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(PONG, payload)
    }

    /// A close frame with `code` and `reason` (which may be any bytes).
    pub fn close(code: u16, reason: impl AsRef<[u8]>) -> Frame {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_ref());
        Frame::new(CLOSE, payload)
    }

    /// Sets FIN.
    pub fn fin(mut self, fin: bool) -> Frame {
        self.fin = fin;
        self
    }

    /// Sets the three reserved bits (RSV1 is 4, RSV2 is 2, RSV3 is 1).
    pub fn rsv(mut self, rsv: u8) -> Frame {
        assert!(rsv < 8, "three bits");
        self.rsv = rsv;
        self
    }

    /// Sends the payload unmasked, as no client may (RFC 6455 5.1).
    pub fn unmasked(mut self) -> Frame {
        self.mask = None;
        self
    }

    /// Writes the length in `form` rather than the shortest one.
    pub fn len_form(mut self, form: LenForm) -> Frame {
        self.form = form;
        self
    }

    /// Makes the header claim `len` payload bytes whatever the payload holds (only the payload
    /// given is written). A length over 0xFFFF is written in the 64-bit form.
    pub fn claim_len(mut self, len: u64) -> Frame {
        self.claimed_len = Some(len);
        self
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.claimed_len.unwrap_or(self.payload.len() as u64);
        let mut out = Vec::with_capacity(14 + self.payload.len());
        out.push((u8::from(self.fin) << 7) | (self.rsv << 4) | (self.opcode & 0x0F));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let form = match self.form {
            LenForm::Shortest => match len {
                0..=125 => LenForm::Short,
                126..=0xFFFF => LenForm::Ext16,
                _ => LenForm::Ext64,
            },
            form => form,
        };
        match form {
            LenForm::Short => {
                assert!(len <= 125, "{len} does not fit 7 bits");
                out.push(mask_bit | len as u8);
            }
            LenForm::Ext16 => {
                let len = u16::try_from(len).expect("the length fits 16 bits");
                out.push(mask_bit | 126);
                out.extend_from_slice(&len.to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        match self.mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(
                    self.payload
                        .iter()
                        .zip(mask.iter().cycle())
                        .map(|(b, m)| b ^ m),
                );
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// The bytes of `frames`, back to back.
pub fn encode_all(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(Frame::encode).collect()
}

/// A frame from the server: (fin, opcode, payload).
pub type ServerFrame = (bool, u8, Vec<u8>);

/// A raw client connection, upgraded to WebSocket.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    /// How long a read waits before the test fails.
    wait: Duration,
}

impl RawClient {
    /// Connects to `addr` and upgrades `/`.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient::connect_to(addr, "/", None).await
    }

    /// Connects to `addr` and upgrades `target` with a hand-written request, optionally with a
    /// small receive buffer. Nothing after the response head is consumed.
    pub async fn connect_to(addr: SocketAddr, target: &str, recv_buffer: Option<u32>) -> RawClient {
        RawClient::open(addr, target, recv_buffer, &[]).await
    }

    /// Connects to `addr` and upgrades `target`, sending `early` (frames) in the same write as
    /// the upgrade request, so that the server reads them together.
    pub async fn connect_with_early(addr: SocketAddr, target: &str, early: &[u8]) -> RawClient {
        RawClient::open(addr, target, None, early).await
    }

    async fn open(
        addr: SocketAddr,
        target: &str,
        recv_buffer: Option<u32>,
        early: &[u8],
    ) -> RawClient {
        let socket = TcpSocket::new_v4().expect("tcp socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("set SO_RCVBUF");
        }
        let mut stream = timeout(WAIT, socket.connect(addr))
            .await
            .expect("TCP connect in time")
            .expect("TCP connect");
        // Each write goes out on its own, so chopped writes reach the server as chopped.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let mut request = format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        request.extend_from_slice(early);
        stream
            .write_all(&request)
            .await
            .expect("send the upgrade request");
        // Byte by byte, so that no frame after the response head is consumed.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = timeout(WAIT, stream.read(&mut byte))
                .await
                .expect("upgrade response in time")
                .expect("read the upgrade response");
            assert_eq!(n, 1, "server closed during the handshake: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "upgrade refused: {head}");
        assert!(
            head.contains(&format!(
                "sec-websocket-accept: {}",
                ACCEPT.to_ascii_lowercase()
            )),
            "wrong or missing Sec-WebSocket-Accept: {head}"
        );
        RawClient { stream, wait: WAIT }
    }

    /// Sets how long reads wait for the server.
    pub fn with_wait(mut self, wait: Duration) -> RawClient {
        self.wait = wait;
        self
    }

    /// The TCP stream, for anything not covered here.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Writes `bytes` in one write.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes, None).await.expect("send");
    }

    /// Writes `bytes` in writes of `chop` bytes.
    pub async fn send_chopped(&mut self, bytes: &[u8], chop: usize) {
        self.try_send(bytes, Some(chop)).await.expect("send");
    }

    /// Writes `bytes` in one write, or in writes of `chop` bytes; fails as the connection does
    /// (a server that closed on a protocol error may reset it while bytes still come).
    pub async fn try_send(&mut self, bytes: &[u8], chop: Option<usize>) -> io::Result<()> {
        let chop = chop.unwrap_or(bytes.len()).max(1);
        self.try_send_sizes(bytes, std::iter::repeat(chop)).await
    }

    /// Writes `bytes` in writes of the sizes `sizes` yields (the last write takes whatever is
    /// left when it runs out). Between two writes the server gets to run, so it can read each
    /// piece on its own.
    pub async fn try_send_sizes(
        &mut self,
        mut bytes: &[u8],
        sizes: impl IntoIterator<Item = usize>,
    ) -> io::Result<()> {
        let mut sizes = sizes.into_iter();
        let mut first = true;
        while !bytes.is_empty() || first {
            if !first {
                tokio::task::yield_now().await;
            }
            first = false;
            let size = sizes.next().unwrap_or(bytes.len()).min(bytes.len());
            let (piece, rest) = bytes.split_at(size);
            timeout(self.wait, self.stream.write_all(piece))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
            bytes = rest;
        }
        Ok(())
    }

    /// Ends this side of the TCP connection (FIN), as a client does that has nothing more to
    /// send; errors are ignored (the server may have ended the connection already).
    pub async fn finish_sending(&mut self) {
        let _ = timeout(self.wait, self.stream.shutdown()).await;
    }

    /// Reads the next server frame, of any length; `None` if the server ended the connection
    /// instead (EOF or reset). Panics if nothing comes in time or if the frame breaks what
    /// RFC 6455 asks of a server: masked, reserved bits set, a longer length form than needed,
    /// a fragmented or too long control frame.
    pub async fn read_frame_or_end(&mut self) -> Option<ServerFrame> {
        let wait = self.wait;
        match timeout(wait, read_server_frame(&mut self.stream)).await {
            Ok(Ok(frame)) => Some(frame),
            Ok(Err(e)) if is_end(&e) => None,
            Ok(Err(e)) => panic!("reading a server frame failed: {e}"),
            Err(_) => panic!("no server frame within {wait:?}"),
        }
    }

    /// Reads the next server frame: (fin, opcode, payload).
    pub async fn read_frame(&mut self) -> ServerFrame {
        self.read_frame_or_end()
            .await
            .expect("a server frame, but the connection ended")
    }

    /// Reads frames until the server's close frame and returns its code (1005 when it has
    /// none) and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            let (_, opcode, payload) = self.read_frame().await;
            if opcode == CLOSE {
                return parse_close(&payload);
            }
        }
    }

    /// Asserts that the server ends the connection (EOF or reset) without sending anything
    /// more.
    pub async fn expect_eof(&mut self) {
        let wait = self.wait;
        let mut byte = [0u8; 1];
        match timeout(wait, self.stream.read(&mut byte)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(_)) => panic!("expected the connection to end, got byte {:#04x}", byte[0]),
            Ok(Err(e)) if is_end(&e) => {}
            Ok(Err(e)) => panic!("expected the connection to end, got error {e}"),
            Err(_) => panic!("the server kept the connection open for {wait:?}"),
        }
    }
}

/// The code (1005 when it has none) and reason of a server close frame's payload.
pub fn parse_close(payload: &[u8]) -> (u16, String) {
    match payload {
        [] => (1005, String::new()),
        [hi, lo, reason @ ..] => {
            let reason = std::str::from_utf8(reason).expect("close reason is UTF-8");
            (u16::from_be_bytes([*hi, *lo]), reason.to_owned())
        }
        [_] => panic!("server close frame with a 1-byte payload"),
    }
}

/// Whether `e` is the peer ending the connection.
fn is_end(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

async fn read_server_frame(stream: &mut TcpStream) -> io::Result<ServerFrame> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    let fin = head[0] & 0x80 != 0;
    let opcode = head[0] & 0x0F;
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    if head[0] & 0x70 != 0 {
        return Err(invalid(format!(
            "server frame with RSV bits {:#x}",
            head[0] & 0x70
        )));
    }
    if head[1] & 0x80 != 0 {
        return Err(invalid("masked server frame (RFC 6455 5.1)".into()));
    }
    let len = match head[1] & 0x7F {
        126 => {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let len = u64::from(u16::from_be_bytes(len));
            if len < 126 {
                return Err(invalid(format!("length {len} in the 16-bit form")));
            }
            len
        }
        127 => {
            let mut len = [0u8; 8];
            stream.read_exact(&mut len).await?;
            let len = u64::from_be_bytes(len);
            if len <= 0xFFFF {
                return Err(invalid(format!("length {len} in the 64-bit form")));
            }
            len
        }
        len => u64::from(len),
    };
    if opcode >= CLOSE && (!fin || len > 125) {
        return Err(invalid(format!(
            "control frame {opcode:#x} with fin {fin} and length {len}"
        )));
    }
    let len = usize::try_from(len).map_err(|_| invalid(format!("length {len}")))?;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok((fin, opcode, payload))
}

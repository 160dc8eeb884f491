//! The kernel's queues of one TCP connection, read from `/proc/net/tcp`: bytes written by the
//! application and not yet acknowledged by the peer (`tx_queue`: held in the kernel's send
//! buffer), and bytes received and not yet read by the application (`rx_queue`). This memory
//! belongs to the kernel, not to the process: its RSS does not show it.

use std::io;
use std::net::SocketAddr;

/// The queues of one socket, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queues {
    /// Written by the application, not yet acknowledged by the peer.
    pub send: u64,
    /// Received, not yet read by the application.
    pub recv: u64,
}

/// The queues of both ends of the IPv4 connection between `a` and `b`, in one scan of
/// `/proc/net/tcp` (which lists every socket: reading it costs the kernel time in proportion):
/// the socket whose local address is `a`, and the one whose local address is `b`. `None` for
/// an end that has no socket (any more).
pub fn connection(a: SocketAddr, b: SocketAddr) -> io::Result<(Option<Queues>, Option<Queues>)> {
    let (Some(a), Some(b)) = (encode(a), encode(b)) else {
        return Ok((None, None));
    };
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let (mut at_a, mut at_b) = (None, None);
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().take(5).collect();
        let [_, local, remote, _, queues] = fields[..] else {
            continue;
        };
        let slot = if local == a && remote == b {
            &mut at_a
        } else if local == b && remote == a {
            &mut at_b
        } else {
            continue;
        };
        *slot = parse_queues(queues);
        if at_a.is_some() && at_b.is_some() {
            break;
        }
    }
    Ok((at_a, at_b))
}

/// `tx_queue:rx_queue`, hex.
fn parse_queues(field: &str) -> Option<Queues> {
    let (tx, rx) = field.split_once(':')?;
    Some(Queues {
        send: u64::from_str_radix(tx, 16).ok()?,
        recv: u64::from_str_radix(rx, 16).ok()?,
    })
}

/// An address as `/proc/net/tcp` prints it: the IPv4 address as the kernel stores it (network
/// byte order) printed as a native-endian hex word, then the port in hex.
fn encode(addr: SocketAddr) -> Option<String> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    Some(format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_kernel() {
        if cfg!(target_endian = "little") {
            let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
            assert_eq!(encode(addr).unwrap(), "0100007F:1F90");
        }
    }

    #[tokio::test]
    async fn finds_a_connection_and_its_unread_bytes() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(&[7; 1000]).await.unwrap();
        let (local, remote) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
        for _ in 0..100 {
            let (at_server, at_client) = connection(local, remote).unwrap();
            if at_server.is_some_and(|q| q.recv == 1000) && at_client.is_some() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{:?}", connection(local, remote));
    }
}

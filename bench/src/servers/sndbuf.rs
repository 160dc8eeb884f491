//! Caps the kernel send buffer of a server's future connections: `SO_SNDBUF` set on its
//! listening socket is inherited by every socket it accepts (and turns off send-buffer
//! autotuning, which otherwise lets a loopback connection buffer up to `tcp_wmem`'s 4 MiB in
//! the kernel, in front of the server's own outbound queue). The listener is found among this
//! process's descriptors by its local address, so servers that only expose `bind` work too.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};

use socket2::SockRef;

/// Sets `SO_SNDBUF` = `bytes` on this process's listening socket bound to `addr`.
pub(super) fn cap_listener(addr: SocketAddr, bytes: u32) -> Result<(), String> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| format!("/proc/self/fd: {e}"))?;
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: `fd` was listed as open in this process just now, and is only borrowed for
        // the few socket calls below (on a descriptor that is not a socket, or was closed
        // meanwhile, they fail and we move on).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&fd);
        if is_listener_on(&socket, addr) {
            return socket
                .set_send_buffer_size(bytes as usize)
                .map_err(|e| format!("SO_SNDBUF: {e}"));
        }
    }
    Err(format!("no listening socket on {addr} in this process"))
}

/// Whether `socket` is a listening socket bound to `addr`.
fn is_listener_on(socket: &SockRef<'_>, addr: SocketAddr) -> bool {
    socket.is_listener().unwrap_or(false)
        && socket
            .local_addr()
            .is_ok_and(|local| local.as_socket() == Some(addr))
}

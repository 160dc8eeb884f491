//! Caps the kernel send buffer of a server's future connections: `SO_SNDBUF` set on its
//! listening socket is inherited by every socket it accepts (and turns off send-buffer
//! autotuning, which otherwise lets a loopback connection buffer up to `tcp_wmem`'s 4 MiB in
//! the kernel, in front of the server's own outbound queue). The listener is found among this
//! process's descriptors by its local address, so servers that only expose `bind` work too.

use std::net::SocketAddr;
use std::os::fd::RawFd;

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
        if is_listener_on(fd, addr) {
            return set_int(fd, libc::SO_SNDBUF, bytes as libc::c_int);
        }
    }
    Err(format!("no listening socket on {addr} in this process"))
}

/// Whether `fd` is a listening IPv4 socket bound to `addr`.
fn is_listener_on(fd: RawFd, addr: SocketAddr) -> bool {
    let SocketAddr::V4(want) = addr else {
        return false;
    };
    if get_int(fd, libc::SO_ACCEPTCONN) != Some(1) {
        return false;
    }
    // SAFETY: a zeroed sockaddr_in is valid; getsockname writes at most `len` bytes.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let rc = unsafe { libc::getsockname(fd, std::ptr::from_mut(&mut sa).cast(), &mut len) };
    rc == 0
        && libc::c_int::from(sa.sin_family) == libc::AF_INET
        && u16::from_be(sa.sin_port) == want.port()
        && u32::from_be(sa.sin_addr.s_addr) == u32::from(*want.ip())
}

fn get_int(fd: RawFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a c_int out-parameter of the size given; a bad fd only makes the call fail.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}

fn set_int(fd: RawFd, option: libc::c_int, value: libc::c_int) -> Result<(), String> {
    // SAFETY: a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!("SO_SNDBUF: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

//! Shared test helpers: a real WebSocket client over loopback, and node/server setup.
#![allow(dead_code, unreachable_pub)]

pub mod client;
pub mod cluster_process;
pub mod conformance;
#[cfg(feature = "client")]
pub mod connector;
#[cfg(feature = "redis")]
pub mod demo_clients;
#[cfg(feature = "redis")]
pub mod js_connector;
#[cfg(feature = "redis")]
pub mod js_package;
#[cfg(feature = "nats")]
pub mod nats;
pub mod node_js;
pub mod observed;
pub mod raw;
#[cfg(feature = "redis")]
pub mod redis;

use std::time::Duration;

/// How long a test waits for an event before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// Polls `check` every 10 ms until it passes; panics with its last complaint after [`WAIT`].
/// Only for state that changes by itself (announcements, background publishes), where there is
/// no event to await; never a fixed sleep.
pub async fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not reached within {WAIT:?}: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// A port nobody listens on right now, for a server process a test starts.
///
/// Chosen below Linux's ephemeral range (32768–60999), from which the kernel picks the local
/// ports of outgoing connections: a port taken from that range can be handed to some other
/// connection before the server binds it ("address already in use").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Start each test process somewhere else in the range, so parallel processes rarely meet.
    let offset = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (offset.wrapping_add(n) % SPAN);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

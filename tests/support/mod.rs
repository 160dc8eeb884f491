//! Shared test helpers: a real WebSocket client over loopback, and node/server setup.
#![allow(dead_code, unreachable_pub)]

pub mod client;
pub mod cluster_process;
pub mod conformance;
#[cfg(feature = "client")]
pub mod connector;
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

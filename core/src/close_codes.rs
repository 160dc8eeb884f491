//! WebSocket close codes of `PROTOCOL.md`, by name.

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The server is shutting down.
pub const GOING_AWAY: u16 = 1001;
/// No status code was present in the close frame (never sent on the wire).
pub const NO_STATUS: u16 = 1005;
/// The connection dropped without a close frame (never sent on the wire).
pub const ABNORMAL: u16 = 1006;
/// Policy violation, e.g. a client too slow to read its messages.
pub const POLICY: u16 = 1008;
/// A message larger than the configured limit.
pub const TOO_BIG: u16 = 1009;
/// The server hit an unexpected error.
pub const SERVER_ERROR: u16 = 1011;
/// The client closed manually (it will not reconnect).
pub const CLIENT_MANUAL: u16 = 4001;
/// The client saw no heartbeat reply in time.
pub const PONG_TIMEOUT: u16 = 4002;
/// The server closed a connection that stayed in background mode too long.
pub const BACKGROUND_TIMEOUT: u16 = 4003;
/// Application convention: forced logout.
pub const FORCED_LOGOUT: u16 = 4010;
/// Application convention: authentication failed.
pub const AUTH_FAILED: u16 = 4011;
/// Application convention: kicked by a newer login with the same socket id.
pub const KICKED: u16 = 4012;

//! Connector options, with the JavaScript `WebSocketConnector`'s defaults, and the URL they
//! connect to.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio_rustls::rustls::ClientConfig;
use url::Url;

use super::{Connector, ConnectorError};

/// Default interval between heartbeats (`pingInterval`).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);
/// Default wait for the heartbeat echo before closing with 4002 (`pongTimeout`).
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(2);
/// Default number of reconnection attempts at the fast interval (`fastReconnectThreshold`).
pub const DEFAULT_FAST_RECONNECT_THRESHOLD: u32 = 3;
/// Default delay of a fast reconnection attempt (`fastReconnectInterval`).
pub const DEFAULT_FAST_RECONNECT_INTERVAL: Duration = Duration::from_secs(3);
/// Default cap of the backoff delay (`reconnectMaxInterval`).
pub const DEFAULT_RECONNECT_MAX_INTERVAL: Duration = Duration::from_secs(120);
/// Default wait for a request's reply (`callbackTimeout`).
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default delay before a slow request's pending notice (`pendingTimeout`).
pub const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_millis(100);
/// Default limit on opening the connection: TCP, TLS and WebSocket handshake together.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on queued outgoing frames.
pub const DEFAULT_SEND_QUEUE: usize = 1024;
/// Default limit on an incoming message.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The settings of a [`Connector`]; build them with [`Connector::builder`].
#[derive(Clone)]
pub struct ConnectorOptions {
    pub(crate) url: String,
    pub(crate) secure: bool,
    pub(crate) ping_interval: Duration,
    pub(crate) pong_timeout: Duration,
    pub(crate) fast_reconnect_threshold: u32,
    pub(crate) fast_reconnect_interval: Duration,
    pub(crate) reconnect_max_interval: Duration,
    pub(crate) ping_message: String,
    pub(crate) callback_timeout: Duration,
    pub(crate) repeat_limit: Option<u32>,
    pub(crate) pending_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) send_queue: usize,
    pub(crate) max_message_size: usize,
    pub(crate) tls: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for ConnectorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorOptions")
            .field("url", &self.redacted_url())
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("fast_reconnect_threshold", &self.fast_reconnect_threshold)
            .field("fast_reconnect_interval", &self.fast_reconnect_interval)
            .field("reconnect_max_interval", &self.reconnect_max_interval)
            .field("ping_message", &self.ping_message)
            .field("callback_timeout", &self.callback_timeout)
            .field("repeat_limit", &self.repeat_limit)
            .field("pending_timeout", &self.pending_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("send_queue", &self.send_queue)
            .field("max_message_size", &self.max_message_size)
            .field("custom_tls", &self.tls.is_some())
            .finish()
    }
}

impl ConnectorOptions {
    /// The URL connected to, custom parameters included.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL without its query string, which may hold tokens: for logs and `Debug`.
    pub fn redacted_url(&self) -> &str {
        self.url.split('?').next().unwrap_or_default()
    }
}

/// Builds a [`Connector`]: `Connector::builder(url)`, options, then [`build`](Self::build).
#[derive(Debug)]
pub struct ConnectorBuilder {
    url: String,
    params: Vec<(String, String)>,
    options: ConnectorOptions,
}

impl ConnectorBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        ConnectorBuilder {
            url: url.into(),
            params: Vec::new(),
            options: ConnectorOptions {
                url: String::new(),
                secure: false,
                ping_interval: DEFAULT_PING_INTERVAL,
                pong_timeout: DEFAULT_PONG_TIMEOUT,
                fast_reconnect_threshold: DEFAULT_FAST_RECONNECT_THRESHOLD,
                fast_reconnect_interval: DEFAULT_FAST_RECONNECT_INTERVAL,
                reconnect_max_interval: DEFAULT_RECONNECT_MAX_INTERVAL,
                ping_message: String::new(),
                callback_timeout: DEFAULT_CALLBACK_TIMEOUT,
                repeat_limit: None,
                pending_timeout: DEFAULT_PENDING_TIMEOUT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                send_queue: DEFAULT_SEND_QUEUE,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                tls: None,
            },
        }
    }

    /// Adds a custom parameter to the URL's query string, URL-encoded (`customParams`).
    pub fn param(mut self, key: impl Into<String>, value: impl fmt::Display) -> Self {
        self.params.push((key.into(), value.to_string()));
        self
    }

    /// Interval between heartbeats (`pingInterval`, default 10 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.options.ping_interval = interval;
        self
    }

    /// How long to wait for the heartbeat echo before closing with 4002 (`pongTimeout`,
    /// default 2 s).
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.options.pong_timeout = timeout;
        self
    }

    /// Reconnection attempts made at the fast interval before backing off
    /// (`fastReconnectThreshold`, default 3).
    pub fn fast_reconnect_threshold(mut self, attempts: u32) -> Self {
        self.options.fast_reconnect_threshold = attempts;
        self
    }

    /// Delay of a fast reconnection attempt, and the start of the backoff
    /// (`fastReconnectInterval`, default 3 s).
    pub fn fast_reconnect_interval(mut self, interval: Duration) -> Self {
        self.options.fast_reconnect_interval = interval;
        self
    }

    /// Cap of the backoff delay (`reconnectMaxInterval`, default 120 s).
    pub fn reconnect_max_interval(mut self, interval: Duration) -> Self {
        self.options.reconnect_max_interval = interval;
        self
    }

    /// The heartbeat text (`pingMsg`, default `""`); must equal the server's heartbeat string.
    pub fn ping_message(mut self, message: impl Into<String>) -> Self {
        self.options.ping_message = message.into();
        self
    }

    /// Default wait for a request's reply (`callbackTimeout`, default 5 s).
    pub fn callback_timeout(mut self, timeout: Duration) -> Self {
        self.options.callback_timeout = timeout;
        self
    }

    /// Most reconnection attempts in a row (`repeatLimit`, default unlimited).
    pub fn repeat_limit(mut self, limit: Option<u32>) -> Self {
        self.options.repeat_limit = limit;
        self
    }

    /// Default delay before a slow request's pending notice (`pendingTimeout`, default 100 ms).
    pub fn pending_timeout(mut self, timeout: Duration) -> Self {
        self.options.pending_timeout = timeout;
        self
    }

    /// Limit on opening a connection: TCP, TLS and the WebSocket handshake (default 10 s).
    /// A connection not open in time counts as a failed attempt.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Most outgoing frames queued on the connection (default 1024); beyond it a send fails
    /// with [`RequestError::QueueFull`](super::RequestError::QueueFull).
    pub fn send_queue(mut self, frames: usize) -> Self {
        self.options.send_queue = frames;
        self
    }

    /// Largest incoming message accepted (default 16 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.options.max_message_size = bytes;
        self
    }

    /// The TLS settings for `wss://` (default: the Mozilla root certificates of
    /// `webpki-roots`, with the `ring` provider). Set your own to trust a private CA.
    pub fn tls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.options.tls = Some(config);
        self
    }

    /// Checks the options and creates the connector, not yet connected: register listeners,
    /// then call [`Connector::connect`].
    ///
    /// # Errors
    /// [`ConnectorError::InvalidUrl`] unless the URL is `ws://` or `wss://` with a host;
    /// [`ConnectorError::InvalidOption`] for a zero interval, timeout or queue size.
    pub fn build(mut self) -> Result<Connector, ConnectorError> {
        let (url, secure) = full_url(&self.url, &self.params)?;
        self.options.url = url;
        self.options.secure = secure;
        let o = &self.options;
        let zero = [
            ("ping_interval", o.ping_interval.is_zero()),
            ("pong_timeout", o.pong_timeout.is_zero()),
            (
                "fast_reconnect_interval",
                o.fast_reconnect_interval.is_zero(),
            ),
            ("reconnect_max_interval", o.reconnect_max_interval.is_zero()),
            ("callback_timeout", o.callback_timeout.is_zero()),
            ("connect_timeout", o.connect_timeout.is_zero()),
            ("send_queue", o.send_queue == 0),
            ("max_message_size", o.max_message_size == 0),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return Err(ConnectorError::InvalidOption(format!(
                "{name} must not be zero"
            )));
        }
        Ok(Connector::new(self.options))
    }
}

/// Checks the scheme and host, and appends the custom parameters. Returns the URL and whether
/// it is `wss://`.
///
/// The URL is parsed and normalised as browsers do (non-ASCII characters of the path and query
/// as UTF-8 `%XX`, `/` for an empty path); each parameter is appended as `key=value`, both
/// percent-encoded like JavaScript's `encodeURIComponent`.
fn full_url(url: &str, params: &[(String, String)]) -> Result<(String, bool), ConnectorError> {
    let invalid = |why: &str| ConnectorError::InvalidUrl(format!("{url}: {why}"));
    let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    let secure = match parsed.scheme() {
        "ws" => false,
        "wss" => true,
        _ => return Err(invalid("the scheme must be ws:// or wss://")),
    };
    // The WHATWG parser reads `ws:///path` as host `path` and `ws:h` as host `h`: require
    // `//` and a host right after the scheme.
    let authority = url.split_once("://").map(|(_, rest)| rest);
    if parsed.host_str().is_none_or(str::is_empty)
        || authority.is_none_or(|rest| rest.starts_with(['/', '\\', '?', '#']))
    {
        return Err(invalid("no host"));
    }
    if parsed.fragment().is_some() {
        return Err(invalid("a WebSocket URL has no fragment"));
    }
    let mut separator = match parsed.query() {
        None => Some('?'),
        Some("") => None,
        Some(_) => Some('&'),
    };
    let mut full = String::from(parsed);
    for (key, value) in params {
        if let Some(separator) = separator.replace('&') {
            full.push(separator);
        }
        full.extend(utf8_percent_encode(key, COMPONENT));
        full.push('=');
        full.extend(utf8_percent_encode(value, COMPONENT));
    }
    Ok((full, secure))
}

/// What JavaScript's `encodeURIComponent` escapes: all but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn appends_encoded_params() {
        let p = params(&[("id", "7"), ("name", "Sam Lee&co/é")]);
        let (url, secure) = full_url("ws://127.0.0.1:9000/chat", &p).unwrap();
        assert_eq!(
            url,
            "ws://127.0.0.1:9000/chat?id=7&name=Sam%20Lee%26co%2F%C3%A9"
        );
        assert!(!secure);
        let (url, secure) = full_url("wss://example.com/?a=1", &p[..1]).unwrap();
        assert_eq!(url, "wss://example.com/?a=1&id=7");
        assert!(secure);
        let (url, _) = full_url("ws://h/?", &p[..1]).unwrap();
        assert_eq!(url, "ws://h/?id=7");
        let (url, _) = full_url("ws://h", &[]).unwrap();
        assert_eq!(url, "ws://h/");
        let (url, _) = full_url("ws://h:9000?a=1", &p[..1]).unwrap();
        assert_eq!(url, "ws://h:9000/?a=1&id=7");
    }

    #[test]
    fn encodes_tricky_param_values_and_keeps_existing_params() {
        let p = params(&[
            ("q", "a b&c=d"),
            ("name", "é#1"),
            ("k&=", "+%?/"),
            ("empty", ""),
        ]);
        let (url, _) = full_url("wss://h:8443/ws?token=a%20b&x", &p).unwrap();
        assert_eq!(
            url,
            "wss://h:8443/ws?token=a%20b&x&q=a%20b%26c%3Dd&name=%C3%A9%231\
             &k%26%3D=%2B%25%3F%2F&empty="
        );
        let parsed = Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut expected = params(&[("token", "a b"), ("x", "")]);
        expected.extend(p);
        assert_eq!(pairs, expected);
        assert_eq!(parsed.fragment(), None);
    }

    #[test]
    fn encodes_non_ascii_in_the_path_and_query_like_browsers() {
        let (url, _) = full_url("ws://h:9000/聊天?room=é&a=%20", &[]).unwrap();
        assert_eq!(url, "ws://h:9000/%E8%81%8A%E5%A4%A9?room=%C3%A9&a=%20");
        let (url, _) = full_url("ws://h?é", &params(&[("id", "7")])).unwrap();
        assert_eq!(url, "ws://h/?%C3%A9&id=7");
    }

    #[test]
    fn refuses_other_schemes_and_missing_hosts() {
        for url in [
            "http://h/",
            "h:9000",
            "",
            "ws://",
            "ws:///path",
            "ws://h/#frag",
        ] {
            assert!(
                matches!(full_url(url, &[]), Err(ConnectorError::InvalidUrl(_))),
                "{url:?} accepted"
            );
        }
    }
}

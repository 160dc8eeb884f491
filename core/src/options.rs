//! Node options: defaults, the builder, and validation.

use std::sync::Arc;
use std::time::Duration;

use crate::{Broker, OptionsError};

/// Default bridge prefix for cross-server channels.
pub const DEFAULT_BRIDGE_PREFIX: &str = "csbp:";
/// Default prefix for client-delivery channels.
pub const DEFAULT_WS_PREFIX: &str = "ws:";
/// Default interval between protocol pings to each client.
pub const DEFAULT_SERVER_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Default application heartbeat string (the empty string).
pub const DEFAULT_HEARTBEAT: &str = "";
/// Default time a client may stay in background mode before it is closed with 4003.
pub const DEFAULT_BACKGROUND_CLOSE_TIME: Duration = Duration::from_secs(10);
/// Default envelope size above which bodies are zstd-compressed.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;
/// Server name used when the node runs without a broker.
pub const STANDALONE_SERVER_NAME: &str = "standalone";

/// What [`Node::bind`](crate::Node::bind) does when the socket id is already bound to
/// another connection on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicateBind {
    /// The new connection takes the id; the old one is closed with code 4012 ("kicked by a
    /// newer login"). Room memberships belong to the id and stay. This is the default.
    #[default]
    Replace,
    /// The bind fails with [`Error::AlreadyBound`](crate::Error::AlreadyBound); the old
    /// connection keeps the id.
    Refuse,
}

/// Validated node settings. Built by [`NodeBuilder`].
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub(crate) server_name: String,
    pub(crate) bridge_prefix: String,
    pub(crate) ws_prefix: String,
    pub(crate) server_ping_interval: Option<Duration>,
    pub(crate) heartbeat: String,
    pub(crate) background_close_time: Duration,
    pub(crate) preset_namespaces: Vec<String>,
    pub(crate) auto_unsubscribe: bool,
    pub(crate) custom_channels: Vec<String>,
    pub(crate) duplicate_bind: DuplicateBind,
    pub(crate) compression: bool,
    pub(crate) compression_threshold: usize,
}

impl NodeOptions {
    /// This node's name in the cluster.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }
    /// The application heartbeat string.
    pub fn heartbeat(&self) -> &str {
        &self.heartbeat
    }
    /// Interval between protocol pings, `None` when disabled.
    pub fn server_ping_interval(&self) -> Option<Duration> {
        self.server_ping_interval
    }
}

/// Builds a [`Node`](crate::Node): `Node::builder()...build().await`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
/// use crosswire_core::Node;
/// let node = Node::builder().server_name("a").heartbeat("ping").build().await?;
/// assert_eq!(node.server_name(), "a");
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct NodeBuilder {
    pub(crate) server_name: Option<String>,
    pub(crate) bridge_prefix: String,
    pub(crate) ws_prefix: String,
    pub(crate) server_ping_interval: Option<Duration>,
    pub(crate) heartbeat: String,
    pub(crate) background_close_time: Duration,
    pub(crate) preset_namespaces: Vec<String>,
    pub(crate) auto_unsubscribe: bool,
    pub(crate) custom_channels: Vec<String>,
    pub(crate) duplicate_bind: DuplicateBind,
    pub(crate) compression: bool,
    pub(crate) compression_threshold: usize,
    pub(crate) broker: Option<Arc<dyn Broker>>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("server_name", &self.server_name)
            .field("has_broker", &self.broker.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for NodeBuilder {
    fn default() -> Self {
        NodeBuilder {
            server_name: None,
            bridge_prefix: DEFAULT_BRIDGE_PREFIX.to_owned(),
            ws_prefix: DEFAULT_WS_PREFIX.to_owned(),
            server_ping_interval: Some(DEFAULT_SERVER_PING_INTERVAL),
            heartbeat: DEFAULT_HEARTBEAT.to_owned(),
            background_close_time: DEFAULT_BACKGROUND_CLOSE_TIME,
            preset_namespaces: Vec::new(),
            auto_unsubscribe: true,
            custom_channels: Vec::new(),
            duplicate_bind: DuplicateBind::Replace,
            compression: true,
            compression_threshold: DEFAULT_COMPRESSION_THRESHOLD,
            broker: None,
        }
    }
}

impl NodeBuilder {
    /// This node's name, unique in the cluster (keep it short: it travels in every message).
    ///
    /// Default: none; required when a broker is set, `"standalone"` otherwise.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The broker connecting this node to the others. Without one, the node is standalone:
    /// deliveries and cross-server events stay on this node.
    ///
    /// Default: none.
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Prefix of the cross-server channel. Must differ from the ws prefix.
    ///
    /// Default: `"csbp:"`.
    pub fn bridge_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.bridge_prefix = prefix.into();
        self
    }

    /// Prefix of the client-delivery channels. Must differ from the bridge prefix.
    ///
    /// Default: `"ws:"`.
    pub fn ws_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.ws_prefix = prefix.into();
        self
    }

    /// Interval between protocol ping frames; a client that did not answer the previous ping
    /// is terminated. `None` disables pings.
    ///
    /// Default: 20 s.
    pub fn server_ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.server_ping_interval = interval;
        self
    }

    /// The application heartbeat string, echoed back as-is. Must match the clients'.
    ///
    /// Default: `""`.
    pub fn heartbeat(mut self, heartbeat: impl Into<String>) -> Self {
        self.heartbeat = heartbeat.into();
        self
    }

    /// How long a client may stay in background mode before it is closed with 4003.
    ///
    /// Default: 10 s.
    pub fn background_close_time(mut self, time: Duration) -> Self {
        self.background_close_time = time;
        self
    }

    /// Room namespaces whose channels are subscribed at start and never unsubscribed.
    ///
    /// Default: none (namespaces are subscribed on first join).
    pub fn preset_namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.preset_namespaces = namespaces.into_iter().map(Into::into).collect();
        self
    }

    /// Unsubscribe a namespace channel when its last local member leaves (preset namespaces
    /// are never unsubscribed).
    ///
    /// Default: `true`.
    pub fn auto_unsubscribe(mut self, enabled: bool) -> Self {
        self.auto_unsubscribe = enabled;
        self
    }

    /// Application channels subscribed at start; their messages go to the custom-channel
    /// handler.
    ///
    /// Default: none.
    pub fn custom_channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.custom_channels = channels.into_iter().map(Into::into).collect();
        self
    }

    /// What binding an already-bound socket id does.
    ///
    /// Default: [`DuplicateBind::Replace`].
    pub fn duplicate_bind(mut self, policy: DuplicateBind) -> Self {
        self.duplicate_bind = policy;
        self
    }

    /// Compress node-to-node envelopes larger than the threshold with zstd. Nodes with
    /// different settings still understand each other.
    ///
    /// Default: `true`, threshold 1024 bytes.
    pub fn compression(mut self, enabled: bool, threshold: usize) -> Self {
        self.compression = enabled;
        self.compression_threshold = threshold;
        self
    }

    /// Checks every setting and freezes them.
    ///
    /// # Errors
    /// The first [`OptionsError`] found.
    pub fn validate(&self) -> Result<NodeOptions, OptionsError> {
        let b = &self.bridge_prefix;
        let w = &self.ws_prefix;
        if b.is_empty() || w.is_empty() {
            return Err(OptionsError::EmptyPrefix);
        }
        if b == w {
            return Err(OptionsError::SamePrefixes(b.clone()));
        }
        if b.starts_with(w.as_str()) || w.starts_with(b.as_str()) {
            return Err(OptionsError::OverlappingPrefixes {
                bridge: b.clone(),
                ws: w.clone(),
            });
        }
        let server_name = match (&self.server_name, &self.broker) {
            (Some(name), _) => name.clone(),
            (None, Some(_)) => return Err(OptionsError::MissingServerName),
            (None, None) => STANDALONE_SERVER_NAME.to_owned(),
        };
        if server_name.is_empty() || server_name.len() > 64 {
            return Err(OptionsError::InvalidServerName);
        }
        if let Some(ns) = self
            .preset_namespaces
            .iter()
            .find(|ns| crate::channels::check_namespace(ns).is_err())
        {
            return Err(OptionsError::InvalidNamespace(ns.clone()));
        }
        if self.server_ping_interval == Some(Duration::ZERO) {
            return Err(OptionsError::ZeroDuration("server_ping_interval"));
        }
        if self.background_close_time.is_zero() {
            return Err(OptionsError::ZeroDuration("background_close_time"));
        }
        Ok(NodeOptions {
            server_name,
            bridge_prefix: b.clone(),
            ws_prefix: w.clone(),
            server_ping_interval: self.server_ping_interval,
            heartbeat: self.heartbeat.clone(),
            background_close_time: self.background_close_time,
            preset_namespaces: self.preset_namespaces.clone(),
            auto_unsubscribe: self.auto_unsubscribe,
            custom_channels: self.custom_channels.clone(),
            duplicate_bind: self.duplicate_bind,
            compression: self.compression,
            compression_threshold: self.compression_threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Node;

    #[test]
    fn defaults_match_the_js_package() {
        let o = Node::builder().validate().unwrap();
        assert_eq!(o.bridge_prefix, "csbp:");
        assert_eq!(o.ws_prefix, "ws:");
        assert_eq!(o.server_ping_interval, Some(Duration::from_secs(20)));
        assert_eq!(o.heartbeat, "");
        assert_eq!(o.background_close_time, Duration::from_secs(10));
        assert!(o.auto_unsubscribe);
        assert!(o.compression);
        assert_eq!(o.server_name, STANDALONE_SERVER_NAME);
    }

    #[test]
    fn invalid_settings_are_typed_errors() {
        let same = Node::builder()
            .bridge_prefix("x:")
            .ws_prefix("x:")
            .validate();
        assert_eq!(same.unwrap_err(), OptionsError::SamePrefixes("x:".into()));
        let overlap = Node::builder().bridge_prefix("ws:bridge:").validate();
        assert!(matches!(
            overlap,
            Err(OptionsError::OverlappingPrefixes { .. })
        ));
        assert_eq!(
            Node::builder().ws_prefix("").validate().unwrap_err(),
            OptionsError::EmptyPrefix
        );
        assert_eq!(
            Node::builder().server_name("").validate().unwrap_err(),
            OptionsError::InvalidServerName
        );
        assert_eq!(
            Node::builder()
                .preset_namespaces(["broadcast"])
                .validate()
                .unwrap_err(),
            OptionsError::InvalidNamespace("broadcast".into())
        );
        assert_eq!(
            Node::builder()
                .background_close_time(Duration::ZERO)
                .validate()
                .unwrap_err(),
            OptionsError::ZeroDuration("background_close_time")
        );
    }
}

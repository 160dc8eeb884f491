//! Broker channel names, and the subscription state that keeps each channel subscribed
//! exactly while it is needed.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Broker, BrokerError, Error};

/// Suffix of the cross-server channel, after the bridge prefix.
pub const SERVER_BRIDGE: &str = "server_bridge";
/// Suffix of the broadcast channel, after the ws prefix.
pub const WS_BROADCAST: &str = "broadcast";
/// Suffix of the per-socket delivery channel, after the ws prefix.
pub const WS_PRIVATE_SOCKET: &str = "private_socket";

/// Rejects namespaces that are empty or would collide with the fixed ws channels.
pub(crate) fn check_namespace(namespace: &str) -> Result<(), Error> {
    if namespace.is_empty() {
        return Err(Error::invalid("room namespace", "it is empty"));
    }
    if namespace == WS_BROADCAST || namespace == WS_PRIVATE_SOCKET {
        return Err(Error::invalid(
            "room namespace",
            "`broadcast` and `private_socket` name crosswire's own channels",
        ));
    }
    Ok(())
}

/// The channel names a node uses, derived once from its prefixes.
#[derive(Debug, Clone)]
pub(crate) struct ChannelNames {
    pub(crate) bridge_prefix: String,
    pub(crate) ws_prefix: String,
    pub(crate) bridge: String,
    pub(crate) broadcast: String,
    pub(crate) private_socket: String,
}

impl ChannelNames {
    pub(crate) fn new(bridge_prefix: &str, ws_prefix: &str) -> Self {
        ChannelNames {
            bridge_prefix: bridge_prefix.to_owned(),
            ws_prefix: ws_prefix.to_owned(),
            bridge: format!("{bridge_prefix}{SERVER_BRIDGE}"),
            broadcast: format!("{ws_prefix}{WS_BROADCAST}"),
            private_socket: format!("{ws_prefix}{WS_PRIVATE_SOCKET}"),
        }
    }

    /// The channel of a room namespace.
    pub(crate) fn namespace(&self, namespace: &str) -> String {
        format!("{}{namespace}", self.ws_prefix)
    }

    /// Whether `channel` is one of crosswire's own (not a custom channel).
    pub(crate) fn is_reserved(&self, channel: &str) -> bool {
        channel.starts_with(&self.bridge_prefix) || channel.starts_with(&self.ws_prefix)
    }
}

/// Tracks which channels are subscribed on the broker.
///
/// Every change to one channel runs under that channel's own async lock, which re-reads the
/// wanted state after acquiring it: concurrent joins and leaves of a namespace therefore end
/// with the channel subscribed exactly when a member remains, and never subscribe it twice.
/// Changes to different channels never wait for each other.
pub(crate) struct Subscriptions {
    broker: Arc<dyn Broker>,
    channels: Mutex<HashMap<String, Arc<tokio::sync::Mutex<bool>>>>,
}

impl Subscriptions {
    pub(crate) fn new(broker: Arc<dyn Broker>) -> Self {
        Subscriptions {
            broker,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the subscription of `channel` match `wanted(currently_subscribed)`, evaluated under
    /// the channel lock.
    pub(crate) async fn reconcile(
        &self,
        channel: &str,
        wanted: impl Fn(bool) -> bool,
    ) -> Result<(), BrokerError> {
        let lock = self
            .channels
            .lock()
            .entry(channel.to_owned())
            .or_default()
            .clone();
        let mut subscribed = lock.lock().await;
        let want = wanted(*subscribed);
        if want && !*subscribed {
            self.broker.subscribe(channel).await?;
            *subscribed = true;
        } else if !want && *subscribed {
            self.broker.unsubscribe(channel).await?;
            *subscribed = false;
        }
        Ok(())
    }

    /// Channels currently subscribed (for tests and diagnostics).
    pub(crate) fn subscribed(&self) -> Vec<String> {
        let channels: Vec<(String, Arc<tokio::sync::Mutex<bool>>)> = self
            .channels
            .lock()
            .iter()
            .map(|(c, l)| (c.clone(), l.clone()))
            .collect();
        channels
            .into_iter()
            .filter(|(_, l)| l.try_lock().map(|s| *s).unwrap_or(true))
            .map(|(c, _)| c)
            .collect()
    }
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions").finish_non_exhaustive()
    }
}

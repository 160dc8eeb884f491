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

/// Suffix of a node's inbox channel, after the bridge prefix and before its server name.
pub const NODE_INBOX: &str = "inbox:";

fn inbox(bridge_prefix: &str, server_name: &str) -> String {
    format!("{bridge_prefix}{NODE_INBOX}{server_name}")
}

/// The channel names a node uses, derived once from its prefixes.
#[derive(Debug, Clone)]
pub(crate) struct ChannelNames {
    pub(crate) bridge_prefix: String,
    pub(crate) ws_prefix: String,
    pub(crate) bridge: String,
    pub(crate) broadcast: String,
    pub(crate) private_socket: String,
    /// This node's inbox.
    pub(crate) own_inbox: String,
}

impl ChannelNames {
    pub(crate) fn new(bridge_prefix: &str, ws_prefix: &str, server_name: &str) -> Self {
        ChannelNames {
            own_inbox: inbox(bridge_prefix, server_name),
            bridge_prefix: bridge_prefix.to_owned(),
            ws_prefix: ws_prefix.to_owned(),
            bridge: format!("{bridge_prefix}{SERVER_BRIDGE}"),
            broadcast: format!("{ws_prefix}{WS_BROADCAST}"),
            private_socket: format!("{ws_prefix}{WS_PRIVATE_SOCKET}"),
        }
    }

    /// The inbox of node `server_name`: messages for it alone (targeted unicasts, replies to
    /// its clients, binding lists for it).
    pub(crate) fn inbox(&self, server_name: &str) -> String {
        inbox(&self.bridge_prefix, server_name)
    }

    /// The channel of a room namespace.
    pub(crate) fn namespace(&self, namespace: &str) -> String {
        format!("{}{namespace}", self.ws_prefix)
    }

    /// Whether `channel` is one of crosswire's own (not a custom channel).
    pub(crate) fn is_reserved(&self, channel: &str) -> bool {
        self.reserved_prefix(channel).is_some()
    }

    /// The prefix of crosswire's own channels that `channel` starts with, if any.
    pub(crate) fn reserved_prefix(&self, channel: &str) -> Option<&str> {
        [&self.bridge_prefix, &self.ws_prefix]
            .into_iter()
            .find(|prefix| channel.starts_with(prefix.as_str()))
            .map(String::as_str)
    }
}

/// Tracks which channels are subscribed on the broker.
///
/// Every change to one channel runs under that channel's own async lock, which re-reads the
/// wanted state after acquiring it: concurrent joins and leaves of a namespace therefore end
/// with the channel subscribed exactly when a member remains, and never subscribe it twice.
/// Changes to different channels never wait for each other.
///
/// A channel's lock lives in the map only while the channel is subscribed or some change to
/// it is under way: the last change that leaves it unsubscribed removes it (see
/// [`ChannelHandle`]), so the map does not grow with every namespace ever used. A removed
/// channel is unsubscribed, which is exactly what a new lock says.
pub(crate) struct Subscriptions {
    broker: Arc<dyn Broker>,
    channels: Mutex<HashMap<String, ChannelLock>>,
}

/// One channel's lock and whether the channel is subscribed.
type ChannelLock = Arc<tokio::sync::Mutex<bool>>;

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
        let handle = ChannelHandle::new(self, channel);
        // Declared after `handle`, so released before it, however this function ends.
        let mut subscribed = handle.lock.lock().await;
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

    /// Channels currently subscribed (for tests and diagnostics). A channel whose change is
    /// under way counts as subscribed.
    pub(crate) fn subscribed(&self) -> Vec<String> {
        self.channels
            .lock()
            .iter()
            .filter(|(_, lock)| lock.try_lock().map(|s| *s).unwrap_or(true))
            .map(|(channel, _)| channel.clone())
            .collect()
    }

    /// Channels in the map (subscribed, or with a change under way).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.channels.lock().len()
    }
}

/// A task's reference to one channel's lock, for one [`Subscriptions::reconcile`].
///
/// References are only taken under the map lock, so when dropping this one finds the map's
/// and its own to be the only two, no other task holds or waits for the channel lock, and none
/// can start to before the map lock is released: if the channel is unsubscribed, its entry
/// goes. Dropping also covers a reconcile that was cancelled or failed.
struct ChannelHandle<'a> {
    subs: &'a Subscriptions,
    channel: &'a str,
    lock: ChannelLock,
}

impl<'a> ChannelHandle<'a> {
    fn new(subs: &'a Subscriptions, channel: &'a str) -> Self {
        let lock = subs
            .channels
            .lock()
            .entry(channel.to_owned())
            .or_default()
            .clone();
        ChannelHandle {
            subs,
            channel,
            lock,
        }
    }
}

impl Drop for ChannelHandle<'_> {
    fn drop(&mut self) {
        let mut channels = self.subs.channels.lock();
        let unused = Arc::strong_count(&self.lock) == 2
            && self.lock.try_lock().is_ok_and(|subscribed| !*subscribed);
        if unused {
            channels.remove(self.channel);
        }
    }
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use bytes::Bytes;
    use parking_lot::Mutex;

    use super::Subscriptions;
    use crate::{Broker, BrokerError, Inbound};

    /// A broker that only records subscriptions, yields inside each call so that concurrent
    /// reconciles interleave, and counts calls that contradict the state it recorded.
    #[derive(Default)]
    struct RecordingBroker {
        subscribed: Mutex<HashSet<String>>,
        contradictions: AtomicUsize,
    }

    #[async_trait]
    impl Broker for RecordingBroker {
        async fn publish(&self, _channel: &str, _payload: Bytes) -> Result<(), BrokerError> {
            Ok(())
        }
        async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
            tokio::task::yield_now().await;
            if !self.subscribed.lock().insert(channel.to_owned()) {
                self.contradictions.fetch_add(1, Ordering::SeqCst);
            }
            tokio::task::yield_now().await;
            Ok(())
        }
        async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
            tokio::task::yield_now().await;
            if !self.subscribed.lock().remove(channel) {
                self.contradictions.fetch_add(1, Ordering::SeqCst);
            }
            tokio::task::yield_now().await;
            Ok(())
        }
        fn take_inbound(&self) -> Option<Inbound> {
            None
        }
    }

    const FIXED: [&str; 3] = ["csbp:server_bridge", "ws:broadcast", "ws:private_socket"];

    async fn with_fixed_channels(broker: &Arc<RecordingBroker>) -> Subscriptions {
        let subs = Subscriptions::new(broker.clone());
        for channel in FIXED {
            subs.reconcile(channel, |_| true).await.unwrap();
        }
        subs
    }

    fn sorted(mut channels: Vec<String>) -> Vec<String> {
        channels.sort();
        channels
    }

    #[tokio::test]
    async fn channels_left_unsubscribed_are_forgotten() {
        let broker = Arc::new(RecordingBroker::default());
        let subs = with_fixed_channels(&broker).await;
        let members: Mutex<HashSet<String>> = Mutex::default();
        for n in 0..10_000 {
            let channel = format!("ws:ns{n}");
            members.lock().insert(channel.clone());
            subs.reconcile(&channel, |_| members.lock().contains(&channel))
                .await
                .unwrap();
            assert_eq!(subs.tracked(), FIXED.len() + 1);
            members.lock().remove(&channel);
            subs.reconcile(&channel, |_| members.lock().contains(&channel))
                .await
                .unwrap();
        }
        assert_eq!(
            subs.tracked(),
            FIXED.len(),
            "only the fixed channels remain"
        );
        assert_eq!(sorted(subs.subscribed()), FIXED);
        assert_eq!(broker.subscribed.lock().len(), FIXED.len());
        assert_eq!(broker.contradictions.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_joins_and_leaves_end_subscribed_exactly_when_members_remain() {
        const CHANNEL: &str = "ws:chat";
        const TASKS: usize = 16;
        for round in 0..40 {
            let broker = Arc::new(RecordingBroker::default());
            let subs = Arc::new(with_fixed_channels(&broker).await);
            // The namespace's members, as the node's rooms hold them.
            let members: Arc<Mutex<HashSet<usize>>> = Arc::default();
            let mut tasks = Vec::new();
            for task in 0..TASKS {
                let (subs, members) = (subs.clone(), members.clone());
                tasks.push(tokio::spawn(async move {
                    let reconcile = || subs.reconcile(CHANNEL, |_| !members.lock().is_empty());
                    // Join and leave again and again, so that the namespace keeps emptying
                    // (and its entry keeps being removed) while others join.
                    for _ in 0..100 {
                        members.lock().insert(task);
                        reconcile().await.unwrap();
                        members.lock().remove(&task);
                        reconcile().await.unwrap();
                    }
                    // In even rounds, one task in four ends as a member.
                    if round % 2 == 0 && task % 4 == 0 {
                        members.lock().insert(task);
                        reconcile().await.unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let has_members = !members.lock().is_empty();
            assert_eq!(has_members, round % 2 == 0);
            assert_eq!(
                broker.subscribed.lock().contains(CHANNEL),
                has_members,
                "round {round}: the broker's subscription"
            );
            assert_eq!(
                subs.subscribed().iter().any(|c| c == CHANNEL),
                has_members,
                "round {round}: the node's view"
            );
            assert_eq!(
                broker.contradictions.load(Ordering::SeqCst),
                0,
                "round {round}: never subscribed twice nor unsubscribed twice"
            );
            let expected = FIXED.len() + usize::from(has_members);
            assert_eq!(subs.tracked(), expected, "round {round}: map entries");

            // Every member leaves: the channel is unsubscribed and forgotten.
            members.lock().clear();
            subs.reconcile(CHANNEL, |_| false).await.unwrap();
            assert!(!broker.subscribed.lock().contains(CHANNEL));
            assert_eq!(subs.tracked(), FIXED.len(), "round {round}");
        }
    }
}

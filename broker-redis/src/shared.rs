//! State shared by the broker handle and its connection tasks: settings, callbacks, the
//! Redis nodes, and the set of channels this crosswire node needs.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crosswire_core::InboundSender;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::health::{
    Callbacks, ConnectionKind, HealthCause, HealthEvent, SubscriptionAction, SubscriptionErrorEvent,
};
use crate::instance::{Instance, Link};
use crate::strategy::{Picker, Strategy};

/// The validated settings of a broker.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) server_name: String,
    pub(crate) strategy: Strategy,
    pub(crate) force_ping: bool,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) rejoin_delay: Duration,
    pub(crate) reconnect_max_delay: Duration,
}

/// The channels the node needs. `serial` orders set changes against re-subscriptions, so a
/// channel is never lost or subscribed twice on a Redis node.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    pub(crate) serial: tokio::sync::Mutex<()>,
    pub(crate) set: RwLock<BTreeSet<String>>,
}

impl Channels {
    pub(crate) fn contains(&self, channel: &str) -> bool {
        self.set.read().contains(channel)
    }
}

pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) callbacks: Callbacks,
    pub(crate) instances: RwLock<Vec<Arc<Instance>>>,
    pub(crate) channels: Channels,
    pub(crate) inbound: InboundSender,
    pub(crate) picker: Picker,
    pub(crate) unavailable: AtomicU64,
    /// Bumped on every health report, so waiters can re-check.
    pub(crate) changed: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn instances(&self) -> Vec<Arc<Instance>> {
        self.instances.read().clone()
    }

    /// Health checks run for `fastest`, and when there are several Redis nodes and
    /// `force_ping` is on (the default).
    pub(crate) fn ping_enabled(&self) -> bool {
        self.settings.strategy == Strategy::Fastest
            || (self.settings.force_ping && self.instances.read().len() > 1)
    }

    pub(crate) fn healthy_count(&self, kind: ConnectionKind) -> usize {
        self.instances
            .read()
            .iter()
            .filter(|i| i.healthy(kind))
            .count()
    }

    /// Records a connection's health; on a change, logs it and runs the health callbacks.
    pub(crate) fn set_health(
        &self,
        instance: &Instance,
        kind: ConnectionKind,
        healthy: bool,
        cause: HealthCause,
        error: Option<String>,
    ) {
        let (was, first) = instance.swap_healthy(kind, healthy);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        if was == healthy && !first {
            return;
        }
        let event = HealthEvent {
            host: instance.node.host().to_owned(),
            port: instance.node.port(),
            server_name: self.settings.server_name.clone(),
            event: cause,
            healthy,
            error,
            healthy_publishers: self.healthy_count(ConnectionKind::Publisher),
            healthy_subscribers: self.healthy_count(ConnectionKind::Subscriber),
            total_nodes: self.instances.read().len(),
            connection: kind,
        };
        if healthy {
            tracing::info!(redis = %instance.node, connection = %kind, event = %cause, "redis connection healthy");
        } else {
            tracing::warn!(redis = %instance.node, connection = %kind, event = %cause, error = ?event.error, "redis connection unhealthy");
        }
        for callback in &self.callbacks.health {
            callback(&event);
        }
    }

    /// The publisher connection `link` failed: forget it, wake its task to reconnect.
    pub(crate) fn publisher_lost(
        &self,
        instance: &Instance,
        link: &Link<redis::aio::MultiplexedConnection>,
        cause: HealthCause,
        error: String,
    ) {
        forget(&instance.publisher, link);
        self.set_health(
            instance,
            ConnectionKind::Publisher,
            false,
            cause,
            Some(error),
        );
    }

    /// The subscriber connection `link` failed: wake its task to reconnect and resubscribe.
    pub(crate) fn subscriber_lost(
        &self,
        instance: &Instance,
        link: &Link<redis::aio::PubSubSink>,
        cause: HealthCause,
        error: String,
    ) {
        forget(&instance.subscriber, link);
        self.set_health(
            instance,
            ConnectionKind::Subscriber,
            false,
            cause,
            Some(error),
        );
    }

    pub(crate) fn subscription_error(
        &self,
        instance: &Instance,
        channel: String,
        action: SubscriptionAction,
        error: String,
    ) {
        tracing::warn!(redis = %instance.node, %channel, action = action.as_str(), %error, "redis subscription failed");
        let event = SubscriptionErrorEvent {
            host: instance.node.host().to_owned(),
            port: instance.node.port(),
            server_name: self.settings.server_name.clone(),
            channel,
            action,
            error,
        };
        for callback in &self.callbacks.subscription_error {
            callback(&event);
        }
    }

    pub(crate) fn count_unavailable(&self) {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
    }
}

/// Clears `slot` if it still holds `link` (not a newer connection), and wakes the
/// connection's task to reconnect.
fn forget<C>(slot: &Mutex<Option<Link<C>>>, link: &Link<C>) {
    {
        let mut current = slot.lock();
        if current.as_ref().is_some_and(|c| c.same(link)) {
            *current = None;
        }
    }
    link.lost.notify_one();
}

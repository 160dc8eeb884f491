//! The subscriber side: one pub/sub connection per Redis node that subscribes to every
//! channel the node needs on each (re)connect, then forwards messages to the node; and the
//! channel-set changes made by `subscribe` / `unsubscribe`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use crosswire_core::{BrokerError, BrokerErrorKind, BrokerMessage};
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};

use crate::health::{ConnectionKind, HealthCause, SubscriptionAction};
use crate::instance::{Instance, Link};
use crate::publisher::reconnect_backoff;
use crate::shared::Shared;

/// Keeps the subscriber connection of `instance` up and subscribed until the broker is
/// dropped or its node stops reading.
pub(crate) async fn run_subscriber(
    shared: Arc<Shared>,
    instance: Arc<Instance>,
    mut stop: watch::Receiver<()>,
) {
    let mut backoff = reconnect_backoff(&shared);
    loop {
        let connect = tokio::time::timeout(
            shared.settings.connect_timeout,
            instance.client.get_async_pubsub(),
        );
        let outcome = tokio::select! {
            outcome = connect => outcome,
            _ = stop.changed() => return,
        };
        let error = match outcome {
            Ok(Ok(pubsub)) => {
                let (sink, mut stream) = pubsub.split();
                let link = Link {
                    conn: sink,
                    lost: Arc::new(Notify::new()),
                };
                let subscribed = tokio::select! {
                    subscribed = resubscribe(&shared, &instance, &link) => subscribed,
                    _ = stop.changed() => return,
                };
                if subscribed {
                    backoff.reset();
                    let reason = loop {
                        tokio::select! {
                            _ = stop.changed() => return,
                            _ = link.lost.notified() => break "connection reset after an error",
                            message = stream.next() => match message {
                                None => break "connection closed",
                                Some(message) => {
                                    if !forward(&shared, &message, &mut stop).await {
                                        return;
                                    }
                                }
                            },
                        }
                    };
                    shared.subscriber_lost(
                        &instance,
                        &link,
                        HealthCause::ConnectionLost,
                        reason.into(),
                    );
                    instance.reconnects.fetch_add(1, Ordering::Relaxed);
                    crate::publisher::check_publisher(&shared, &instance);
                }
                None
            }
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!(
                "no connection within {:?}",
                shared.settings.connect_timeout
            )),
        };
        if let Some(error) = error {
            shared.set_health(
                &instance,
                ConnectionKind::Subscriber,
                false,
                HealthCause::ConnectFailed,
                Some(error),
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Subscribes a fresh connection to the whole channel set, then makes it the node's
/// subscriber and marks it healthy: never healthy before it can receive.
async fn resubscribe(
    shared: &Shared,
    instance: &Instance,
    link: &Link<redis::aio::PubSubSink>,
) -> bool {
    let _serial = shared.channels.serial.lock().await;
    let channels: Vec<String> = shared.channels.set.read().iter().cloned().collect();
    let timeout = shared.settings.command_timeout;
    let result = if channels.is_empty() {
        Ok(())
    } else {
        let mut sink = link.conn.clone();
        match tokio::time::timeout(timeout, sink.subscribe(&channels)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("SUBSCRIBE timed out after {timeout:?}")),
        }
    };
    match result {
        Ok(()) => {
            *instance.subscriber.lock() = Some(link.clone());
            shared.set_health(
                instance,
                ConnectionKind::Subscriber,
                true,
                HealthCause::Subscribed,
                None,
            );
            true
        }
        Err(error) => {
            shared.subscription_error(
                instance,
                channels.join(","),
                SubscriptionAction::Subscribe,
                error.clone(),
            );
            shared.set_health(
                instance,
                ConnectionKind::Subscriber,
                false,
                HealthCause::SubscribeFailed,
                Some(error),
            );
            false
        }
    }
}

/// Hands one message to the node, waiting while its queue is full. `false` when the node is
/// gone or the broker stopped.
async fn forward(shared: &Shared, message: &redis::Msg, stop: &mut watch::Receiver<()>) -> bool {
    let channel = message.get_channel_name();
    if !shared.channels.contains(channel) {
        // Arrived between our UNSUBSCRIBE and its confirmation: the node no longer wants it.
        return true;
    }
    let message = BrokerMessage {
        channel: channel.to_owned(),
        payload: Bytes::copy_from_slice(message.get_payload_bytes()),
    };
    tokio::select! {
        sent = shared.inbound.send(message) => sent.is_ok(),
        _ = stop.changed() => false,
    }
}

/// Adds `channel` to the set and subscribes it on every connected Redis node. A node that
/// fails is reported and reconnected, and subscribes to the set (with `channel`) then.
pub(crate) async fn subscribe(shared: &Shared, channel: &str) -> Result<(), BrokerError> {
    if shared.inbound.is_closed() {
        return Err(BrokerError::new(
            BrokerErrorKind::Closed,
            "the node of this broker is gone",
        ));
    }
    let _serial = shared.channels.serial.lock().await;
    if !shared.channels.set.write().insert(channel.to_owned()) {
        return Ok(());
    }
    change_everywhere(shared, channel, SubscriptionAction::Subscribe).await;
    Ok(())
}

/// Removes `channel` from the set and unsubscribes it on every connected Redis node.
pub(crate) async fn unsubscribe(shared: &Shared, channel: &str) -> Result<(), BrokerError> {
    let _serial = shared.channels.serial.lock().await;
    if !shared.channels.set.write().remove(channel) {
        return Ok(());
    }
    change_everywhere(shared, channel, SubscriptionAction::Unsubscribe).await;
    Ok(())
}

async fn change_everywhere(shared: &Shared, channel: &str, action: SubscriptionAction) {
    let timeout = shared.settings.command_timeout;
    let changes = shared.instances().into_iter().filter_map(|instance| {
        let link = instance.subscriber.lock().clone()?;
        Some(async move {
            let mut sink = link.conn.clone();
            let result = match action {
                SubscriptionAction::Subscribe => {
                    tokio::time::timeout(timeout, sink.subscribe(channel)).await
                }
                SubscriptionAction::Unsubscribe => {
                    tokio::time::timeout(timeout, sink.unsubscribe(channel)).await
                }
            };
            let error = match result {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("{} timed out after {timeout:?}", action.as_str()),
            };
            shared.subscription_error(&instance, channel.to_owned(), action, error.clone());
            shared.subscriber_lost(&instance, &link, HealthCause::SubscribeFailed, error);
        })
    });
    futures_util::future::join_all(changes).await;
}

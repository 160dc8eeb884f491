//! The publisher side: one multiplexed connection per Redis node with its reconnect loop,
//! the health-check `PING` loop, and publishing with fail-over.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crosswire_core::{Backoff, BrokerError, BrokerErrorKind};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RetryMethod, Value};
use tokio::sync::{watch, Notify};

use crate::health::{ConnectionKind, HealthCause};
use crate::instance::{Instance, Link};
use crate::shared::Shared;

/// First delay before reconnecting; doubles up to the configured maximum.
pub(crate) const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);

/// The reconnection schedule of a publisher or subscriber connection: from
/// [`RECONNECT_MIN_DELAY`], doubling up to `reconnect_max_delay`, each delay drawn from the
/// upper half of that ceiling so that nodes dropped by a restarted Redis don't all come back
/// at once.
pub(crate) fn reconnect_backoff(shared: &Shared) -> Backoff {
    Backoff::new(RECONNECT_MIN_DELAY, shared.settings.reconnect_max_delay)
}

/// Keeps the publisher connection of `instance` up until the broker is dropped.
pub(crate) async fn run_publisher(
    shared: Arc<Shared>,
    instance: Arc<Instance>,
    mut stop: watch::Receiver<()>,
) {
    let mut backoff = reconnect_backoff(&shared);
    loop {
        let lost = Arc::new(Notify::new());
        // Our own timeouts (`command_timeout`, `ping_timeout`) bound every command; redis-rs's
        // default 500 ms response timeout would otherwise cut them short.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(shared.settings.connect_timeout))
            .set_response_timeout(None);
        let attempt = async {
            let mut conn = instance
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let start = Instant::now();
            redis::cmd("PING").query_async::<Value>(&mut conn).await?;
            Ok::<_, RedisError>((conn, start.elapsed()))
        };
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(shared.settings.connect_timeout, attempt) => outcome,
            _ = stop.changed() => return,
        };
        match outcome {
            Ok(Ok((conn, latency))) => {
                instance.record_latency(latency);
                instance.record_answer();
                let link = Link { conn, lost };
                *instance.publisher.lock() = Some(link.clone());
                backoff.reset();
                shared.set_health(
                    &instance,
                    ConnectionKind::Publisher,
                    true,
                    HealthCause::Connected,
                    None,
                );
                tokio::select! {
                    _ = link.lost.notified() => {}
                    _ = stop.changed() => return,
                }
                shared.publisher_lost(
                    &instance,
                    &link,
                    HealthCause::ConnectionLost,
                    "connection closed".into(),
                );
                instance.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(error)) => shared.set_health(
                &instance,
                ConnectionKind::Publisher,
                false,
                HealthCause::ConnectFailed,
                Some(error.to_string()),
            ),
            Err(_) => shared.set_health(
                &instance,
                ConnectionKind::Publisher,
                false,
                HealthCause::ConnectFailed,
                Some(format!(
                    "no connection within {:?}",
                    shared.settings.connect_timeout
                )),
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Checks the publisher connection of `instance` at once (its subscriber just lost its
/// connection, so the publisher's is likely gone too).
pub(crate) fn check_publisher(shared: &Arc<Shared>, instance: &Arc<Instance>) {
    let Some(link) = instance.publisher.lock().clone() else {
        return;
    };
    let (shared, instance) = (shared.clone(), instance.clone());
    tokio::spawn(async move {
        let timeout = shared.settings.ping_timeout;
        let mut conn = link.conn.clone();
        let error =
            match tokio::time::timeout(timeout, redis::cmd("PING").query_async::<Value>(&mut conn))
                .await
            {
                Ok(Ok(_)) => return instance.record_answer(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("PING timed out after {timeout:?}"),
            };
        shared.publisher_lost(&instance, &link, HealthCause::PingFailed, error);
    });
}

/// Pings both connections of `instance` every ping interval while health checks are on.
pub(crate) async fn run_health_check(
    shared: Arc<Shared>,
    instance: Arc<Instance>,
    mut stop: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.settings.ping_interval) => {}
            _ = stop.changed() => return,
        }
        if !shared.ping_enabled() {
            continue;
        }
        let timeout = shared.settings.ping_timeout;
        let publisher = instance.publisher.lock().clone();
        if let Some(link) = publisher {
            let mut conn = link.conn.clone();
            let start = Instant::now();
            match tokio::time::timeout(timeout, redis::cmd("PING").query_async::<Value>(&mut conn))
                .await
            {
                Ok(Ok(_)) => {
                    instance.record_latency(start.elapsed());
                    instance.record_answer();
                }
                Ok(Err(e)) => {
                    shared.publisher_lost(&instance, &link, HealthCause::PingFailed, e.to_string())
                }
                Err(_) => shared.publisher_lost(
                    &instance,
                    &link,
                    HealthCause::PingFailed,
                    format!("PING timed out after {timeout:?}"),
                ),
            }
        }
        let subscriber = instance.subscriber.lock().clone();
        if let Some(link) = subscriber {
            let mut sink = link.conn.clone();
            match tokio::time::timeout(timeout, sink.ping::<Value>()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    shared.subscriber_lost(&instance, &link, HealthCause::PingFailed, e.to_string())
                }
                Err(_) => shared.subscriber_lost(
                    &instance,
                    &link,
                    HealthCause::PingFailed,
                    format!("PING timed out after {timeout:?}"),
                ),
            }
        }
    }
}

/// Publishes on one healthy Redis node chosen by the strategy; when that node fails, marks
/// it unhealthy and tries the next, until one takes the message or none is left.
///
/// A node that does not confirm in time but answered something else within the timeout is
/// slow, not failed (its replies wait behind a queue, usually this process's own backlog):
/// the message is tried on the next node, the slow one stays in use, and if no node is left
/// the error is [`BrokerErrorKind::TimedOut`].
pub(crate) async fn publish(
    shared: &Shared,
    channel: &str,
    payload: &Bytes,
) -> Result<(), BrokerError> {
    let instances = shared.instances();
    let mut excluded = vec![false; instances.len()];
    let mut last_error: Option<String> = None;
    let mut late: Option<String> = None;
    loop {
        let now = Instant::now();
        let usable: Vec<usize> = (0..instances.len())
            .filter(|&i| !excluded[i] && instances[i].usable())
            .collect();
        let settled: Vec<usize> = usable
            .iter()
            .copied()
            .filter(|&i| instances[i].settled(now, shared.settings.rejoin_delay))
            .collect();
        let candidates = if settled.is_empty() { usable } else { settled };
        let latencies: Vec<Option<Duration>> =
            candidates.iter().map(|&i| instances[i].latency()).collect();
        let Some(chosen) = shared
            .picker
            .pick(shared.settings.strategy, &latencies)
            .map(|k| candidates[k])
        else {
            if let Some(message) = late {
                return Err(BrokerError::new(BrokerErrorKind::TimedOut, message));
            }
            shared.count_unavailable();
            let mut message = format!(
                "no healthy Redis node to publish on `{channel}` ({} configured)",
                instances.len()
            );
            if let Some(error) = last_error {
                message.push_str("; last error: ");
                message.push_str(&error);
            }
            return Err(BrokerError::new(BrokerErrorKind::Unavailable, message));
        };
        excluded[chosen] = true;
        let instance = &instances[chosen];
        match publish_on(shared, instance, channel, payload).await {
            Ok(()) => {
                instance.published.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(Failure::Node(error)) => {
                instance.publish_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(redis = %instance.node, %error, "publish failed; trying another node");
                last_error = Some(error);
            }
            Err(Failure::Late(timeout)) => {
                instance.publish_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(redis = %instance.node, "publish not confirmed in time; trying another node");
                late = Some(format!(
                    "Redis {} did not confirm a publish on `{channel}` within {timeout:?} but \
                     still answers (the request waited in a queue; it may yet be delivered)",
                    instance.node
                ));
            }
            Err(Failure::Rejected(error)) => {
                instance.publish_failures.fetch_add(1, Ordering::Relaxed);
                return Err(BrokerError::new(
                    BrokerErrorKind::Rejected,
                    format!("Redis {} rejected a publish on `{channel}`", instance.node),
                )
                .with_source(error));
            }
        }
    }
}

enum Failure {
    /// The node failed (connection, timeout, server busy): another node may take it.
    Node(String),
    /// The node answered other commands within the timeout but not this one: it is slow
    /// (usually behind this process's own backlog), not failed, so it stays in use.
    Late(Duration),
    /// The message itself was refused: no node will take it.
    Rejected(RedisError),
}

async fn publish_on(
    shared: &Shared,
    instance: &Instance,
    channel: &str,
    payload: &Bytes,
) -> Result<(), Failure> {
    let link: Option<Link<MultiplexedConnection>> = instance.publisher.lock().clone();
    let Some(link) = link else {
        return Err(Failure::Node("not connected".into()));
    };
    let mut conn = link.conn.clone();
    let mut command = redis::cmd("PUBLISH");
    command.arg(channel).arg(payload.as_ref());
    let command = command.query_async::<Value>(&mut conn);
    let timeout = shared.settings.command_timeout;
    let error = match tokio::time::timeout(timeout, command).await {
        Ok(Ok(_)) => {
            instance.record_answer();
            return Ok(());
        }
        Ok(Err(e)) if matches!(e.retry_method(), RetryMethod::NoRetry) => {
            return Err(Failure::Rejected(e))
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) if instance.answered_within(timeout) => return Err(Failure::Late(timeout)),
        Err(_) => format!("PUBLISH timed out after {timeout:?} and nothing else was answered"),
    };
    shared.publisher_lost(instance, &link, HealthCause::PublishFailed, error.clone());
    Err(Failure::Node(error))
}

//! Custom channels: raw application messages on broker channels of the application's own.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::listeners::BoxFuture;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::Error;

/// A message on a custom channel.
#[derive(Debug, Clone)]
pub struct CustomMessage {
    /// The channel it arrived on.
    pub channel: String,
    /// The bytes as published.
    pub payload: Bytes,
}

pub(crate) type CustomHandler = Arc<dyn Fn(CustomMessage) -> BoxFuture + Send + Sync>;

impl Node {
    /// Sets the one handler of messages on custom channels (replacing any previous one).
    pub fn set_custom_channel_handler<F, Fut>(&self, handler: F)
    where
        F: Fn(CustomMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: CustomHandler = Arc::new(move |m| Box::pin(handler(m)));
        *self.inner.custom_handler.write() = Some(handler);
    }

    /// Removes the custom-channel handler; messages on custom channels are then counted and dropped.
    pub fn remove_custom_channel_handler(&self) {
        *self.inner.custom_handler.write() = None;
    }

    /// Subscribes a custom channel; its messages go to the custom-channel handler.
    ///
    /// # Errors
    /// [`Error::ReservedChannel`] for crosswire's own channels; a broker error.
    pub async fn subscribe(&self, channel: &str) -> Result<(), Error> {
        self.check_custom_channel(channel)?;
        self.inner
            .custom_channels
            .write()
            .insert(channel.to_owned());
        if let Some(subs) = &self.inner.subscriptions {
            subs.reconcile(channel, |_| true).await?;
        }
        Ok(())
    }

    /// Unsubscribes a custom channel.
    ///
    /// # Errors
    /// [`Error::ReservedChannel`] for crosswire's own channels; a broker error.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), Error> {
        self.check_custom_channel(channel)?;
        self.inner.custom_channels.write().remove(channel);
        if let Some(subs) = &self.inner.subscriptions {
            subs.reconcile(channel, |_| false).await?;
        }
        Ok(())
    }

    /// Publishes raw bytes on a custom channel, unchanged (no envelope). Returns `false`
    /// when the node has no broker. On the Node.js package's wire
    /// ([`Wire::JsPackage`](crate::Wire::JsPackage)) the payload is JSON text, encoded as
    /// the package publishes its values (and received ones reach the handler as JSON text).
    ///
    /// # Errors
    /// [`Error::ReservedChannel`] for crosswire's own channels; a broker error; on the
    /// package's wire, [`Error::InvalidName`] for a payload that is not JSON.
    pub async fn publish(&self, channel: &str, payload: impl Into<Bytes>) -> Result<bool, Error> {
        self.check_custom_channel(channel)?;
        let Some(broker) = &self.inner.broker else {
            return Ok(false);
        };
        let payload = match self.inner.js() {
            Some(js) => js.encode_custom(&payload.into())?.into(),
            None => payload.into(),
        };
        broker.publish(channel, payload).await.map_err(|e| {
            Metrics::add(&self.inner.metrics.publish_failures);
            Error::from(e)
        })?;
        Ok(true)
    }

    fn check_custom_channel(&self, channel: &str) -> Result<(), Error> {
        if channel.is_empty() {
            return Err(Error::invalid("channel", "it is empty"));
        }
        if self.inner.names.is_reserved(channel) {
            return Err(Error::ReservedChannel(channel.to_owned()));
        }
        Ok(())
    }
}

//! The connector's own events (open, close, pong, reconnect, …) and their arguments.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crosswire_core::{Listeners, Payload};

/// How a connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code: the server's, 4001 after [`manual_close`](crate::client::Connector::manual_close),
    /// 4002 after a pong timeout, 1006 when the connection dropped without a close frame.
    pub code: u16,
    /// The close reason.
    pub reason: Arc<str>,
}

/// A reconnection attempt about to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectInfo {
    /// The attempt's number in the current series, from 1.
    pub repeat: u32,
    /// The delay before the attempt.
    pub timeout: Duration,
}

/// A connector event kind, used with [`Connector::on_system`](crate::client::Connector::on_system).
///
/// The kinds are the unit structs of [`system`]; each names the argument its handlers get.
pub trait ConnectorEvent: sealed::Sealed + Copy + 'static {
    /// What handlers of this event receive.
    type Args: Clone + Send + 'static;
    #[doc(hidden)]
    fn listeners(events: &Events) -> &Listeners<Self::Args>;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! connector_events {
    ($($(#[$doc:meta])* $kind:ident / $field:ident: $args:ty,)*) => {
        /// The connector's own events, named as in the JavaScript connector.
        pub mod system {
            use super::*;
            $(
                $(#[$doc])*
                #[derive(Debug, Clone, Copy)]
                pub struct $kind;
                impl sealed::Sealed for $kind {}
                impl ConnectorEvent for $kind {
                    type Args = $args;
                    fn listeners(events: &Events) -> &Listeners<$args> {
                        &events.$field
                    }
                }
            )*
        }

        /// Every listener of a connector: pushes by event name, and one registry per kind.
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct Events {
            pub(crate) pushes: Listeners<Payload>,
            $(pub(crate) $field: Listeners<$args>,)*
        }

        impl Events {
            pub(crate) fn new() -> Self {
                let pushes = Listeners::default();
                Events {
                    $($field: pushes.sibling(),)*
                    pushes,
                }
            }
        }
    };
}

connector_events! {
    /// The connection opened (`open`).
    Open / open: (),
    /// The connection closed (`close`). A close does not reconnect by itself: the application
    /// decides from the code, e.g. with [`Connector::reconnect`](crate::client::Connector::reconnect).
    Close / close: CloseInfo,
    /// Connecting failed or the connection broke (`error`); a reconnection follows by itself.
    Error / error: Arc<str>,
    /// A text message arrived, before it is parsed (`message`).
    Message / message: Bytes,
    /// A heartbeat was sent (`ping`).
    Ping / ping: (),
    /// The heartbeat echo arrived; the argument is the round trip (`pong`).
    Pong / pong: Duration,
    /// A reconnection attempt is scheduled (`reconnect`).
    Reconnect / reconnect: ReconnectInfo,
    /// The repeat limit was reached; no more attempts (`repeat-limit`). The argument is the limit.
    RepeatLimit / repeat_limit: u32,
    /// No heartbeat echo within the pong timeout; the connection closes with 4002
    /// (`pong-timeout`).
    PongTimeout / pong_timeout: (),
}

impl Events {
    /// Runs the listeners of kind `K`.
    pub(crate) fn fire<K: ConnectorEvent>(&self, _kind: K, args: K::Args) {
        K::listeners(self).emit("", args);
    }
}

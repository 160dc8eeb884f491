//! Choosing the WebSocket subprotocol (RFC 6455 §1.9, §4.2.2): a browser that passes
//! `protocols` to `new WebSocket(url, protocols)` fails the handshake unless the server echoes
//! one of them in `Sec-WebSocket-Protocol`.

use std::fmt;
use std::sync::Arc;

use hyper::header::{HeaderMap, SEC_WEBSOCKET_PROTOCOL};

/// A chooser: given the client's offers in its order of preference, the one to use, if any.
pub type Chooser = Arc<dyn Fn(&[&str]) -> Option<String> + Send + Sync>;

/// How the server answers a client's subprotocol offer (see
/// [`WsConfig::subprotocols`](crate::WsConfig::subprotocols)).
#[derive(Clone, Default)]
pub enum Subprotocols {
    /// Answer with no subprotocol. A client that offered some (a browser given `protocols`)
    /// then fails the handshake itself. This is the default.
    #[default]
    None,
    /// The first of the client's offers that is in this list.
    OneOf(Vec<String>),
    /// Whatever the function returns among the client's offers (anything else counts as
    /// none).
    Choose(Chooser),
}

impl fmt::Debug for Subprotocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subprotocols::None => f.write_str("None"),
            Subprotocols::OneOf(list) => f.debug_tuple("OneOf").field(list).finish(),
            Subprotocols::Choose(_) => f.write_str("Choose(..)"),
        }
    }
}

/// The outcome for one upgrade request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Echo this one.
    Chosen(String),
    /// Answer without one.
    NoneChosen,
    /// Refuse the upgrade: the configuration requires a subprotocol and none fits.
    Refused,
}

impl Subprotocols {
    /// Chooses for a request with `headers`; `required` refuses a request without a match.
    pub(crate) fn choose(&self, headers: &HeaderMap, required: bool) -> Choice {
        let offers: Vec<&str> = headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|offer| !offer.is_empty())
            .collect();
        let chosen = match self {
            Subprotocols::None => None,
            Subprotocols::OneOf(supported) => offers
                .iter()
                .find(|offer| supported.iter().any(|s| s == *offer))
                .map(|offer| (*offer).to_owned()),
            Subprotocols::Choose(chooser) => {
                chooser(&offers).filter(|chosen| offers.contains(&chosen.as_str()))
            }
        };
        match chosen {
            Some(chosen) => Choice::Chosen(chosen),
            None if required => Choice::Refused,
            None => Choice::NoneChosen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offering(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(SEC_WEBSOCKET_PROTOCOL, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_first_supported_offer_in_the_clients_order_wins() {
        let policy = Subprotocols::OneOf(vec!["v2".into(), "v1".into()]);
        let headers = offering(&["x, v1", "v2"]);
        assert_eq!(policy.choose(&headers, false), Choice::Chosen("v1".into()));
        assert_eq!(policy.choose(&offering(&["x"]), false), Choice::NoneChosen);
        assert_eq!(policy.choose(&offering(&[]), true), Choice::Refused);
    }

    #[test]
    fn a_chooser_can_only_pick_an_offer() {
        let policy = Subprotocols::Choose(Arc::new(|offers| offers.last().map(|o| o.to_string())));
        assert_eq!(
            policy.choose(&offering(&["a, b"]), true),
            Choice::Chosen("b".into())
        );
        let liar = Subprotocols::Choose(Arc::new(|_| Some("not-offered".into())));
        assert_eq!(liar.choose(&offering(&["a"]), true), Choice::Refused);
        assert_eq!(
            Subprotocols::None.choose(&offering(&["a"]), false),
            Choice::NoneChosen
        );
    }
}

//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not a stable API).
//!
//! The client frame parser and the node envelope codec are crate-private; these wrappers give
//! the fuzzers owned, comparable views of what they produce.

use std::borrow::Cow;

use bytes::Bytes;

use crate::envelope::{self, Announce, AnnouncePhase, Body, Compression, Envelope};
use crate::frame::{self, FrameError, Incoming};
use crate::signing::ClusterKey;

/// Largest envelope body accepted after decompression.
pub const MAX_DECOMPRESSED: usize = envelope::MAX_DECOMPRESSED;

/// The cluster secret the fuzzers sign and check envelopes with.
pub const FUZZ_SECRET: &[u8; 16] = b"fuzzing-secret-0";

/// A client frame as [`parse_client_frame`] parsed it.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// The whole text is the heartbeat string.
    Heartbeat,
    /// An application event.
    Event {
        /// The event name.
        event: Cow<'a, str>,
        /// The payload's raw JSON text (`null` when absent).
        payload: &'a str,
        /// The callback id, when the frame carried a usable one.
        callback_id: Option<String>,
    },
}

/// Parses `text` as a frame a client sent, with `heartbeat` as the heartbeat string.
///
/// # Errors
/// The [`FrameError`] the node would drop the frame for.
pub fn parse_client_frame<'a>(
    text: &'a str,
    heartbeat: &str,
) -> Result<ClientFrame<'a>, FrameError> {
    Ok(match frame::parse(text, heartbeat)? {
        Incoming::Heartbeat => ClientFrame::Heartbeat,
        Incoming::Event {
            event,
            payload,
            callback_id,
        } => ClientFrame::Event {
            event,
            payload,
            callback_id,
        },
    })
}

/// An envelope with owned parts: what the fuzzers build and compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSpec {
    /// The sending node's name.
    pub sender: String,
    /// What the envelope says.
    pub body: BodySpec,
}

/// The body of an [`EnvelopeSpec`]; one variant per kind of node-to-node message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodySpec {
    /// A client push for every bound socket.
    Broadcast {
        /// The encoded client frame.
        frame: Vec<u8>,
    },
    /// A client push for the listed socket ids.
    Sockets {
        /// The socket ids.
        ids: Vec<String>,
        /// Whether a node whose inbox it reached sent it on (never forwarded again).
        forwarded: bool,
        /// The encoded client frame.
        frame: Vec<u8>,
    },
    /// A client push for the members of a room.
    Room {
        /// The room's namespace.
        namespace: String,
        /// The room.
        room: String,
        /// Socket ids left out.
        exclude: Vec<String>,
        /// Whether the room is destroyed after the push.
        destroy: bool,
        /// The encoded client frame.
        frame: Vec<u8>,
    },
    /// A cross-server event.
    CrossEvent {
        /// The event name.
        event: String,
        /// The target nodes (empty: every node).
        targets: Vec<String>,
        /// Whether the sender skips itself.
        except_self: bool,
        /// The callback id when the sender collects replies.
        callback: Option<u64>,
        /// The event's JSON payload.
        payload: Vec<u8>,
    },
    /// A reply to a cross-server event.
    CrossReply {
        /// The node that asked.
        target: String,
        /// The callback id it asked with.
        callback: u64,
        /// The reply's JSON payload; `None` when the sender has no handler for the event.
        payload: Option<Vec<u8>>,
    },
    /// A node's membership announcement.
    Announce {
        /// The sender's random per-process instance.
        instance: u64,
        /// When the sender started, in milliseconds since the Unix epoch.
        started_at_ms: u64,
        /// Whether the sender serves WebSocket clients.
        serves_clients: bool,
        /// The sender's bound clients.
        clients: u64,
        /// Why the sender announces itself.
        phase: AnnouncePhaseSpec,
    },
    /// Socket ids bound and unbound on the sender, each with its binding's stamp.
    Bindings {
        /// Ids bound, with their stamps.
        bound: Vec<(String, u64)>,
        /// Ids unbound, with their stamps.
        unbound: Vec<(String, u64)>,
    },
    /// A reply to a client request, for the node holding the client's connection.
    ClientReply {
        /// The receiving node's instance.
        instance: u64,
        /// The connection on the receiving node.
        conn: u64,
        /// The encoded client frame.
        frame: Vec<u8>,
    },
}

/// Why a node announces itself (the phase of a [`BodySpec::Announce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncePhaseSpec {
    /// It just started.
    Hello,
    /// It is alive.
    Alive,
    /// It is shutting down.
    Leaving,
}

impl From<AnnouncePhaseSpec> for AnnouncePhase {
    fn from(phase: AnnouncePhaseSpec) -> Self {
        match phase {
            AnnouncePhaseSpec::Hello => AnnouncePhase::Hello,
            AnnouncePhaseSpec::Alive => AnnouncePhase::Alive,
            AnnouncePhaseSpec::Leaving => AnnouncePhase::Leaving,
        }
    }
}

impl From<AnnouncePhase> for AnnouncePhaseSpec {
    fn from(phase: AnnouncePhase) -> Self {
        match phase {
            AnnouncePhase::Hello => AnnouncePhaseSpec::Hello,
            AnnouncePhase::Alive => AnnouncePhaseSpec::Alive,
            AnnouncePhase::Leaving => AnnouncePhaseSpec::Leaving,
        }
    }
}

/// How [`encode_envelope`] writes an envelope.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    /// Whether bodies larger than `threshold` are zstd-compressed.
    pub compress: bool,
    /// Body size above which compression applies.
    pub threshold: usize,
    /// Whether the envelope is signed with [`FUZZ_SECRET`].
    pub sign: bool,
}

fn borrowed(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

fn borrowed_stamps(list: &[(String, u64)]) -> Vec<(&str, u64)> {
    list.iter()
        .map(|(id, stamp)| (id.as_str(), *stamp))
        .collect()
}

fn fuzz_key(sign: bool) -> Option<ClusterKey> {
    sign.then(|| ClusterKey::new(FUZZ_SECRET)).flatten()
}

/// Encodes `spec` as a node would publish it.
///
/// # Errors
/// The encoder's error, as text.
pub fn encode_envelope(spec: &EnvelopeSpec, options: EncodeOptions) -> Result<Vec<u8>, String> {
    let body = match &spec.body {
        BodySpec::Broadcast { frame } => Body::Broadcast { frame },
        BodySpec::Sockets {
            ids: list,
            forwarded,
            frame,
        } => Body::Sockets {
            ids: borrowed(list),
            forwarded: *forwarded,
            frame,
        },
        BodySpec::Room {
            namespace,
            room,
            exclude,
            destroy,
            frame,
        } => Body::Room {
            namespace,
            room,
            exclude: borrowed(exclude),
            destroy: *destroy,
            frame,
        },
        BodySpec::CrossEvent {
            event,
            targets,
            except_self,
            callback,
            payload,
        } => Body::CrossEvent {
            event,
            targets: borrowed(targets),
            except_self: *except_self,
            callback: *callback,
            payload,
        },
        BodySpec::CrossReply {
            target,
            callback,
            payload,
        } => Body::CrossReply {
            target,
            callback: *callback,
            payload: payload.as_deref(),
        },
        BodySpec::Announce {
            instance,
            started_at_ms,
            serves_clients,
            clients,
            phase,
        } => Body::Announce(Announce {
            instance: *instance,
            started_at_ms: *started_at_ms,
            serves_clients: *serves_clients,
            clients: *clients,
            phase: (*phase).into(),
        }),
        BodySpec::Bindings { bound, unbound } => Body::Bindings {
            bound: borrowed_stamps(bound),
            unbound: borrowed_stamps(unbound),
        },
        BodySpec::ClientReply {
            instance,
            conn,
            frame,
        } => Body::ClientReply {
            instance: *instance,
            conn: *conn,
            frame,
        },
    };
    let envelope = Envelope {
        sender: &spec.sender,
        body,
    };
    let compression = Compression {
        enabled: options.compress,
        threshold: options.threshold,
    };
    envelope::encode(&envelope, compression, fuzz_key(options.sign).as_ref())
        .map(|bytes| bytes.to_vec())
        .map_err(|e| e.to_string())
}

/// Opens and decodes `raw` as a receiving node does (checking the signature with
/// [`FUZZ_SECRET`] when `keyed`).
///
/// # Errors
/// Why the node would drop the envelope, as text.
pub fn decode_envelope(raw: &[u8], keyed: bool) -> Result<EnvelopeSpec, String> {
    let raw = Bytes::copy_from_slice(raw);
    let body = envelope::open(&raw, fuzz_key(keyed).as_ref()).map_err(|e| e.to_string())?;
    let decoded = envelope::decode(&body).map_err(|e| e.to_string())?;
    Ok(to_spec(&decoded))
}

fn to_spec(envelope: &Envelope<'_>) -> EnvelopeSpec {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let owned_stamps = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(id, stamp)| ((*id).to_owned(), *stamp))
            .collect::<Vec<_>>()
    };
    let body = match &envelope.body {
        Body::Broadcast { frame } => BodySpec::Broadcast {
            frame: frame.to_vec(),
        },
        Body::Sockets {
            ids,
            forwarded,
            frame,
        } => BodySpec::Sockets {
            ids: owned(ids),
            forwarded: *forwarded,
            frame: frame.to_vec(),
        },
        Body::Room {
            namespace,
            room,
            exclude,
            destroy,
            frame,
        } => BodySpec::Room {
            namespace: (*namespace).to_owned(),
            room: (*room).to_owned(),
            exclude: owned(exclude),
            destroy: *destroy,
            frame: frame.to_vec(),
        },
        Body::CrossEvent {
            event,
            targets,
            except_self,
            callback,
            payload,
        } => BodySpec::CrossEvent {
            event: (*event).to_owned(),
            targets: owned(targets),
            except_self: *except_self,
            callback: *callback,
            payload: payload.to_vec(),
        },
        Body::CrossReply {
            target,
            callback,
            payload,
        } => BodySpec::CrossReply {
            target: (*target).to_owned(),
            callback: *callback,
            payload: payload.map(<[u8]>::to_vec),
        },
        Body::Announce(announce) => BodySpec::Announce {
            instance: announce.instance,
            started_at_ms: announce.started_at_ms,
            serves_clients: announce.serves_clients,
            clients: announce.clients,
            phase: announce.phase.into(),
        },
        Body::Bindings { bound, unbound } => BodySpec::Bindings {
            bound: owned_stamps(bound),
            unbound: owned_stamps(unbound),
        },
        Body::ClientReply {
            instance,
            conn,
            frame,
        } => BodySpec::ClientReply {
            instance: *instance,
            conn: *conn,
            frame: frame.to_vec(),
        },
    };
    EnvelopeSpec {
        sender: envelope.sender.to_owned(),
        body,
    }
}

/// The Node.js package's channels with its default prefixes, one of each kind: the bridge,
/// the private channel, the broadcast channel, a room namespace and a custom channel.
pub const JS_WIRE_CHANNELS: [&str; 5] = [
    "csbp:server_bridge",
    "ws:private_socket",
    "ws:broadcast",
    "ws:chat",
    "custom",
];

/// A Node.js package message as [`decode_js_wire`] typed it (opaque; compare it).
#[derive(Debug, Clone, PartialEq)]
pub struct JsWireMessage(crate::js_wire::JsMessage);

/// The package's serialization: msgpack (notepack.io) when `msgpack`, else JSON.
fn js_format(msgpack: bool) -> crate::js_wire::JsFormat {
    if msgpack {
        crate::js_wire::JsFormat::Msgpack
    } else {
        crate::js_wire::JsFormat::Json
    }
}

/// Decodes `bytes` received on `channel` (default prefixes) as a crosswire node joining a
/// cluster of the Node.js package would.
///
/// # Errors
/// Why the message is refused, as text.
pub fn decode_js_wire(channel: &str, bytes: &[u8], msgpack: bool) -> Result<JsWireMessage, String> {
    let channels = crate::js_wire::JsChannels::new("csbp:", "ws:");
    crate::js_wire::decode(&channels, channel, bytes, js_format(msgpack))
        .map(JsWireMessage)
        .map_err(|e| e.to_string())
}

/// Encodes `message` as the package would publish it.
pub fn encode_js_wire(message: &JsWireMessage, msgpack: bool) -> Vec<u8> {
    crate::js_wire::encode(&message.0, js_format(msgpack))
}

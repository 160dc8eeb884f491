//! The node-to-node envelope (`PROTOCOL.md` §2).
//!
//! Layout: one version byte, one flags byte, then the postcard-encoded [`Body`], zstd-compressed
//! when [`FLAG_ZSTD`] is set. Decoding borrows from the received bytes, and client frames are
//! handed on as slices of them, so a receiving node writes them to its sockets without a copy
//! or a JSON round trip.
//!
//! With a cluster secret ([`FLAG_SIGNED`]) a 32-byte HMAC-SHA-256 tag sits between the header
//! and the body:
//!
//! ```text
//! unsigned: [version][flags]           [body: postcard, or zstd(postcard) if FLAG_ZSTD]
//! signed:   [version][flags|SIGNED][tag][body: postcard, or zstd(postcard) if FLAG_ZSTD]
//!           tag = HMAC-SHA-256(secret, version ‖ flags ‖ body as sent)
//! ```
//!
//! The tag is checked before anything else is done with the body, decompression included, so
//! forged input costs one HMAC and no zstd work. Flag bits this build does not know make the
//! envelope undecodable: they may change the layout.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::signing::{ClusterKey, TAG_LEN};

/// The envelope format version this build writes and reads.
pub(crate) const VERSION: u8 = 2;
/// Flags bit: the body is zstd-compressed.
pub(crate) const FLAG_ZSTD: u8 = 0b0000_0001;
/// Flags bit: a [`TAG_LEN`]-byte HMAC-SHA-256 tag follows the header.
pub(crate) const FLAG_SIGNED: u8 = 0b0000_0010;
/// Every flags bit this build understands.
const KNOWN_FLAGS: u8 = FLAG_ZSTD | FLAG_SIGNED;
/// Length of the version and flags bytes.
const HEADER_LEN: usize = 2;
/// Largest body accepted after decompression, against decompression bombs.
pub(crate) const MAX_DECOMPRESSED: usize = 64 << 20;
const ZSTD_LEVEL: i32 = 1;

/// The body of a node-to-node message.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) enum Body<'a> {
    /// A client push for every bound socket of every node.
    Broadcast {
        #[serde(borrow, with = "serde_bytes")]
        frame: &'a [u8],
    },
    /// A client push for the listed socket ids: on the shared channel for whichever node has
    /// them bound, or in the inbox of the node the sender's directory names.
    Sockets {
        #[serde(borrow)]
        ids: Vec<&'a str>,
        /// Sent on by a node whose inbox it reached after the ids had moved; never forwarded
        /// again.
        forwarded: bool,
        #[serde(borrow, with = "serde_bytes")]
        frame: &'a [u8],
    },
    /// A client push for the members of a room.
    Room {
        namespace: &'a str,
        room: &'a str,
        #[serde(borrow)]
        exclude: Vec<&'a str>,
        destroy: bool,
        #[serde(borrow, with = "serde_bytes")]
        frame: &'a [u8],
    },
    /// A cross-server event.
    CrossEvent {
        event: &'a str,
        /// Empty: every node.
        #[serde(borrow)]
        targets: Vec<&'a str>,
        except_self: bool,
        /// Present when the sender collects replies.
        callback: Option<u64>,
        #[serde(borrow, with = "serde_bytes")]
        payload: &'a [u8],
    },
    /// A reply to a cross-server event, addressed to the node that asked.
    CrossReply {
        target: &'a str,
        callback: u64,
        /// `None`: the sender has no handler for the event, so it will not reply.
        #[serde(borrow, with = "serde_bytes")]
        payload: Option<&'a [u8]>,
    },
    /// A node's membership announcement (`membership`).
    Announce(Announce),
    /// Socket ids bound and unbound on the sender, each with its binding's stamp (`directory`).
    Bindings {
        #[serde(borrow)]
        bound: Vec<(&'a str, u64)>,
        #[serde(borrow)]
        unbound: Vec<(&'a str, u64)>,
    },
    /// A reply to a client request, handed to another node and sent back to the node holding
    /// the client's connection ([`ReplyHandle`](crate::ReplyHandle)).
    ClientReply {
        /// The receiving node's instance: a handle from before a restart finds no connection.
        instance: u64,
        conn: u64,
        #[serde(borrow, with = "serde_bytes")]
        frame: &'a [u8],
    },
}

/// What a node says about itself to the others.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub(crate) struct Announce {
    /// Random per process: two live instances with one server name tell each other apart.
    pub(crate) instance: u64,
    /// When the node started, in milliseconds since the Unix epoch.
    pub(crate) started_at_ms: u64,
    /// Whether a client transport serves WebSocket clients on it.
    pub(crate) serves_clients: bool,
    /// Its bound clients.
    pub(crate) clients: u64,
    pub(crate) phase: AnnouncePhase,
}

/// Why a node announces itself.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum AnnouncePhase {
    /// It just started: every node announces itself back.
    Hello,
    /// It is alive (sent every announce interval, and in answer to a hello).
    Alive,
    /// It is shutting down: forget it now.
    Leaving,
}

/// A complete envelope: who sent it, and what it says.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Envelope<'a> {
    pub(crate) sender: &'a str,
    #[serde(borrow)]
    pub(crate) body: Body<'a>,
}

/// How envelopes are compressed when encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compression {
    pub(crate) enabled: bool,
    pub(crate) threshold: usize,
}

/// Why an envelope was dropped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("envelope shorter than its header")]
    Truncated,
    #[error("unknown envelope version {0}")]
    Version(u8),
    #[error("unknown envelope flags {0:#010b}")]
    Flags(u8),
    #[error("unsigned envelope, and this node requires the cluster secret's signature")]
    Unsigned,
    #[error("envelope signature does not match the cluster secret")]
    BadSignature,
    #[error("signed envelope, and this node has no cluster secret to check it")]
    CannotVerify,
    #[error("zstd: {0}")]
    Decompress(std::io::Error),
    #[error("postcard: {0}")]
    Decode(postcard::Error),
    #[error("{0} bytes after the envelope's body")]
    Trailing(usize),
    #[error("postcard: {0}")]
    Encode(postcard::Error),
}

impl EnvelopeError {
    /// Whether the envelope was refused for its signature (missing, wrong, or not checkable
    /// here) rather than for its encoding.
    pub(crate) fn is_signature(&self) -> bool {
        matches!(
            self,
            EnvelopeError::Unsigned | EnvelopeError::BadSignature | EnvelopeError::CannotVerify
        )
    }
}

/// Whether `bytes` start like an envelope of this version. The Node.js package's messages
/// never do: they are a JSON object (`{`) or a MessagePack map (`0x80`..`0x8f`, `0xde`,
/// `0xdf`).
pub(crate) fn is_envelope(bytes: &[u8]) -> bool {
    bytes.first() == Some(&VERSION)
}

/// Encodes `envelope`, compressing its body when enabled and larger than the threshold, and
/// signing it when a cluster `key` is given.
pub(crate) fn encode(
    envelope: &Envelope<'_>,
    compression: Compression,
    key: Option<&ClusterKey>,
) -> Result<Bytes, EnvelopeError> {
    let body = postcard::to_allocvec(envelope).map_err(EnvelopeError::Encode)?;
    if compression.enabled && body.len() > compression.threshold {
        if let Ok(compressed) = zstd::bulk::compress(&body, ZSTD_LEVEL) {
            if compressed.len() < body.len() {
                return Ok(seal(FLAG_ZSTD, &compressed, key));
            }
        }
    }
    Ok(seal(0, &body, key))
}

/// Writes the header, the tag when signing, then `body` as it goes on the wire.
fn seal(flags: u8, body: &[u8], key: Option<&ClusterKey>) -> Bytes {
    let Some(key) = key else {
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&[VERSION, flags]);
        out.extend_from_slice(body);
        return out.into();
    };
    let header = [VERSION, flags | FLAG_SIGNED];
    let mut out = Vec::with_capacity(HEADER_LEN + TAG_LEN + body.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&key.tag(&header, body));
    out.extend_from_slice(body);
    out.into()
}

/// Checks the header and, with a cluster `key`, the tag; then strips them and decompresses if
/// needed. The result is what [`decode`] reads.
///
/// A node with a key refuses unsigned and wrongly signed envelopes; a node without one refuses
/// signed envelopes (it cannot check them). Either way nothing is decompressed first.
pub(crate) fn open(raw: &Bytes, key: Option<&ClusterKey>) -> Result<Bytes, EnvelopeError> {
    let [version, flags, ..] = raw[..] else {
        return Err(EnvelopeError::Truncated);
    };
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Err(EnvelopeError::Flags(flags));
    }
    let body_start = match (flags & FLAG_SIGNED != 0, key) {
        (false, None) => HEADER_LEN,
        (false, Some(_)) => return Err(EnvelopeError::Unsigned),
        (true, None) => return Err(EnvelopeError::CannotVerify),
        (true, Some(key)) => {
            let body_start = HEADER_LEN + TAG_LEN;
            let (Some(header), Some(tag), Some(body)) = (
                raw.get(..HEADER_LEN),
                raw.get(HEADER_LEN..body_start),
                raw.get(body_start..),
            ) else {
                return Err(EnvelopeError::BadSignature);
            };
            if !key.verify(header, body, tag) {
                return Err(EnvelopeError::BadSignature);
            }
            body_start
        }
    };
    if flags & FLAG_ZSTD != 0 {
        let compressed = &raw[body_start..];
        zstd::bulk::decompress(compressed, decompressed_capacity(compressed))
            .map(Bytes::from)
            .map_err(EnvelopeError::Decompress)
    } else {
        Ok(raw.slice(body_start..))
    }
}

/// The buffer to decompress `compressed` into: the size its zstd frame declares (the encoder
/// writes it, and zstd refuses a body of any other size), else [`MAX_DECOMPRESSED`]; never
/// more. `zstd::bulk::decompress` reserves the whole capacity up front, and the opened body
/// keeps it for as long as frames sliced from it are queued.
fn decompressed_capacity(compressed: &[u8]) -> usize {
    match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(declared)) => usize::try_from(declared)
            .map_or(MAX_DECOMPRESSED, |declared| declared.min(MAX_DECOMPRESSED)),
        _ => MAX_DECOMPRESSED,
    }
}

/// Decodes an opened body, borrowing from it. Bytes left after the body make it an error:
/// an encoder never writes them, so they can only be damage or forgery.
pub(crate) fn decode(body: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    match postcard::take_from_bytes(body).map_err(EnvelopeError::Decode)? {
        (envelope, []) => Ok(envelope),
        (_, rest) => Err(EnvelopeError::Trailing(rest.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: Compression = Compression {
        enabled: false,
        threshold: 0,
    };
    const ON: Compression = Compression {
        enabled: true,
        threshold: 64,
    };

    fn room(frame: &[u8]) -> Envelope<'_> {
        Envelope {
            sender: "a",
            body: Body::Room {
                namespace: "chat",
                room: "1000",
                exclude: vec!["7"],
                destroy: false,
                frame,
            },
        }
    }

    #[test]
    fn round_trip_uncompressed_and_compressed() {
        let big = vec![b'x'; 4096];
        for (frame, compression) in [(&b"{}"[..], OFF), (&big[..], ON), (&big[..], OFF)] {
            let raw = encode(&room(frame), compression, None).unwrap();
            let body = open(&raw, None).unwrap();
            assert_eq!(decode(&body).unwrap(), room(frame));
        }
    }

    #[test]
    fn compression_only_above_threshold_and_flagged() {
        let small = encode(&room(b"{}"), ON, None).unwrap();
        assert_eq!(small[1] & FLAG_ZSTD, 0);
        let big = vec![b'x'; 4096];
        let raw = encode(&room(&big), ON, None).unwrap();
        assert_eq!(raw[1] & FLAG_ZSTD, FLAG_ZSTD);
        assert!(raw.len() < 1024);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for raw in [
            &b""[..],
            b"\x01",
            b"\x09\x00abc",
            b"\x01\x00\xff\xff\xff",
            b"\x01\x01notzstd",
            b"\x01\x04{}",
        ] {
            let raw = Bytes::copy_from_slice(raw);
            let decoded = open(&raw, None).and_then(|body| decode(&body).map(|_| ()));
            assert!(decoded.is_err(), "{raw:?} decoded");
        }
    }

    #[test]
    fn bytes_after_the_body_are_refused() {
        let raw = encode(&room(b"{}"), OFF, None).unwrap();
        let body = open(&raw, None).unwrap();
        assert!(decode(&body).is_ok());
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(EnvelopeError::Trailing(1))));
    }

    fn key(secret: &[u8; 16]) -> ClusterKey {
        ClusterKey::new(secret).unwrap()
    }

    const SECRET: &[u8; 16] = b"cluster-secret-1";
    const OTHER: &[u8; 16] = b"cluster-secret-2";

    #[test]
    fn signed_round_trip_and_layout() {
        let key = key(SECRET);
        let big = vec![b'x'; 4096];
        for (frame, compression) in [(&b"{}"[..], OFF), (&big[..], ON), (&big[..], OFF)] {
            let unsigned = encode(&room(frame), compression, None).unwrap();
            let raw = encode(&room(frame), compression, Some(&key)).unwrap();
            assert_eq!(raw[0], VERSION);
            assert_eq!(raw[1], unsigned[1] | FLAG_SIGNED);
            assert_eq!(raw.len(), unsigned.len() + TAG_LEN);
            // The tag covers the header and the body exactly as sent; the body is unchanged.
            assert_eq!(&raw[HEADER_LEN + TAG_LEN..], &unsigned[HEADER_LEN..]);
            assert_eq!(
                &raw[HEADER_LEN..HEADER_LEN + TAG_LEN],
                &key.tag(&raw[..HEADER_LEN], &raw[HEADER_LEN + TAG_LEN..])[..]
            );
            let body = open(&raw, Some(&key)).unwrap();
            assert_eq!(decode(&body).unwrap(), room(frame));
        }
    }

    #[test]
    fn secret_mismatches_are_signature_errors() {
        let raw = encode(&room(b"{}"), OFF, None).unwrap();
        let signed = encode(&room(b"{}"), OFF, Some(&key(SECRET))).unwrap();
        let cases = [
            (open(&raw, Some(&key(SECRET))), "unsigned, keyed receiver"),
            (open(&signed, None), "signed, receiver without a secret"),
            (
                open(&signed, Some(&key(OTHER))),
                "signed with another secret",
            ),
        ];
        for (opened, case) in cases {
            let error = opened.expect_err(case);
            assert!(error.is_signature(), "{case}: {error}");
        }
        assert!(matches!(
            open(&raw, Some(&key(SECRET))),
            Err(EnvelopeError::Unsigned)
        ));
        assert!(matches!(
            open(&signed, None),
            Err(EnvelopeError::CannotVerify)
        ));
        assert!(matches!(
            open(&signed, Some(&key(OTHER))),
            Err(EnvelopeError::BadSignature)
        ));
    }

    #[test]
    fn every_flipped_bit_of_a_signed_envelope_is_refused() {
        let key = key(SECRET);
        let big = vec![b'x'; 4096];
        for (frame, compression) in [(&b"{\"a\":1}"[..], OFF), (&big[..], ON)] {
            let raw = encode(&room(frame), compression, Some(&key)).unwrap();
            for at in 0..raw.len() {
                for bit in 0..8 {
                    let mut forged = raw.to_vec();
                    forged[at] ^= 1 << bit;
                    let forged = Bytes::from(forged);
                    assert!(
                        open(&forged, Some(&key)).is_err(),
                        "byte {at} bit {bit} flipped and accepted"
                    );
                }
            }
            for len in 0..raw.len() {
                assert!(open(&raw.slice(..len), Some(&key)).is_err(), "cut at {len}");
            }
        }
    }

    #[test]
    fn the_tag_is_checked_before_decompression() {
        // A forged "compressed" body is refused for its tag, never handed to zstd.
        let mut forged = vec![VERSION, FLAG_SIGNED | FLAG_ZSTD];
        forged.extend_from_slice(&[0; TAG_LEN]);
        forged.extend_from_slice(b"not zstd at all");
        let opened = open(&Bytes::from(forged), Some(&key(SECRET)));
        assert!(matches!(opened, Err(EnvelopeError::BadSignature)));
    }

    #[test]
    fn unknown_flags_are_refused() {
        let raw = Bytes::from_static(b"\x02\x80{}");
        assert!(matches!(open(&raw, None), Err(EnvelopeError::Flags(0x80))));
    }
}

//! The node-to-node envelope (`PROTOCOL.md` §2).
//!
//! Layout: one version byte, one flags byte, then the postcard-encoded [`Body`], zstd-compressed
//! when [`FLAG_ZSTD`] is set. Decoding borrows from the received bytes, and client frames are
//! handed on as slices of them, so a receiving node writes them to its sockets without a copy
//! or a JSON round trip.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The envelope format version this build writes and reads.
pub(crate) const VERSION: u8 = 1;
/// Flags bit: the body is zstd-compressed.
pub(crate) const FLAG_ZSTD: u8 = 0b0000_0001;
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
    /// A client push for the listed socket ids, wherever they are bound.
    Sockets {
        #[serde(borrow)]
        ids: Vec<&'a str>,
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
        #[serde(borrow, with = "serde_bytes")]
        payload: &'a [u8],
    },
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
    #[error("zstd: {0}")]
    Decompress(std::io::Error),
    #[error("postcard: {0}")]
    Decode(postcard::Error),
    #[error("postcard: {0}")]
    Encode(postcard::Error),
}

/// Encodes `envelope`, compressing its body when enabled and larger than the threshold.
pub(crate) fn encode(
    envelope: &Envelope<'_>,
    compression: Compression,
) -> Result<Bytes, EnvelopeError> {
    let body = postcard::to_allocvec(envelope).map_err(EnvelopeError::Encode)?;
    if compression.enabled && body.len() > compression.threshold {
        if let Ok(compressed) = zstd::bulk::compress(&body, ZSTD_LEVEL) {
            if compressed.len() < body.len() {
                let mut out = Vec::with_capacity(2 + compressed.len());
                out.extend_from_slice(&[VERSION, FLAG_ZSTD]);
                out.extend_from_slice(&compressed);
                return Ok(out.into());
            }
        }
    }
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&[VERSION, 0]);
    out.extend_from_slice(&body);
    Ok(out.into())
}

/// Strips the header and decompresses if needed; the result is what [`decode`] reads.
pub(crate) fn open(raw: &Bytes) -> Result<Bytes, EnvelopeError> {
    let [version, flags, ..] = raw[..] else {
        return Err(EnvelopeError::Truncated);
    };
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    if flags & FLAG_ZSTD != 0 {
        zstd::bulk::decompress(&raw[2..], MAX_DECOMPRESSED)
            .map(Bytes::from)
            .map_err(EnvelopeError::Decompress)
    } else {
        Ok(raw.slice(2..))
    }
}

/// Decodes an opened body, borrowing from it.
pub(crate) fn decode(body: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    postcard::from_bytes(body).map_err(EnvelopeError::Decode)
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
            let raw = encode(&room(frame), compression).unwrap();
            let body = open(&raw).unwrap();
            assert_eq!(decode(&body).unwrap(), room(frame));
        }
    }

    #[test]
    fn compression_only_above_threshold_and_flagged() {
        let small = encode(&room(b"{}"), ON).unwrap();
        assert_eq!(small[1] & FLAG_ZSTD, 0);
        let big = vec![b'x'; 4096];
        let raw = encode(&room(&big), ON).unwrap();
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
        ] {
            let raw = Bytes::copy_from_slice(raw);
            let decoded = open(&raw).and_then(|body| decode(&body).map(|_| ()));
            assert!(decoded.is_err(), "{raw:?} decoded");
        }
    }
}

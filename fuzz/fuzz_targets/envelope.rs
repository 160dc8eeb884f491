//! crosswire-core's node envelope codec (`core/src/envelope.rs`: `encode`, `open`, `decode`).
//!
//! Input: `[mode][rest ...]`. An even mode builds an envelope from `rest` (with `arbitrary`)
//! and checks that it decodes back to itself, compressed or not, signed or not, and that a
//! signed envelope is refused by a node without the secret and an unsigned one by a node with
//! it. An odd mode opens `rest` as received bytes, with and without the secret; whatever
//! decodes must encode and decode back to the same envelope.
//! Always: no panic, and no single allocation above the decompression cap; for an envelope
//! this build encoded, none above twice its uncompressed size plus 1 MiB (postcard's largest
//! preallocation): a small compressed envelope must not cost the cap.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use crosswire_core::fuzzing::{
    decode_envelope, encode_envelope, AnnouncePhaseSpec, BodySpec, EncodeOptions, EnvelopeSpec,
    MAX_DECOMPRESSED,
};
use crosswire_fuzz::alloc_track::{measure, Tracking};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: Tracking = Tracking;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let options = EncodeOptions {
        compress: mode & 0x02 != 0,
        threshold: usize::from(mode >> 3) * 8,
        sign: mode & 0x04 != 0,
    };
    if mode & 1 == 0 {
        let Ok(spec) = Built::arbitrary_take_rest(Unstructured::new(rest)) else {
            return;
        };
        round_trip(&spec.into_spec(), options);
    } else {
        for keyed in [false, true] {
            if let Ok(spec) = decode(rest, keyed) {
                round_trip(
                    &spec,
                    EncodeOptions {
                        sign: keyed,
                        ..options
                    },
                );
            }
        }
    }
});

/// Decodes `raw`, allocating at most `bound` bytes at once.
fn decode_within(raw: &[u8], keyed: bool, bound: usize) -> Result<EnvelopeSpec, String> {
    let (decoded, largest) = measure(|| decode_envelope(raw, keyed));
    assert!(
        largest <= bound,
        "allocated {largest} bytes at once for a {}-byte envelope (bound {bound})",
        raw.len()
    );
    decoded
}

fn decode(raw: &[u8], keyed: bool) -> Result<EnvelopeSpec, String> {
    decode_within(raw, keyed, MAX_DECOMPRESSED)
}

fn round_trip(spec: &EnvelopeSpec, options: EncodeOptions) {
    let raw = encode_envelope(spec, options).expect("an envelope always encodes");
    let plain = EncodeOptions {
        compress: false,
        sign: false,
        ..options
    };
    let plain_len = encode_envelope(spec, plain)
        .expect("an envelope always encodes")
        .len();
    let bound = 2 * plain_len + (1 << 20);
    assert_eq!(
        decode_within(&raw, options.sign, bound).as_ref(),
        Ok(spec),
        "round trip"
    );
    assert!(
        decode(&raw, !options.sign).is_err(),
        "the other key setting opened it"
    );
}

/// An [`EnvelopeSpec`] as `arbitrary` builds it.
#[derive(Debug, Arbitrary)]
struct Built {
    sender: String,
    body: BuiltBody,
}

#[derive(Debug, Arbitrary)]
enum BuiltBody {
    Broadcast(Vec<u8>),
    Sockets(Vec<String>, bool, Vec<u8>),
    Room(String, String, Vec<String>, bool, Vec<u8>),
    CrossEvent(String, Vec<String>, bool, Option<u64>, Vec<u8>),
    CrossReply(String, u64, Option<Vec<u8>>),
    Announce(u64, u64, bool, u64, BuiltPhase),
    Bindings(Vec<(String, u64)>, Vec<(String, u64)>),
    ClientReply(u64, u64, Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum BuiltPhase {
    Hello,
    Alive,
    Leaving,
}

impl From<BuiltPhase> for AnnouncePhaseSpec {
    fn from(phase: BuiltPhase) -> Self {
        match phase {
            BuiltPhase::Hello => AnnouncePhaseSpec::Hello,
            BuiltPhase::Alive => AnnouncePhaseSpec::Alive,
            BuiltPhase::Leaving => AnnouncePhaseSpec::Leaving,
        }
    }
}

impl Built {
    fn into_spec(self) -> EnvelopeSpec {
        let body = match self.body {
            BuiltBody::Broadcast(frame) => BodySpec::Broadcast { frame },
            BuiltBody::Sockets(ids, forwarded, frame) => BodySpec::Sockets {
                ids,
                forwarded,
                frame,
            },
            BuiltBody::Room(namespace, room, exclude, destroy, frame) => BodySpec::Room {
                namespace,
                room,
                exclude,
                destroy,
                frame,
            },
            BuiltBody::CrossEvent(event, targets, except_self, callback, payload) => {
                BodySpec::CrossEvent {
                    event,
                    targets,
                    except_self,
                    callback,
                    payload,
                }
            }
            BuiltBody::CrossReply(target, callback, payload) => BodySpec::CrossReply {
                target,
                callback,
                payload,
            },
            BuiltBody::Announce(instance, started_at_ms, serves_clients, clients, phase) => {
                BodySpec::Announce {
                    instance,
                    started_at_ms,
                    serves_clients,
                    clients,
                    phase: phase.into(),
                }
            }
            BuiltBody::Bindings(bound, unbound) => BodySpec::Bindings { bound, unbound },
            BuiltBody::ClientReply(instance, conn, frame) => BodySpec::ClientReply {
                instance,
                conn,
                frame,
            },
        };
        EnvelopeSpec {
            sender: self.sender,
            body,
        }
    }
}

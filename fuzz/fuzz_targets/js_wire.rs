//! crosswire-core's codec for the Node.js package's Redis messages (`core/src/js_wire`).
//!
//! Input: `[mode][bytes ...]`. The low bits of `mode` pick the channel kind (bridge,
//! private, broadcast, room, custom) and bit 3 the format (msgpack or JSON). Whatever
//! decodes must encode to bytes that decode again, and encoding that gives canonical bytes:
//! they decode to a message that encodes to them again and decodes to itself. (The first
//! encoding may lose what JavaScript's own round trip loses: an invalid `Date` is written
//! as a zero timestamp 96, which decodes as the epoch,
//! `1e400` parses as `Infinity`, which `JSON.stringify` writes as `null`, and notepack
//! writes integers beyond 2^64 modulo 2^64.) Always: no panic.

#![no_main]

use crosswire_core::fuzzing::{decode_js_wire, encode_js_wire, JsWireMessage, JS_WIRE_CHANNELS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, bytes)) = input.split_first() else {
        return;
    };
    let channel = JS_WIRE_CHANNELS[usize::from(mode & 0x07) % JS_WIRE_CHANNELS.len()];
    let msgpack = mode & 0x08 == 0;
    let Ok(message) = decode_js_wire(channel, bytes, msgpack) else {
        return;
    };
    // One encoding may lose what JavaScript's own round trip loses; the second is canonical.
    let first = encode_js_wire(&message, msgpack);
    let second = recode(channel, &first, msgpack);
    let canonical = encode_js_wire(&second, msgpack);
    let third = recode(channel, &canonical, msgpack);
    assert_eq!(third, second, "canonical round trip");
    assert_eq!(
        encode_js_wire(&third, msgpack),
        canonical,
        "not a fixed point"
    );
});

/// Decodes bytes this codec encoded, which must succeed.
fn recode(channel: &str, bytes: &[u8], msgpack: bool) -> JsWireMessage {
    decode_js_wire(channel, bytes, msgpack)
        .unwrap_or_else(|e| panic!("encoded message does not decode: {e}"))
}

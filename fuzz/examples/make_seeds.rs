//! Writes the committed seed inputs to `fuzz/seeds/TARGET/`:
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds`.
//!
//! Frames are built by `crosswire_fuzz::frames` and envelopes by crosswire's own encoder, so
//! the seeds stay valid when the formats change (run it again).

use std::path::Path;

use crosswire_core::fuzzing::{
    encode_envelope, AnnouncePhaseSpec, BodySpec, EncodeOptions, EnvelopeSpec,
};
use crosswire_fuzz::frames::{client_frame, close_payload};
use crosswire_fuzz::plan::{Plan, LIMITS};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, seeds) in [
        ("frame_reader", frame_seeds()),
        ("frame_differential", frame_seeds()),
        ("client_frame", client_frame_seeds()),
        ("envelope", envelope_seeds()),
    ] {
        let dir = root.join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes)?;
        }
    }
    Ok(())
}

fn limit(max: usize) -> u8 {
    LIMITS
        .iter()
        .position(|&l| l == max)
        .expect("a listed limit") as u8
}

/// `[header][frames]`: the limit, the read sizes (low nibble: a size class; 0x10: varying
/// sizes with `Pending` reads), pauses after every other message, then the frames.
fn frames(max: usize, chunking: u8, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Plan::header(limit(max), chunking, 0b0101_0101).to_vec();
    frames.iter().for_each(|f| out.extend_from_slice(f));
    out
}

fn frame_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let text = |s: &str| client_frame(true, 0x1, s.as_bytes(), None);
    let mib = 1 << 20;
    let json = r#"{"event":"say","payload":{"msg":"hi"},"callbackId":"c1"}"#;
    vec![
        ("text-short", frames(mib, 0, &[text("hello")])),
        (
            "text-json-and-heartbeat",
            frames(mib, 0x01, &[text(json), text("")]),
        ),
        (
            "text-16bit-len",
            frames(mib, 0x03, &[text(&"a".repeat(300))]),
        ),
        (
            "text-64bit-len",
            frames(mib, 0, &[client_frame(true, 0x1, b"long form", Some(8))]),
        ),
        (
            "text-over-stack-read",
            frames(9_000, 0x1B, &[text(&"é".repeat(4_400)), text("after")]),
        ),
        (
            "fragmented-text-with-ping",
            frames(
                mib,
                0x12,
                &[
                    client_frame(false, 0x1, b"he", None),
                    client_frame(true, 0x9, b"ping", None),
                    client_frame(false, 0x0, b"ll", None),
                    client_frame(true, 0x0, b"o", None),
                ],
            ),
        ),
        (
            "fragmented-utf8-split",
            frames(
                mib,
                0x01,
                &[
                    client_frame(false, 0x1, &"€".as_bytes()[..1], None),
                    client_frame(true, 0x0, &"€".as_bytes()[1..], None),
                ],
            ),
        ),
        (
            "binary-fragmented-then-pong",
            frames(
                mib,
                0x05,
                &[
                    client_frame(false, 0x2, b"\x00\x01", None),
                    client_frame(true, 0x0, b"\x02", None),
                    client_frame(true, 0xA, b"", None),
                ],
            ),
        ),
        (
            "binary-json",
            frames(mib, 0x01, &[client_frame(true, 0x2, json.as_bytes(), None)]),
        ),
        (
            "binary-fragmented-not-utf8-with-ping",
            frames(
                mib,
                0x13,
                &[
                    client_frame(false, 0x2, b"\xff\xe2\x82", None),
                    client_frame(true, 0x9, b"ping", None),
                    client_frame(false, 0x0, b"\xc3", None),
                    client_frame(true, 0x0, b"\x28\xed\xa0\x80", None),
                    text("after"),
                ],
            ),
        ),
        (
            "binary-fragments-over-limit",
            frames(
                7,
                0x02,
                &[
                    client_frame(false, 0x2, b"1234", None),
                    client_frame(true, 0x0, b"5678", None),
                ],
            ),
        ),
        (
            "close-with-reason",
            frames(
                mib,
                0,
                &[client_frame(true, 0x8, &close_payload(1000, "bye"), None)],
            ),
        ),
        (
            "close-empty",
            frames(mib, 0x1, &[text("x"), client_frame(true, 0x8, b"", None)]),
        ),
        ("over-small-limit", frames(7, 0, &[text("12345678")])),
        (
            "fragments-over-limit",
            frames(
                7,
                0x02,
                &[
                    client_frame(false, 0x1, b"1234", None),
                    client_frame(true, 0x0, b"5678", None),
                ],
            ),
        ),
        (
            "pending-reads",
            frames(mib, 0x13, &[text("a"), text("bc"), text(json)]),
        ),
    ]
}

fn client_frame_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let seed = |selector: u8, text: &str| [&[selector][..], text.as_bytes()].concat();
    vec![
        ("heartbeat-empty", seed(0, "")),
        ("heartbeat-ping", seed(1, "ping")),
        ("heartbeat-custom", seed(0x83, "hb!hb!")),
        (
            "event",
            seed(0, r#"{"event":"say","payload":{"msg":"hi"}}"#),
        ),
        (
            "request",
            seed(
                0,
                r#"{"event":"rpc","payload":[1,2.5,null],"callbackId":"c1"}"#,
            ),
        ),
        (
            "reply",
            seed(0, r#"{"callbackId":"c1","payload":{"ok":true}}"#),
        ),
        (
            "escapes",
            seed(
                0,
                r#" {"event":"caf\u00e9","payload":"\ud83d\ude00","x":{}} "#,
            ),
        ),
        ("not-an-object", seed(0, "[1,2]")),
        ("no-event", seed(0, r#"{"payload":1}"#)),
    ]
}

fn envelope_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let frame = br#"{"event":"say","payload":{"msg":"hi"}}"#.to_vec();
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let spec = |body| EnvelopeSpec {
        sender: "node-a".into(),
        body,
    };
    let room = spec(BodySpec::Room {
        namespace: "chat".into(),
        room: "1000".into(),
        exclude: ids(&["7"]),
        destroy: false,
        frame: frame.repeat(20),
    });
    let bodies = [
        (
            "broadcast",
            spec(BodySpec::Broadcast {
                frame: frame.clone(),
            }),
        ),
        (
            "sockets",
            spec(BodySpec::Sockets {
                ids: ids(&["1", "2"]),
                forwarded: false,
                frame: frame.clone(),
            }),
        ),
        (
            "sockets-forwarded",
            spec(BodySpec::Sockets {
                ids: ids(&["3"]),
                forwarded: true,
                frame: frame.clone(),
            }),
        ),
        (
            "cross-event",
            spec(BodySpec::CrossEvent {
                event: "sync".into(),
                targets: ids(&["node-b"]),
                except_self: true,
                callback: Some(42),
                payload: b"{\"n\":1}".to_vec(),
            }),
        ),
        (
            "cross-reply",
            spec(BodySpec::CrossReply {
                target: "node-a".into(),
                callback: 42,
                payload: Some(b"[1,2,3]".to_vec()),
            }),
        ),
        (
            "cross-reply-unhandled",
            spec(BodySpec::CrossReply {
                target: "node-a".into(),
                callback: 43,
                payload: None,
            }),
        ),
        (
            "announce-hello",
            spec(BodySpec::Announce {
                instance: 0x5eed_f00d_cafe_d00d,
                started_at_ms: 1_767_225_600_000,
                serves_clients: true,
                clients: 0,
                phase: AnnouncePhaseSpec::Hello,
            }),
        ),
        (
            "announce-alive",
            spec(BodySpec::Announce {
                instance: 0x5eed_f00d_cafe_d00d,
                started_at_ms: 1_767_225_600_000,
                serves_clients: false,
                clients: 1234,
                phase: AnnouncePhaseSpec::Alive,
            }),
        ),
        (
            "announce-leaving",
            spec(BodySpec::Announce {
                instance: 7,
                started_at_ms: 0,
                serves_clients: true,
                clients: u64::MAX,
                phase: AnnouncePhaseSpec::Leaving,
            }),
        ),
        (
            "bindings",
            spec(BodySpec::Bindings {
                bound: vec![
                    ("1".into(), 1_767_225_600_001),
                    ("2".into(), 1_767_225_600_002),
                ],
                unbound: vec![("7".into(), 1_767_225_600_003)],
            }),
        ),
        (
            "client-reply",
            spec(BodySpec::ClientReply {
                instance: 0x5eed_f00d_cafe_d00d,
                conn: 17,
                frame: br#"{"callbackId":"c1","payload":{"ok":true}}"#.to_vec(),
            }),
        ),
    ];
    // Mode byte: bit 0 = decode the rest; 0x02 compress and 0x04 sign when re-encoding.
    let raw = |mode: u8, spec: &EnvelopeSpec, compress: bool, sign: bool| {
        let options = EncodeOptions {
            compress,
            threshold: 0,
            sign,
        };
        let encoded = encode_envelope(spec, options).expect("seed envelope");
        [&[mode][..], &encoded].concat()
    };
    let mut seeds: Vec<(&'static str, Vec<u8>)> = bodies
        .iter()
        .map(|(name, spec)| (*name, raw(0x01, spec, false, false)))
        .collect();
    seeds.push(("room-compressed", raw(0x03, &room, true, false)));
    seeds.push(("room-signed", raw(0x05, &room, false, true)));
    seeds.push(("room-signed-compressed", raw(0x07, &room, true, true)));
    seeds.push(("built", vec![0x02, 5, b'n', b'o', b'd', b'e', 0, 2, 1, 2]));
    seeds
}

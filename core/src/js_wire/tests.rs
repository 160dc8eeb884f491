//! Unit tests: round trips of every message kind in both formats, notepack's exact bytes for
//! tricky numbers and strings, and hostile input.

use super::value::{JsObject, JsValue};
use super::*;

/// The package's default channels.
fn channels() -> JsChannels {
    JsChannels::new("csbp:", "ws:")
}

/// A JSON text as a value.
fn js(text: &str) -> JsValue {
    match json::parse(text, &mut Budget::new()) {
        Ok(value) => value,
        Err(e) => panic!("bad test JSON {text}: {e}"),
    }
}

/// One message of each kind, with the channel it goes on.
fn samples() -> Vec<(String, JsMessage)> {
    let c = channels();
    let event = |kind, callback_id: Option<&str>| BridgeMessage {
        kind,
        event: "chat".into(),
        sender: "node-a".into(),
        targets: vec!["node-b".into()],
        callback_id: callback_id.map(str::to_owned),
        payload: Some(js(
            r#"{"n":[1,-2,1.5,1e15,-4294967297,null,true],"s":"é\n","o":{}}"#,
        )),
    };
    vec![
        (
            c.bridge().into(),
            JsMessage::Bridge(event(BridgeKind::Event, None)),
        ),
        (
            c.bridge().into(),
            JsMessage::Bridge(event(BridgeKind::Event, Some("a-b-c-1"))),
        ),
        (
            c.bridge().into(),
            JsMessage::Bridge(event(BridgeKind::PromiseEvent, Some("x-1"))),
        ),
        (
            c.bridge().into(),
            JsMessage::Bridge(BridgeMessage {
                kind: BridgeKind::Reply,
                event: REPLY_EVENT.into(),
                sender: "node-b".into(),
                targets: vec![],
                callback_id: Some("node-a-m1-abcd-1".into()),
                payload: None,
            }),
        ),
        (
            c.private().into(),
            JsMessage::Sockets {
                ids: vec!["u1".into()],
                single: true,
                data: r#"{"event":"hi","payload":1}"#.into(),
                sender: "node-a".into(),
            },
        ),
        (
            c.private().into(),
            JsMessage::Sockets {
                ids: vec!["u1".into(), "u2".into()],
                single: false,
                data: "x".into(),
                sender: "node-a".into(),
            },
        ),
        (
            c.broadcast().into(),
            JsMessage::Broadcast {
                data: "y".into(),
                sender: "node-a".into(),
            },
        ),
        (
            c.room("chat"),
            JsMessage::Room {
                namespace: "chat".into(),
                room: "r1".into(),
                exclude: vec!["u3".into()],
                data: "z".into(),
                sender: "node-a".into(),
            },
        ),
        (
            "custom".into(),
            JsMessage::Custom(js(r#"{"any":[1,"two"]}"#)),
        ),
    ]
}

#[test]
fn every_kind_round_trips_in_both_formats() {
    for format in [JsFormat::Msgpack, JsFormat::Json] {
        for (channel, message) in samples() {
            let bytes = encode(&message, format);
            assert_eq!(
                decode(&channels(), &channel, &bytes, format),
                Ok(message.clone()),
                "{format:?} on {channel}"
            );
        }
    }
}

#[test]
fn json_layouts_follow_the_package() {
    let texts: Vec<String> = samples()
        .iter()
        .map(|(_, m)| String::from_utf8_lossy(&encode(m, JsFormat::Json)).into_owned())
        .collect();
    assert!(texts[0].starts_with(r#"{"data":{"event":"chat","senderServer":"node-a","payload":"#));
    assert!(texts[0].ends_with(r#""targetServer":["node-b"]}}"#));
    assert!(texts[2].starts_with(r#"{"data":{"payload":"#));
    assert_eq!(
        texts[3],
        r#"{"data":{"event":"_Cs_Cb_","senderServer":"node-b","targetServer":[],"callbackId":"node-a-m1-abcd-1","isCallback":true}}"#
    );
    assert_eq!(
        texts[4],
        r#"{"data":"{\"event\":\"hi\",\"payload\":1}","socketId":"u1","senderServer":"node-a"}"#
    );
    assert_eq!(
        texts[7],
        r#"{"data":"z","roomNamespace":"chat","roomId":"r1","senderServer":"node-a","excludeSocketIds":["u3"]}"#
    );
}

/// notepack's bytes for one number.
fn number_bytes(n: f64) -> Vec<u8> {
    msgpack::encode(&JsValue::Number(n))
}

#[test]
fn numbers_take_notepacks_forms() {
    assert_eq!(number_bytes(0.0), [0x00]);
    assert_eq!(number_bytes(-0.0), [0x00]);
    assert_eq!(number_bytes(127.0), [0x7f]);
    assert_eq!(number_bytes(128.0), [0xcc, 0x80]);
    assert_eq!(number_bytes(65_535.0), [0xcd, 0xff, 0xff]);
    assert_eq!(
        number_bytes(4_294_967_295.0),
        [0xce, 0xff, 0xff, 0xff, 0xff]
    );
    assert_eq!(
        number_bytes(4_294_967_296.0),
        [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]
    );
    assert_eq!(
        number_bytes(2f64.powi(53)),
        [0xcf, 0, 0x20, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(number_bytes(-1.0), [0xff]);
    assert_eq!(number_bytes(-32.0), [0xe0]);
    assert_eq!(number_bytes(-33.0), [0xd0, 0xdf]);
    assert_eq!(number_bytes(-2_147_483_648.0), [0xd2, 0x80, 0, 0, 0]);
    assert_eq!(
        number_bytes(-2_147_483_649.0),
        [0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]
    );
    assert_eq!(number_bytes(1.5), [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
    // Beyond 2^64 notepack's shifts wrap: 2^64 + 2^12 is written as 2^12.
    assert_eq!(
        number_bytes(2f64.powi(64) + 4096.0),
        [0xcf, 0, 0, 0, 0, 0, 0, 0x10, 0]
    );
    assert_eq!(number_bytes(1e300), [0xcf, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        number_bytes(f64::INFINITY),
        [0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn json_numbers_print_as_javascript_does() {
    for (n, text) in [
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (-0.0, "0"),
        (123.456, "123.456"),
        (2f64.powi(53) + 2.0, "9007199254740994"),
        (5e-324, "5e-324"),
        (f64::INFINITY, "null"),
    ] {
        assert_eq!(JsValue::Number(n).to_json(), text);
    }
}

#[test]
fn strings_take_notepacks_length_forms() {
    let of = |len: usize| msgpack::encode(&JsValue::String("a".repeat(len)));
    assert_eq!(of(31)[0], 0xbf);
    assert_eq!(&of(32)[..2], [0xd9, 32]);
    assert_eq!(&of(256)[..3], [0xda, 1, 0]);
    assert_eq!(&of(65_536)[..5], [0xdb, 0, 1, 0, 0]);
    // Lengths count UTF-8 bytes, not characters.
    assert_eq!(
        msgpack::encode(&JsValue::String("é".into())),
        [0xa2, 0xc3, 0xa9]
    );
    assert_eq!(
        JsValue::String("\u{1}\"\\\u{7f}é".into()).to_json(),
        "\"\\u0001\\\"\\\\\u{7f}é\""
    );
}

#[test]
fn objects_keep_javascripts_key_order() {
    assert_eq!(
        js(r#"{"b":1,"2":2,"a":3,"1":4,"b":5}"#).to_json(),
        r#"{"1":4,"2":2,"b":5,"a":3}"#
    );
    // "01" and 2^32 - 1 are no array indices.
    assert_eq!(
        js(r#"{"x":0,"01":1,"4294967295":2,"7":3}"#).to_json(),
        r#"{"7":3,"x":0,"01":1,"4294967295":2}"#
    );
}

#[test]
fn undefined_and_buffers_decode_as_the_package_sees_them() {
    // {a: undefined (fixext 1 type 0), b: [undefined], c: <Buffer 01 02>}
    let bytes = [
        0x83, 0xa1, b'a', 0xd4, 0x00, 0x00, 0xa1, b'b', 0x91, 0xd4, 0x00, 0x00, 0xa1, b'c', 0xc4,
        0x02, 1, 2,
    ];
    let value = msgpack::decode(&bytes, &mut Budget::new());
    let expected = JsValue::Object(JsObject::from_entries(vec![
        ("b".into(), Some(JsValue::Array(vec![JsValue::Null]))),
        ("c".into(), Some(JsValue::Buffer(vec![1, 2]))),
    ]));
    assert_eq!(value, Ok(expected.clone()));
    assert_eq!(
        expected.to_json(),
        r#"{"b":[null],"c":{"type":"Buffer","data":[1,2]}}"#
    );
    // A timestamp 32 is a Date; JSON shows its ISO text.
    let date = msgpack::decode(&[0xd6, 0xff, 0, 0, 0, 1], &mut Budget::new());
    assert_eq!(date, Ok(JsValue::Date(1000.0)));
    assert_eq!(
        JsValue::Date(1000.0).to_json(),
        "\"1970-01-01T00:00:01.000Z\""
    );
    assert_eq!(
        msgpack::encode(&JsValue::Date(1000.0)),
        [0xd6, 0xff, 0, 0, 0, 1]
    );
}

#[test]
fn claimed_lengths_are_checked_before_allocating() {
    for bytes in [
        &[0xdb, 0xff, 0xff, 0xff, 0xff][..],
        &[0xdd, 0xff, 0xff, 0xff, 0xff],
        &[0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0],
        &[0xc6, 0xff, 0xff, 0xff, 0xff],
        &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x05],
        &[0x92, 0xc0],
        &[0xcb, 0, 0],
        &[0xd4, 0x00],
    ] {
        assert_eq!(
            decode(&channels(), "custom", bytes, JsFormat::Msgpack),
            Err(JsWireError::Msgpack("truncated")),
            "{bytes:x?}"
        );
    }
    assert_eq!(
        decode(&channels(), "custom", &[0xc0, 0xc0], JsFormat::Msgpack),
        Err(JsWireError::Msgpack("trailing bytes"))
    );
    assert_eq!(
        decode(&channels(), "custom", &[0xc1], JsFormat::Msgpack),
        Err(JsWireError::Msgpack("reserved marker 0xc1"))
    );
}

#[test]
fn deep_nesting_and_huge_messages_are_refused() {
    let deep = vec![0x91; MAX_DEPTH + 1];
    let mut deep = deep;
    deep.push(0xc0);
    assert_eq!(
        decode(&channels(), "custom", &deep, JsFormat::Msgpack),
        Err(JsWireError::TooDeep)
    );
    let text = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
    assert_eq!(
        decode(&channels(), "custom", text.as_bytes(), JsFormat::Json),
        Err(JsWireError::TooDeep)
    );
    let huge = vec![b' '; MAX_MESSAGE_LEN + 1];
    assert_eq!(
        decode(&channels(), "custom", &huge, JsFormat::Json),
        Err(JsWireError::TooLarge(MAX_MESSAGE_LEN + 1))
    );
    let many = format!("[{}0]", "0,".repeat(MAX_VALUES));
    assert_eq!(
        decode(&channels(), "custom", many.as_bytes(), JsFormat::Json),
        Err(JsWireError::TooManyValues)
    );
}

/// Decodes JSON text on `channel`.
fn decode_json(channel: &str, text: &str) -> Result<JsMessage, JsWireError> {
    decode(&channels(), channel, text.as_bytes(), JsFormat::Json)
}

#[test]
fn wrong_types_are_refused_as_the_package_would() {
    let bridge = "csbp:server_bridge";
    assert_eq!(decode_json(bridge, "[1]"), Err(JsWireError::NotAnObject));
    assert_eq!(
        decode_json(bridge, r#"{"data":"x"}"#),
        Err(JsWireError::NotAnObject)
    );
    assert_eq!(
        decode_json(bridge, r#"{"data":{"event":"e","targetServer":"b"}}"#),
        Err(JsWireError::WrongType("targetServer"))
    );
    assert_eq!(
        decode_json(bridge, r#"{"data":{"event":"e","targetServer":[1]}}"#),
        Err(JsWireError::NoTarget)
    );
    assert_eq!(
        decode_json(bridge, r#"{"data":{"isCallback":true,"callbackId":"c"}}"#),
        Err(JsWireError::Missing("senderServer"))
    );
    assert_eq!(
        decode_json("ws:broadcast", r#"{"data":5}"#),
        Err(JsWireError::WrongType("data"))
    );
    assert_eq!(
        decode_json("ws:broadcast", r#"{"data":""}"#),
        Err(JsWireError::Missing("data"))
    );
    assert_eq!(
        decode_json("ws:private_socket", r#"{"data":"x","socketIds":"u1"}"#),
        Err(JsWireError::WrongType("socketIds"))
    );
    assert_eq!(
        decode_json(
            "ws:chat",
            r#"{"data":"x","roomNamespace":"chat","roomId":7}"#
        ),
        Err(JsWireError::WrongType("roomId"))
    );
    assert_eq!(
        decode_json(
            "ws:chat",
            r#"{"data":"x","roomNamespace":"chat","roomId":"r","excludeSocketIds":"u1"}"#
        ),
        Err(JsWireError::WrongType("excludeSocketIds"))
    );
    assert_eq!(
        decode_json("custom", r#""\ud800""#),
        Err(JsWireError::Json {
            at: 7,
            what: "lone surrogate"
        })
    );
}

#[test]
fn skipped_entries_and_falsy_ids_mirror_the_package() {
    assert_eq!(
        decode_json(
            "ws:private_socket",
            r#"{"data":"x","socketIds":["a",1,"",null,"b"],"senderServer":"n"}"#
        ),
        Ok(JsMessage::Sockets {
            ids: vec!["a".into(), "b".into()],
            single: false,
            data: "x".into(),
            sender: "n".into()
        })
    );
    let message = decode_json(
        "csbp:server_bridge",
        r#"{"data":{"payload":0,"event":"e","senderServer":"n","targetServer":["a",2],"callbackId":""}}"#,
    );
    assert_eq!(
        message,
        Ok(JsMessage::Bridge(BridgeMessage {
            kind: BridgeKind::PromiseEvent,
            event: "e".into(),
            sender: "n".into(),
            targets: vec!["a".into()],
            callback_id: None,
            payload: Some(JsValue::Number(0.0)),
        }))
    );
}

#[test]
fn channels_follow_the_package_rules() {
    let c = JsChannels::new("b:", "w:");
    assert_eq!(c.bridge(), "b:server_bridge");
    assert_eq!(c.private(), "w:private_socket");
    assert_eq!(c.broadcast(), "w:broadcast");
    assert_eq!(c.room("chat"), "w:chat");
    assert_eq!(c.room("w:chat"), "w:chat");
    assert_eq!(c.classify("b:server_bridge"), ChannelKind::Bridge);
    assert_eq!(c.classify("w:private_socket"), ChannelKind::Private);
    assert_eq!(c.classify("w:broadcast"), ChannelKind::Broadcast);
    assert_eq!(c.classify("w:x"), ChannelKind::Room);
    assert_eq!(c.classify("b:other"), ChannelKind::Custom);
}

/// Fuzzer find: an invalid `Date` (a timestamp 96 out of range) is written as notepack
/// writes it, a zero timestamp 96, which decodes as the epoch and then stays put.
#[test]
fn invalid_date_encodes_as_notepack_does() {
    let bytes = [
        0xc7, 0xff, 0xff, 0xff, 0x1d, 0x53, 0x53, 0x00, 0x65, 0x53, 0xf1, 0x00, 0xc4, 0x02, 0x01,
    ];
    let date = msgpack::decode(&bytes, &mut Budget::new());
    assert_eq!(date, Ok(JsValue::Date(f64::NAN)));
    let mut zeros = vec![0xc7, 0x0c, 0xff];
    zeros.extend_from_slice(&[0; 12]);
    assert_eq!(msgpack::encode(&JsValue::Date(f64::NAN)), zeros);
    assert_eq!(
        msgpack::decode(&zeros, &mut Budget::new()),
        Ok(JsValue::Date(0.0))
    );
    assert_eq!(JsValue::Date(f64::NAN).to_json(), "null");
}

//! Byte compatibility with the real notepack.io and `JSON.stringify`, run by `node`.
//!
//! Needs the Node.js package installed in `target/js-package` (scripts/test.sh does it) and
//! `node` on PATH; fails, never skips, without them. One node process handles every case:
//! it builds the object the package would build and prints `notepack.encode(obj)` and
//! `JSON.stringify(obj)`, and decodes Rust's bytes with `notepack.decode`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::value::JsValue;
use super::*;

/// One case: the message, its channel, and JavaScript building the package's object.
struct Case {
    /// The channel it is published on.
    channel: String,
    /// What Rust expects to decode from node's bytes.
    message: JsMessage,
    /// A JavaScript expression for the object the package publishes.
    js: String,
    /// Whether Rust's encoding must equal node's (false when the object holds `undefined`
    /// inside the payload, which Rust never produces).
    encodes: bool,
}

/// A JSON text as a value.
fn js(text: &str) -> JsValue {
    match json::parse(text, &mut Budget::new()) {
        Ok(value) => value,
        Err(e) => panic!("bad test JSON {text}: {e}"),
    }
}

/// The payloads every bridge case is run with (JSON texts).
fn payloads() -> Vec<String> {
    let long = "l".repeat(300);
    let many: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
    vec![
        r#"{"nested":{"a":[1,{"b":null}],"e":{}},"arr":[],"s":""}"#.to_owned(),
        format!(
            r#"["unicode é 中文 😀 \u0001 \"q\" \\ /", "{long}", "0123456789abcdefghijklmnopqrstuvwxyz"]"#
        ),
        "[0,-0,1,-1,127,128,255,256,65535,65536,4294967295,4294967296,-32,-33,-128,-129,-32768,\
         -32769,-2147483648,-2147483649,9007199254740991,9007199254740993,18446744073709551615,\
         1e21,-1e21,1.5,-1.5,0.1,1e-7,123456789.125,-1e300,5e-324,1.7976931348623157e308]"
            .to_owned(),
        r#"{"2":1,"1":2,"b":3,"a":4,"10":5}"#.to_owned(),
        format!("{{{}}}", many.join(",")),
        format!(
            "[{}]",
            (0..20).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        ),
        "true".into(),
        "null".into(),
        "\"\"".into(),
        "{}".into(),
        "[]".into(),
    ]
}

/// A JavaScript string literal for `s`.
fn lit(s: &str) -> String {
    let mut out = String::new();
    value::write_json_string(s, &mut out);
    out
}

/// Every case.
fn cases() -> Vec<Case> {
    let c = JsChannels::new("csbp:", "ws:");
    let mut cases = Vec::new();
    for p in payloads() {
        let payload = format!("JSON.parse({})", lit(&p));
        let base = BridgeMessage {
            kind: BridgeKind::Event,
            event: "chat".into(),
            sender: "node-a".into(),
            targets: vec!["node-b".into(), "node-c".into()],
            callback_id: None,
            payload: Some(js(&p)),
        };
        cases.push(Case {
            channel: c.bridge().into(),
            message: JsMessage::Bridge(base.clone()),
            js: format!(
                "(() => {{ let data = {{ event: 'chat', senderServer: 'node-a' }}; data.payload = {payload}; \
                 data.targetServer = ['node-b', 'node-c']; return {{ data }}; }})()"
            ),
            encodes: true,
        });
        cases.push(Case {
            channel: c.bridge().into(),
            message: JsMessage::Bridge(BridgeMessage {
                kind: BridgeKind::PromiseEvent,
                targets: vec![],
                callback_id: Some("node-a-mi2k3x-4fzq-1".into()),
                ..base.clone()
            }),
            js: format!(
                "(() => {{ let data = {{ payload: {payload}, event: 'chat', senderServer: 'node-a' }}; \
                 data.targetServer = []; data.callbackId = 'node-a-mi2k3x-4fzq-1'; return {{ data }}; }})()"
            ),
            encodes: true,
        });
        cases.push(Case {
            channel: c.bridge().into(),
            message: JsMessage::Bridge(BridgeMessage {
                kind: BridgeKind::Reply,
                event: REPLY_EVENT.into(),
                sender: "node-b".into(),
                targets: vec![],
                callback_id: Some("node-a-mi2k3x-4fzq-2".into()),
                payload: Some(js(&p)),
            }),
            js: reply_js(&payload),
            encodes: true,
        });
    }
    // A reply without a value, and `undefined` inside a payload.
    cases.push(Case {
        channel: c.bridge().into(),
        message: JsMessage::Bridge(BridgeMessage {
            kind: BridgeKind::Reply,
            event: REPLY_EVENT.into(),
            sender: "node-b".into(),
            targets: vec![],
            callback_id: Some("node-a-mi2k3x-4fzq-2".into()),
            payload: None,
        }),
        js: reply_js("undefined"),
        encodes: true,
    });
    cases.push(Case {
        channel: "custom".into(),
        message: JsMessage::Custom(js(
            r#"{"b":[null,1],"c":0,"d":{"type":"Buffer","data":[]}}"#,
        )),
        js: "({ a: undefined, b: [undefined, 1], c: -0, d: {type: 'Buffer', data: []} })".into(),
        encodes: true,
    });
    cases.extend(ws_cases(&c));
    cases
}

/// The JavaScript the package runs for a reply with `payload`: `_invokeCrossServerListeners`'s
/// object spread into `emitCrossServer`'s `data`, whose `targetServer` is then overwritten.
fn reply_js(payload: &str) -> String {
    format!(
        "(() => {{ let data = {{ event: '_Cs_Cb_', senderServer: 'node-b' }}; \
         data = {{ ...data, ...{{ targetServer: ['node-a'], callbackId: 'node-a-mi2k3x-4fzq-2', \
         isCallback: true, payload: {payload} }} }}; data.targetServer = []; return {{ data }}; }})()"
    )
}

/// The ws-channel cases.
fn ws_cases(c: &JsChannels) -> Vec<Case> {
    let frame = r#"{"event":"msg","payload":{"text":"héllo 😀","n":-1.5}}"#;
    let f = lit(frame);
    let long_frame = format!(r#"{{"event":"big","payload":"{}"}}"#, "x".repeat(70_000));
    let lf = lit(&long_frame);
    vec![
        Case {
            channel: c.private().into(),
            message: JsMessage::Sockets { ids: vec!["u1".into()], single: true, data: frame.into(), sender: "node-a".into() },
            js: format!("({{ data: {f}, socketId: 'u1', senderServer: 'node-a' }})"),
            encodes: true,
        },
        Case {
            channel: c.private().into(),
            message: JsMessage::Sockets { ids: vec!["u1".into(), "ü2".into()], single: false, data: frame.into(), sender: "node-a".into() },
            js: format!("({{ data: {f}, socketIds: ['u1', 'ü2'], senderServer: 'node-a' }})"),
            encodes: true,
        },
        Case {
            channel: c.broadcast().into(),
            message: JsMessage::Broadcast { data: long_frame.clone(), sender: "node-a".into() },
            js: format!("({{ data: {lf}, senderServer: 'node-a' }})"),
            encodes: true,
        },
        Case {
            channel: c.room("chat"),
            message: JsMessage::Room {
                namespace: "chat".into(),
                room: "röom 1".into(),
                exclude: vec![],
                data: frame.into(),
                sender: "node-a".into(),
            },
            js: format!("({{ data: {f}, roomNamespace: 'chat', roomId: 'röom 1', senderServer: 'node-a', excludeSocketIds: [] }})"),
            encodes: true,
        },
        Case {
            channel: c.room("ws:game"),
            message: JsMessage::Room {
                namespace: "ws:game".into(),
                room: "r".into(),
                exclude: vec!["u1".into(), "u2".into()],
                data: frame.into(),
                sender: "".into(),
            },
            js: format!("({{ data: {f}, roomNamespace: 'ws:game', roomId: 'r', senderServer: '', excludeSocketIds: ['u1', 'u2'] }})"),
            encodes: true,
        },
    ]
}

/// The node script: reads `[{js, hex}]` on stdin, prints `[{mp, json, back}]`.
const SCRIPT: &str = r#"
const notepack = require('notepack.io');
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const out = JSON.parse(input).map(({ js, hex }) => {
    const obj = eval(js);
    return {
      mp: notepack.encode(obj).toString('hex'),
      json: JSON.stringify(obj),
      back: JSON.stringify(notepack.decode(Buffer.from(hex, 'hex'))),
    };
  });
  process.stdout.write(JSON.stringify(out));
});
"#;

/// Hex digits of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of hex digits.
fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex from node"))
        .collect()
}

/// Runs the script in the installed package's folder; node's answers, one per case.
fn run_node(cases: &[Case]) -> Vec<JsValue> {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/js-package");
    assert!(
        package.join("node_modules/notepack.io").is_dir(),
        "{} has no installed package: run scripts/test.sh (it copies ../shared/js-package/package \
         there and runs npm ci)",
        package.display()
    );
    let mut input = String::from("[");
    for (i, case) in cases.iter().enumerate() {
        if i > 0 {
            input.push(',');
        }
        let mut js_lit = String::new();
        value::write_json_string(&case.js, &mut js_lit);
        let bytes = encode(&case.message, JsFormat::Msgpack);
        input.push_str(&format!(r#"{{"js":{js_lit},"hex":"{}"}}"#, hex(&bytes)));
    }
    input.push(']');
    let mut child = Command::new("node")
        .arg("-e")
        .arg(SCRIPT)
        .current_dir(&package)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` (is Node.js on PATH?): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to node");
    let output = child.wait_with_output().expect("node output");
    assert!(output.status.success(), "node failed: {:?}", output.status);
    match json::parse(&String::from_utf8_lossy(&output.stdout), &mut Budget::new()) {
        Ok(JsValue::Array(answers)) => answers,
        other => panic!("unexpected node output: {other:?}"),
    }
}

/// A string field of node's answer.
fn field<'a>(answer: &'a JsValue, key: &str) -> &'a str {
    match answer {
        JsValue::Object(o) => o.get(key).and_then(JsValue::as_str).unwrap_or_default(),
        _ => "",
    }
}

#[test]
fn rust_and_notepack_agree_byte_for_byte() {
    let cases = cases();
    let answers = run_node(&cases);
    assert_eq!(answers.len(), cases.len());
    let channels = JsChannels::new("csbp:", "ws:");
    for (i, (case, answer)) in cases.iter().zip(&answers).enumerate() {
        let node_mp = unhex(field(answer, "mp"));
        let node_json = field(answer, "json");
        let what = format!(
            "case {i} on {}: {}",
            case.channel,
            case.js.chars().take(160).collect::<String>()
        );
        let rust_json = String::from_utf8(encode(&case.message, JsFormat::Json)).expect("utf-8");
        if case.encodes {
            assert_eq!(
                hex(&encode(&case.message, JsFormat::Msgpack)),
                hex(&node_mp),
                "msgpack, {what}"
            );
            assert_eq!(rust_json, node_json, "JSON, {what}");
        }
        // notepack loses what it loses (integers beyond 2^64 wrap): compare with Rust's own
        // round trip, whose bytes were just found equal to node's.
        let rust_round_trip = decode(
            &channels,
            &case.channel,
            &encode(&case.message, JsFormat::Msgpack),
            JsFormat::Msgpack,
        );
        assert_eq!(
            decode(&channels, &case.channel, &node_mp, JsFormat::Msgpack),
            rust_round_trip,
            "decode msgpack, {what}"
        );
        assert_eq!(
            decode(
                &channels,
                &case.channel,
                node_json.as_bytes(),
                JsFormat::Json
            )
            .as_ref(),
            Ok(&case.message),
            "decode JSON, {what}"
        );
        // notepack reads Rust's bytes as the object whose JSON Rust writes (after the same
        // losses as above).
        let expected_back = match &rust_round_trip {
            Ok(message) => String::from_utf8(encode(message, JsFormat::Json)).expect("utf-8"),
            Err(e) => panic!("Rust's bytes do not decode: {e}, {what}"),
        };
        assert_eq!(
            field(answer, "back"),
            expected_back,
            "notepack.decode, {what}"
        );
    }
}

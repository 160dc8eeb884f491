//! crosswire-core's client frame parsers (`core/src/frame.rs`): `parse`, what a node makes of
//! a client's text frame, and `parse_server_frame`, what the Rust client makes of a server's.
//!
//! Input: `[heartbeat selector][text ...]`; the selector picks a heartbeat string from a list,
//! or (top bit set) takes its low 3 bits' worth of bytes from the input as the heartbeat.
//! Checks: no panic; the heartbeat is recognized exactly; a parsed event has a non-empty name
//! and a payload that is one valid JSON value; what was parsed agrees with serde_json's own
//! reading of the text; a callback id is 1 to 64 characters.

#![no_main]

use std::borrow::Cow;

use crosswire_core::frame::{parse_server_frame, FrameError, ServerFrame};
use crosswire_core::fuzzing::{parse_client_frame, ClientFrame};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const HEARTBEATS: [&str; 4] = ["", "ping", "{}", "\"hb\""];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let (heartbeat, text) = if selector & 0x80 == 0 {
        (
            HEARTBEATS[usize::from(selector) % HEARTBEATS.len()].as_bytes(),
            rest,
        )
    } else {
        rest.split_at(usize::from(selector & 0x07).min(rest.len()))
    };
    let (Ok(heartbeat), Ok(text)) = (std::str::from_utf8(heartbeat), std::str::from_utf8(text))
    else {
        return; // transports hand on text frames only once they are UTF-8
    };
    // serde_json's reading, when it has one (it refuses nesting deeper than 128).
    let value = serde_json::from_str::<Value>(text).ok();
    check_client(text, heartbeat, value.as_ref());
    check_server(text, heartbeat, value.as_ref());
});

fn check_client(text: &str, heartbeat: &str, value: Option<&Value>) {
    let parsed = parse_client_frame(text, heartbeat);
    if text == heartbeat {
        assert_eq!(parsed, Ok(ClientFrame::Heartbeat));
        return;
    }
    agrees_on_shape(parsed.as_ref().err(), value);
    let Ok(frame) = parsed else {
        return;
    };
    let ClientFrame::Event {
        event,
        payload,
        callback_id,
    } = frame
    else {
        panic!("a heartbeat that is not the heartbeat string");
    };
    assert!(!event.is_empty(), "empty event name");
    assert_valid_json(payload);
    if let Some(id) = &callback_id {
        assert!(
            !id.is_empty() && id.chars().count() <= 64,
            "callback id {id:?}"
        );
    }
    if let Some(object) = value.and_then(Value::as_object) {
        assert_eq!(object.get("event").and_then(Value::as_str), Some(&*event));
        assert_same_payload(payload, object.get("payload"));
        if let Some(id) = callback_id {
            assert_eq!(object.get("callbackId").and_then(Value::as_str), Some(&*id));
        }
    }
}

fn check_server(text: &str, heartbeat: &str, value: Option<&Value>) {
    let parsed = parse_server_frame(text, heartbeat);
    if text == heartbeat {
        assert!(matches!(parsed, Ok(ServerFrame::Heartbeat)));
        return;
    }
    agrees_on_shape(parsed.as_ref().err(), value);
    let object = value.and_then(Value::as_object);
    match parsed {
        Err(_) => {}
        Ok(ServerFrame::Heartbeat) => panic!("a heartbeat that is not the heartbeat string"),
        Ok(ServerFrame::Reply {
            callback_id,
            payload,
        }) => {
            assert_valid_json(payload.get());
            if let Some(object) = object {
                let id = object.get("callbackId").and_then(Value::as_str);
                assert_eq!(id, Some(&*callback_id));
                assert_same_payload(payload.get(), object.get("payload"));
            }
        }
        Ok(ServerFrame::Push { event, payload }) => {
            assert!(!event.is_empty(), "empty event name");
            assert_valid_json(payload.get());
            if let Some(object) = object {
                assert_eq!(object.get("event").and_then(Value::as_str), Some(&*event));
                let id = object.get("callbackId");
                assert!(id.is_none_or(Value::is_null), "a reply read as a push");
                assert_same_payload(payload.get(), object.get("payload"));
            }
        }
    }
}

/// JSON that is not an object is `NotObject`, and an object is never `NotJson`.
fn agrees_on_shape(error: Option<&FrameError>, value: Option<&Value>) {
    match (value, error) {
        (Some(Value::Object(_)), e) => {
            assert!(e.is_none_or(|e| *e == FrameError::MissingEvent), "{e:?}")
        }
        (Some(_), e) => assert_eq!(e, Some(&FrameError::NotObject)),
        (None, _) => {}
    }
}

fn assert_valid_json(payload: &str) {
    let parsed = serde_json::from_str::<serde::de::IgnoredAny>(payload);
    assert!(parsed.is_ok(), "payload {payload:?} is not one JSON value");
}

/// The raw `payload` is the JSON serde_json read for the field (`null` when absent).
fn assert_same_payload(payload: &str, field: Option<&Value>) {
    let expected = field.map_or(Cow::Owned(Value::Null), Cow::Borrowed);
    if let Ok(payload) = serde_json::from_str::<Value>(payload) {
        assert_eq!(&payload, &*expected);
    }
}

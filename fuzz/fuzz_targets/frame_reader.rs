//! crosswire's RFC 6455 frame reader (`transport-ws/src/connection/reader.rs`) on arbitrary
//! bytes, read in pieces whose sizes come from the input (`crosswire_fuzz::plan`), with a
//! message handler that pauses reading where the input says, and the drain after a violation.
//!
//! Checks: no panic; no single allocation larger than the message limit plus a frame header
//! plus one read (a frame's claimed length is hostile); the messages and the end are the same
//! whatever the read sizes, the pauses, and whether bytes came with the upgrade request; what
//! is handed on keeps the reader's promises (text is UTF-8 within the limit, binary is within
//! the limit whatever its bytes, control payloads fit 125 bytes whatever the limit, nothing
//! follows a close).

#![no_main]

use crosswire_fuzz::alloc_track::{measure, untracked, Tracking};
use crosswire_fuzz::plan::Plan;
use crosswire_ws::fuzzing::{read_messages_with, End, Feed, Msg, MAX_HEAD, STACK_READ};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: Tracking = Tracking;

fuzz_target!(|input: &[u8]| {
    let Some(plan) = Plan::parse(input) else {
        return;
    };
    let planned = run(plan.feed(), plan.max_message);
    let whole = [plan.early, plan.stream].concat();
    let one_shot = run(
        Feed {
            input: &whole,
            ..Feed::default()
        },
        plan.max_message,
    );
    assert_eq!(planned, one_shot, "messages depend on the read sizes");
});

fn run(feed: Feed<'_>, max: usize) -> (Vec<Msg>, End) {
    let mut messages = Vec::new();
    let (end, largest) = measure(|| {
        read_messages_with(feed, max, &mut |message| {
            untracked(|| messages.push(message))
        })
    });
    let bound = max + MAX_HEAD + STACK_READ;
    assert!(
        largest <= bound,
        "allocated {largest} bytes at once with a {max}-byte limit (bound {bound})"
    );
    for (i, message) in messages.iter().enumerate() {
        match message {
            Msg::Text(text) => {
                assert!(std::str::from_utf8(text).is_ok(), "text is not UTF-8");
                assert!(text.len() <= max, "text over the limit");
            }
            Msg::Ping(payload) => assert!(payload.len() <= 125),
            Msg::Close(_, reason) => {
                assert!(reason.len() <= 123);
                assert_eq!(i + 1, messages.len(), "a message after the close");
                assert_eq!(end, End::Closed);
            }
            Msg::Binary(bytes) => assert!(bytes.len() <= max, "binary over the limit"),
            Msg::Pong => {}
        }
    }
    assert!(!matches!(end, End::Io(_)), "{end:?}");
    if end == End::Closed {
        assert!(matches!(messages.last(), Some(Msg::Close(..))));
    }
    (messages, end)
}

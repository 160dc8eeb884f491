//! The same client byte stream to crosswire's frame reader and to fastwebsockets 0.10's
//! server-side reader (`WebSocket::after_handshake(_, Role::Server)`, auto-close and auto-pong
//! off, the same message limit): both must hand on the same messages (text payloads, binary
//! payloads, ping payloads, pongs, close code and reason) and end the same way (after a
//! close, at the end of the input, or refusing the stream with the same close code).
//!
//! fastwebsockets is used frame by frame, not through `FragmentCollector`: crosswire limits
//! whole messages and the collector does not (see below), so fragments (text and binary) are
//! assembled by `crosswire_fuzz::oracle` with RFC 6455's rules.
//!
//! # Where fastwebsockets' reader differs from RFC 6455 and from crosswire
//! Normalized here (`crosswire_fuzz::normalize` rewrites or cuts the input, `oracle` applies
//! the rule fastwebsockets leaves to its caller):
//! 1. Unmasked client frames: accepted by fastwebsockets; refused by crosswire (1002, RFC
//!    6455 §5.1). Normalized: every frame of the input is made masked.
//! 2. 64-bit length with the top bit set: fastwebsockets refuses it only as too large (1009);
//!    crosswire as invalid (1002, §5.2). Normalized: the comparison stops at that frame.
//! 3. Close and pong frames over 125 bytes: accepted by fastwebsockets (only pings are
//!    checked); refused by crosswire (1002, §5.5). Normalized: the comparison stops there.
//! 4. Close frames: with auto-close off fastwebsockets checks nothing (1-byte payload, close
//!    code, UTF-8 of the reason); with auto-close on it checks them but writes the answer
//!    itself. crosswire refuses a 1-byte payload and a code not allowed (1002), a reason that
//!    is not UTF-8 (1007), and reports an empty close as 1005. Applied in `oracle`.
//! 5. Close code 1014 (IANA "Bad Gateway"): refused by fastwebsockets' `CloseCode::is_allowed`,
//!    which crosswire uses, so crosswire refuses it too; the oracle's own list leaves 1014 out
//!    to match.
//! 6. Message limit: fastwebsockets refuses a frame of `max_message_size` bytes or more
//!    (exclusive, per frame, control frames included); crosswire a data message of more than
//!    the limit (inclusive; a fragmented message, text or binary, counts all its fragments;
//!    control frames are exempt, being 125 bytes at most). Normalized: fastwebsockets gets
//!    the limit + 1, and at least 126; a data frame over crosswire's limit but under that, and
//!    a continuation taking its message over the limit, stop the comparison at that frame
//!    (crosswire refuses them at their header with 1009).
//! 7. Fragmentation: fastwebsockets' frame reader does not check it (a continuation without a
//!    message, a new message inside one); `FragmentCollector` does. crosswire refuses both
//!    (1002). Applied in `oracle`.
//! 8. UTF-8 of fragmented text: fastwebsockets' frame reader checks only unfragmented text
//!    frames. `FragmentCollector` and crosswire check fragments as they come and fail as soon
//!    as the text cannot be UTF-8 any more (1007; RFC 6455 §8.1), allowing a code point left
//!    unfinished at the end of a fragment. Applied in `oracle`.
//! 9. Order of checks: fastwebsockets' reader refuses an unfragmented text frame with invalid
//!    UTF-8 (1007) before its caller can see that the frame is out of place inside a
//!    fragmented message; crosswire refuses it as out of place (1002). Normalized in `oracle`.
//! 10. `FragmentCollector` has no limit on the assembled message (only on each frame).
//!
//! Both refuse reserved bits and unknown opcodes (1002), fragmented control frames and pings
//! over 125 bytes (1002), and invalid UTF-8 in an unfragmented text frame (1007); neither
//! requires the shortest length encoding. Binary messages follow the fragmentation and size
//! rules of text but no UTF-8 rule (never 1007), in crosswire and in `oracle` alike.

#![no_main]

use crosswire_fuzz::normalize::normalize;
use crosswire_fuzz::oracle;
use crosswire_fuzz::plan::Plan;
use crosswire_ws::fuzzing::{read_messages, End, Feed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some(plan) = Plan::parse(input) else {
        return;
    };
    let whole = [plan.early, plan.stream].concat();
    let (stream, cut) = normalize(&whole, plan.max_message);
    let (early_bytes, input) = stream.split_at(plan.early.len());
    let feed = Feed {
        early_bytes,
        input,
        ..plan.feed()
    };
    let ours = read_messages(feed, plan.max_message);
    let theirs = oracle::read_messages(&stream, &plan.chunks, plan.max_message, cut);
    assert_eq!(
        ours.0, theirs.0,
        "messages differ ({:?} / {:?})",
        ours.1, theirs.1
    );
    let same_end = match (&ours.1, &theirs.1) {
        (End::Violation(a, _), End::Violation(b, _)) => a == b,
        (a, b) => a == b,
    };
    assert!(
        same_end,
        "ends differ: crosswire {:?}, fastwebsockets {:?}",
        ours.1, theirs.1
    );
});

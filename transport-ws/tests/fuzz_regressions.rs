//! Inputs the fuzz targets in `fuzz/` found, replayed through the same entry points
//! (`crosswire_ws::fuzzing`, feature `fuzzing`; `cargo test --all-features` runs them).

#![cfg(feature = "fuzzing")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crosswire_ws::fuzzing::{read_messages, End, Feed, Msg, MAX_HEAD, STACK_READ};

/// Records the largest single allocation of the measuring thread.
struct Tracking;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    if MEASURING.get() {
        LARGEST.set(LARGEST.get().max(size));
    }
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// The messages, the end, and the largest single allocation while reading.
fn read_measured(feed: Feed<'_>, max_message: usize) -> (Vec<Msg>, End, usize) {
    LARGEST.set(0);
    MEASURING.set(true);
    let (messages, end) = read_messages(feed, max_message);
    MEASURING.set(false);
    (messages, end, LARGEST.get())
}

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

const LIMIT: usize = 9_000;

/// The most the reader may hold for one frame: the frame at the limit and one read.
const BOUND: usize = LIMIT + MAX_HEAD + STACK_READ;

/// frame_reader: a read that completes a large frame and carries the next frame's first
/// byte is appended to the frame's buffer with `extend_from_slice`, which doubles it: an
/// 8,808-byte frame took a 17,616-byte buffer (2 x the frame, 1 MiB frames 2 MiB).
#[test]
fn the_frame_buffer_is_not_doubled_by_a_read_past_the_frame() {
    let text = "a".repeat(8_800);
    let mut input = frame(true, 0x1, text.as_bytes());
    input.push(0x81); // the next frame's first byte, in the same read
    let feed = Feed {
        input: &input,
        chunks: &[100, 8_192, 8_192],
        ..Feed::default()
    };
    let (messages, end, largest) = read_measured(feed, LIMIT);
    assert_eq!(messages, vec![Msg::Text(text.into_bytes())]);
    assert_eq!(end, End::Eof);
    assert!(largest <= BOUND, "{largest} bytes at once (bound {BOUND})");
}

/// frame_reader: fragments of a text message are appended with `extend_from_slice`, which
/// doubles the buffer: an 8,800-byte first fragment and a 1-byte last one took 17,600 bytes.
#[test]
fn the_fragment_buffer_is_not_doubled_by_a_small_last_fragment() {
    let text = "a".repeat(8_801);
    let mut input = frame(false, 0x1, &text.as_bytes()[..8_800]);
    input.extend(frame(true, 0x0, b"a"));
    let feed = Feed {
        input: &input,
        ..Feed::default()
    };
    let (messages, end, largest) = read_measured(feed, LIMIT);
    assert_eq!(messages, vec![Msg::Text(text.into_bytes())]);
    assert_eq!(end, End::Eof);
    assert!(largest <= BOUND, "{largest} bytes at once (bound {BOUND})");
}

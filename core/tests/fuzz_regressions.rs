//! Inputs the fuzz targets in `fuzz/` found, replayed through the same entry points
//! (`crosswire_core::fuzzing`, feature `fuzzing`; `cargo test --all-features` runs them).

#![cfg(feature = "fuzzing")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crosswire_core::fuzzing::{
    decode_envelope, encode_envelope, BodySpec, EncodeOptions, EnvelopeSpec,
};

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

/// envelope: opening any compressed envelope reserved the 64 MiB decompression cap
/// (`zstd::bulk::decompress` allocates its whole capacity), and the opened body kept it while
/// frames sliced from it were queued. It now reserves the size the zstd frame declares.
#[test]
fn a_small_compressed_envelope_does_not_reserve_the_decompression_cap() {
    let spec = EnvelopeSpec {
        sender: "node-a".into(),
        body: BodySpec::Broadcast {
            frame: br#"{"event":"say","payload":{"msg":"hi"}}"#.repeat(100),
        },
    };
    for sign in [false, true] {
        let options = EncodeOptions {
            compress: true,
            threshold: 0,
            sign,
        };
        let raw = encode_envelope(&spec, options).expect("encodes");
        assert!(raw.len() < 400, "compressed: {} bytes", raw.len());
        LARGEST.set(0);
        MEASURING.set(true);
        let decoded = decode_envelope(&raw, sign);
        MEASURING.set(false);
        assert_eq!(decoded, Ok(spec.clone()));
        let largest = LARGEST.get();
        assert!(
            largest < 64 << 10,
            "{largest} bytes at once to open {} bytes",
            raw.len()
        );
    }
}

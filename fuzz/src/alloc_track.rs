//! A global allocator that records the largest single allocation made while measuring, so a
//! target can check that no hostile length makes the code under test reserve more than its
//! limits allow. Fuzz targets run single-threaded, so plain atomics are enough.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// Install with `#[global_allocator] static A: Tracking = Tracking;`.
#[derive(Debug)]
pub struct Tracking;

static ON: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn note(size: usize) {
    if ON.load(Relaxed) {
        LARGEST.fetch_max(size, Relaxed);
    }
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the size of the largest single allocation it made
/// (outside [`untracked`] sections).
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.store(0, Relaxed);
    ON.store(true, Relaxed);
    let result = f();
    ON.store(false, Relaxed);
    (result, LARGEST.load(Relaxed))
}

/// Runs `f` (the harness's own bookkeeping) without recording its allocations.
pub fn untracked<R>(f: impl FnOnce() -> R) -> R {
    let was = ON.swap(false, Relaxed);
    let result = f();
    ON.store(was, Relaxed);
    result
}

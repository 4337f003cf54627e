//! A global allocator that counts the bytes alive on the heap ([`live`]), and the lock
//! ([`alone`]) under which the tests of the whole-process binary (`tests/process/main.rs`) run
//! one at a time: the count is the whole process's, and so are its threads. A
//! `#[global_allocator]` applies to every test of the binary that includes this module, so only
//! that binary may include it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Bytes alive on the heap.
pub static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The most bytes alive at once since the last [`reset_peak`].
pub static PEAK: AtomicIsize = AtomicIsize::new(0);

/// Adds `n` to the live count and raises the peak to it.
fn grow(n: isize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; only the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grow(l.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grow(l.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size() as isize, Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            grow(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes alive on the heap now.
pub fn live() -> isize {
    LIVE.load(Relaxed)
}

/// Starts a new peak from the bytes alive now.
pub fn reset_peak() {
    PEAK.store(live(), Relaxed);
}

/// The most bytes alive at once since [`reset_peak`].
pub fn peak() -> isize {
    PEAK.load(Relaxed)
}

/// Held by each test of the whole-process binary for all of its run, taken before it builds a
/// runtime or allocates anything: libtest runs tests on parallel threads, and a second test's
/// heap (a Tokio runtime alone holds kilobytes) or threads would blur what the first measures.
/// A test that failed does not stop the others (the poison is ignored: the lock guards nothing).
pub fn alone() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The test before released the lock on its way out: let its thread finish exiting (the
    // thread-locals it frees moved noise_memory's count by 10 KB with two test threads).
    std::thread::sleep(Duration::from_millis(100));
    guard
}

//! An allocator wrapper that counts, per thread, what the thread allocates.
//!
//! Why by hand: the counting crates found count process-wide; the scheduler needs the bytes a
//! single worker thread allocates during one batch, so the counters here are thread-local.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once any thread allocates through a [`CountingAllocator`]; the only process-wide state,
/// and it can only go from false to true.
static INSTALLED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Copy)]
struct Counters {
    bytes: u64,
    count: u64,
    live: i64,
    peak: i64,
}

thread_local! {
    // `const` initialisation and a type without `Drop`: touching it never allocates and never
    // registers a destructor, which an allocator requires.
    static COUNTERS: Cell<Counters> = const {
        Cell::new(Counters { bytes: 0, count: 0, live: 0, peak: 0 })
    };
}

/// A global allocator that forwards to `A` (the system allocator by default) and counts the
/// calling thread's allocations: bytes, number, and bytes live.
///
/// Install it in a binary or test to have the scheduler's batch records report measured
/// allocations ([`crate::BatchRecord::alloc_bytes`]):
///
/// ```
/// use densebatch::{AllocScope, CountingAllocator};
///
/// #[global_allocator]
/// static ALLOC: CountingAllocator = CountingAllocator::system();
///
/// fn main() {
///     let scope = AllocScope::start();
///     let v = vec![0u8; 1000];
///     let used = scope.finish();
///     assert!(used.counted);
///     assert_eq!(used.bytes, 1000);
///     assert_eq!(used.count, 1);
///     drop(v);
/// }
/// ```
#[derive(Debug, Default)]
pub struct CountingAllocator<A = System> {
    inner: A,
}

impl CountingAllocator<System> {
    /// Counting on top of the system allocator.
    pub const fn system() -> Self {
        CountingAllocator { inner: System }
    }
}

impl<A> CountingAllocator<A> {
    /// Counting on top of `inner`.
    pub const fn new(inner: A) -> Self {
        CountingAllocator { inner }
    }

    /// Whether any allocation has gone through a counting allocator in this process.
    pub fn is_installed() -> bool {
        INSTALLED.load(Ordering::Relaxed)
    }
}

fn on_alloc(size: usize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    // `try_with`: the thread-local may already be gone while a thread exits.
    let _ = COUNTERS.try_with(|c| {
        let mut v = c.get();
        v.bytes += size as u64;
        v.count += 1;
        v.live += size as i64;
        v.peak = v.peak.max(v.live);
        c.set(v);
    });
}

fn on_dealloc(size: usize) {
    let _ = COUNTERS.try_with(|c| {
        let mut v = c.get();
        v.live -= size as i64;
        c.set(v);
    });
}

// SAFETY: every method forwards to `inner` with the caller's arguments unchanged, so `inner`'s
// guarantees hold; the counting touches only a const-initialised thread-local `Cell`, which
// neither allocates nor unwinds.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: as above.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_dealloc(layout.size());
        // SAFETY: as above; `ptr` came from `inner` with this layout.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_dealloc(layout.size());
        on_alloc(new_size);
        // SAFETY: as above.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}

/// What the current thread allocated between [`AllocScope::start`] and [`AllocScope::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocUsage {
    /// Bytes allocated (reallocations count their new size).
    pub bytes: u64,
    /// Number of allocations.
    pub count: u64,
    /// Highest bytes live (allocated in the scope and not yet freed) at any point of the scope.
    pub peak_live_bytes: u64,
    /// Whether a [`CountingAllocator`] is installed; if not, every other field is 0.
    pub counted: bool,
}

/// A window over the current thread's allocation counters. Cheap: two thread-local reads.
#[derive(Debug, Clone, Copy)]
pub struct AllocScope {
    start: Counters,
}

impl AllocScope {
    /// Opens a window on the current thread, resetting its peak tracker.
    pub fn start() -> Self {
        let start = COUNTERS
            .try_with(|c| {
                let mut v = c.get();
                v.peak = v.live;
                c.set(v);
                v
            })
            .unwrap_or(Counters {
                bytes: 0,
                count: 0,
                live: 0,
                peak: 0,
            });
        AllocScope { start }
    }

    /// Closes the window: what this thread allocated since [`AllocScope::start`].
    pub fn finish(self) -> AllocUsage {
        let now = COUNTERS.try_with(Cell::get).unwrap_or(self.start);
        AllocUsage {
            bytes: now.bytes - self.start.bytes,
            count: now.count - self.start.count,
            peak_live_bytes: (now.peak - self.start.live).max(0) as u64,
            counted: CountingAllocator::<System>::is_installed(),
        }
    }
}

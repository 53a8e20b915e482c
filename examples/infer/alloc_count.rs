//! Counts heap bytes allocated by the whole process, so the reports can show what a batch
//! allocates (the engine promises nothing). A global allocator is the only way to see allocations
//! made inside the library and on the pool's threads; the counter lives in this program only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct CountingAlloc;

static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to the system allocator unchanged; only adds a relaxed counter.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes through it).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

// Wrapped in the library's per-thread counter so the scheduler's batch records measure what
// each batch allocates (`infer serve-sim` reports it).
#[global_allocator]
static GLOBAL: densebatch::CountingAllocator<CountingAlloc> =
    densebatch::CountingAllocator::new(CountingAlloc);

/// Bytes allocated so far by the process (never decreases). The difference across a call is
/// what the call allocated, on any thread.
pub fn allocated_bytes() -> u64 {
    ALLOCATED_BYTES.load(Ordering::Relaxed)
}

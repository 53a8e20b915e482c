//! The memory packed weights live in. Weights streamed from DRAM are read front to back once per
//! call, 100 MB for wide-mlp: in 4 KiB pages that is 25 000 pages per call, far beyond a core's
//! TLB, and under virtualisation each miss is a two-level page walk. In 2 MiB transparent huge
//! pages it is 50. Neither `Vec` nor the global allocator can ask for huge pages, so large
//! buffers are anonymous mappings advised `MADV_HUGEPAGE` (memmap2) before they are first
//! touched.
//!
//! Measured on Zen 5 (2 vCPUs; `cargo bench --bench prefetch_probe -- MODEL BATCH
//! THREADS 40 huge-pages`, calls alternated between two compilations that differ only in the
//! pages), wide-mlp on one / two threads: 1.02 / 1.02× at batch 1, 1.10 / 1.04–1.09× at 8,
//! 1.05 / 1.16× at 32. A plain AVX-512 sum over 96 MiB read 1.00–1.16× faster in huge pages (12
//! runs, median 1.10).

use std::fmt;
use std::ptr::NonNull;

/// Huge pages are 2 MiB on x86-64 (and the common aarch64 configuration).
const HUGE_PAGE_BYTES: usize = 2 << 20;
/// Bytes of a cache line: where packed panels and workspace buffers start.
pub(crate) const LINE_BYTES: usize = 64;

/// How many `T`s past `ptr` the next cache-line boundary lies (0 when `ptr` is on one). The
/// allocator aligns a `Vec` to its element only (4 or 16 bytes), while the kernels' 64-byte
/// loads and AMX tile rows assume whole lines: a buffer over-allocated by a line starts its
/// values this far in.
pub(crate) fn elements_to_line<T>(ptr: *const T) -> usize {
    (LINE_BYTES - ptr as usize % LINE_BYTES) % LINE_BYTES / std::mem::size_of::<T>()
}

/// A zero-initialised, fixed-length `f32` buffer, in huge pages when asked and available.
///
/// It derefs to `[f32]` through a stored pointer rather than a `match` on the storage: the
/// kernels slice panels out of it in their tile loops, and a branch and cast there made LLVM stop
/// inlining the microkernel's helpers (tiny-mlp 1.4× slower).
pub(crate) struct WeightBuffer {
    /// The first float, inside `storage`.
    ptr: NonNull<f32>,
    len: usize,
    /// Owns the memory `ptr` points into; never read, only kept alive (and never reallocated).
    storage: Storage,
}

enum Storage {
    Heap(#[allow(dead_code)] Vec<f32>),
    /// An anonymous mapping with room to start the floats on a huge-page boundary.
    #[cfg(target_os = "linux")]
    Mapped(#[allow(dead_code)] memmap2::MmapMut),
}

// SAFETY: a `WeightBuffer` owns its floats as a `Vec<f32>` would (`ptr` only addresses memory
// that `storage` owns and nothing else aliases), so sending or sharing it is as safe as a `Vec`'s.
unsafe impl Send for WeightBuffer {}
// SAFETY: as for `Send`; shared access only reads.
unsafe impl Sync for WeightBuffer {}

impl WeightBuffer {
    /// `len` zeros; in transparent huge pages if `huge_pages` and the system grants the advice
    /// (Linux), else on the heap. Either way the contents are the same.
    pub(crate) fn zeroed(len: usize, huge_pages: bool) -> Self {
        #[cfg(target_os = "linux")]
        if huge_pages
            && len * 4 >= HUGE_PAGE_BYTES
            && let Some(buffer) = Self::mapped(len)
        {
            return buffer;
        }
        let _ = huge_pages;
        // Panels start on a cache line (see `elements_to_line`).
        let mut v = vec![0.0f32; len + LINE_BYTES / 4];
        let start = elements_to_line(v.as_ptr());
        WeightBuffer {
            ptr: NonNull::new(v[start..].as_mut_ptr()).expect("a Vec's pointer is never null"),
            len,
            storage: Storage::Heap(v),
        }
    }

    /// An anonymous mapping of `len` floats on a huge-page boundary, advised before any page is
    /// touched so that the first write faults in huge pages; `None` if the system refuses.
    #[cfg(target_os = "linux")]
    fn mapped(len: usize) -> Option<Self> {
        let mut map = memmap2::MmapMut::map_anon(len * 4 + HUGE_PAGE_BYTES).ok()?;
        map.advise(memmap2::Advice::HugePage).ok()?;
        let base = map.as_mut_ptr();
        let offset = (base as usize).next_multiple_of(HUGE_PAGE_BYTES) - base as usize;
        let floats: &mut [f32] = bytemuck::cast_slice_mut(&mut map[offset..offset + len * 4]);
        Some(WeightBuffer {
            ptr: NonNull::new(floats.as_mut_ptr()).expect("a mapping is never at address 0"),
            len,
            storage: Storage::Mapped(map),
        })
    }

    /// Whether the buffer is an advised mapping (the kernel may still back parts of it with
    /// small pages).
    pub(crate) fn is_mapped(&self) -> bool {
        !matches!(self.storage, Storage::Heap(_))
    }
}

impl std::ops::Deref for WeightBuffer {
    type Target = [f32];

    #[inline(always)]
    fn deref(&self) -> &[f32] {
        // SAFETY: `ptr` and `len` describe `len` initialised (zeroed, then written), aligned
        // floats inside `storage`, which lives as long as `self` and never moves its memory.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for WeightBuffer {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference to the floats.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Clone for WeightBuffer {
    fn clone(&self) -> Self {
        let mut copy = WeightBuffer::zeroed(self.len(), self.is_mapped());
        copy.copy_from_slice(self);
        copy
    }
}

impl PartialEq for WeightBuffer {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl fmt::Debug for WeightBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightBuffer")
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_writable_and_compare_by_contents_in_either_storage() {
        for (len, huge) in [
            (0, true),
            (5, true),
            (HUGE_PAGE_BYTES / 4 + 3, true),
            (1000, false),
            (1, false),
            (17, false),
        ] {
            let mut buf = WeightBuffer::zeroed(len, huge);
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|&v| v == 0.0));
            assert_eq!(
                buf.is_mapped(),
                cfg!(target_os = "linux") && huge && len * 4 >= HUGE_PAGE_BYTES
            );
            for (i, v) in buf.iter_mut().enumerate() {
                *v = i as f32;
            }
            let copy = buf.clone();
            assert_eq!(copy, buf);
            assert_eq!(copy.is_mapped(), buf.is_mapped());
            assert_eq!(copy.last().copied(), len.checked_sub(1).map(|i| i as f32));
            if buf.is_mapped() {
                assert_eq!(buf.as_ptr() as usize % HUGE_PAGE_BYTES, 0, "on a huge page");
            }
            for b in [&buf, &copy] {
                assert_eq!(b.as_ptr() as usize % LINE_BYTES, 0, "on a cache line");
            }
        }
    }
}

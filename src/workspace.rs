//! Per-thread scratch memory, sized once by the compiled model.

use std::ops::{Deref, DerefMut};

use crate::kernels::{LINE_BYTES, elements_to_line};

/// Two ping-pong activation buffers of `rows × width` floats, owned by one thread, and for
/// models whose layers quantise their input (full int8) a buffer of each row's codes and one
/// scale per row.
///
/// A [`crate::Predictor`] makes them ([`crate::Predictor::new_workspace`]); the hot call only
/// borrows them, so running a model allocates nothing.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub(crate) front: LineAligned<f32>,
    pub(crate) back: LineAligned<f32>,
    pub(crate) row_scales: Vec<f32>,
    pub(crate) codes: LineAligned<u8>,
    pub(crate) rows: usize,
    pub(crate) width: usize,
}

impl Workspace {
    /// A workspace for blocks of `rows` samples whose widest activation is `width`.
    pub fn new(rows: usize, width: usize) -> Self {
        Workspace {
            front: LineAligned::zeroed(rows * width),
            back: LineAligned::zeroed(rows * width),
            row_scales: vec![0.0; rows],
            codes: LineAligned::zeroed(0),
            rows,
            width,
        }
    }

    /// This workspace with room for its rows' activation codes, `code_stride` bytes a row.
    pub(crate) fn with_codes(mut self, code_stride: usize) -> Self {
        self.codes = LineAligned::zeroed(self.rows * code_stride);
        self
    }

    /// Rows processed per block.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of scratch held (each buffer's alignment padding included).
    pub fn bytes(&self) -> usize {
        self.front.held_bytes()
            + self.back.held_bytes()
            + std::mem::size_of_val(&self.row_scales[..])
            + self.codes.held_bytes()
    }
}

/// A zeroed buffer whose first element starts a cache line. The kernels lay rows out in whole
/// lines (AMX tiles read 64-byte rows of codes, 16-float stores fill a line), which only pays
/// when the buffer itself starts on one; the allocator aligns a `Vec` to its element only, so
/// the buffer is over-allocated by a line and starts at the first aligned element. Without it
/// full int8 on mnist-mlp (batch 512, one thread, Intel Xeon with AMX) ran 1.2–1.3× slower in
/// the block sizes whose allocation happened to start mid-line.
#[derive(Debug)]
pub(crate) struct LineAligned<T> {
    storage: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> LineAligned<T> {
    /// `len` default (zero) values starting on a cache line; nothing allocated for none.
    pub(crate) fn zeroed(len: usize) -> Self {
        let size = std::mem::size_of::<T>();
        debug_assert!(size > 0 && LINE_BYTES.is_multiple_of(size));
        if len == 0 {
            return LineAligned {
                storage: Vec::new(),
                start: 0,
                len,
            };
        }
        let storage = vec![T::default(); len + LINE_BYTES / size];
        let start = elements_to_line(storage.as_ptr());
        LineAligned {
            storage,
            start,
            len,
        }
    }

    /// Bytes allocated, the alignment padding included.
    pub(crate) fn held_bytes(&self) -> usize {
        std::mem::size_of_val(&self.storage[..])
    }
}

impl<T: Copy + Default> Clone for LineAligned<T> {
    /// A new aligned buffer with the same values (a plain copy of the storage could start its
    /// values mid-line).
    fn clone(&self) -> Self {
        let mut copy = LineAligned::zeroed(self.len);
        copy.copy_from_slice(self);
        copy
    }
}

impl<T> Deref for LineAligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl<T> DerefMut for LineAligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_and_their_clones_start_on_a_cache_line() {
        for len in [1, 3, 16, 17, 1000, 65_537, 1 << 20] {
            let mut floats = LineAligned::<f32>::zeroed(len);
            let bytes = LineAligned::<u8>::zeroed(len);
            floats[len - 1] = 1.5;
            let copy = floats.clone();
            for (ptr, name) in [
                (floats.as_ptr() as usize, "f32"),
                (bytes.as_ptr() as usize, "u8"),
                (copy.as_ptr() as usize, "clone"),
            ] {
                assert_eq!(ptr % LINE_BYTES, 0, "{name}, {len}");
            }
            assert_eq!((floats.len(), bytes.len()), (len, len));
            assert!(floats[..len - 1].iter().all(|&v| v == 0.0) && bytes.iter().all(|&b| b == 0));
            assert_eq!(copy[len - 1], 1.5);
            assert_eq!(floats.held_bytes(), 4 * len + LINE_BYTES);
        }
        assert_eq!(LineAligned::<u8>::zeroed(0).held_bytes(), 0);
    }
}

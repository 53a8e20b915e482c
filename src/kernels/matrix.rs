//! Borrowed row-major matrices with a row stride: what kernels read and write.

use std::marker::PhantomData;

/// A read-only row-major matrix view: row `r` is `data[r * stride..][..cols]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a> Rows<'a> {
    /// # Panics
    /// If `data` is too short for `rows` rows of `cols` at `stride`.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(cols <= stride || rows <= 1);
        assert!(rows == 0 || data.len() >= (rows - 1) * stride + cols);
        Rows {
            data,
            rows,
            cols,
            stride,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    #[inline]
    pub(crate) fn row(&self, r: usize) -> &'a [f32] {
        &self.data[r * self.stride..r * self.stride + self.cols]
    }

    /// Rows `r0..` of the view.
    ///
    /// # Panics
    /// If `r0 > rows`.
    pub(crate) fn rows_from(&self, r0: usize) -> Rows<'a> {
        assert!(r0 <= self.rows);
        if r0 == self.rows {
            return Rows::new(&[], 0, self.cols, self.stride);
        }
        Rows::new(
            &self.data[r0 * self.stride..],
            self.rows - r0,
            self.cols,
            self.stride,
        )
    }
}

/// A mutable row-major matrix view: row `r` covers `cols` floats starting `r * stride` floats
/// after the view's origin.
///
/// It holds a raw pointer rather than a slice so that it can be cut into column ranges
/// ([`RowsMut::split_columns`]): the halves' rows interleave in memory, which no pair of
/// disjoint slices can express, yet no element belongs to both. That is what lets two threads
/// write disjoint output columns of the same rows.
#[derive(Debug)]
pub(crate) struct RowsMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    stride: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `RowsMut` is a unique borrow of the elements it covers (like `&mut [f32]`), and the
// only way to obtain two views of one buffer, `split_columns`, yields views covering disjoint
// elements. Sending one to another thread is therefore as safe as sending a `&mut [f32]`.
unsafe impl Send for RowsMut<'_> {}

impl<'a> RowsMut<'a> {
    /// # Panics
    /// If `data` is too short for `rows` rows of `cols` at `stride`.
    pub(crate) fn new(data: &'a mut [f32], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(cols <= stride || rows <= 1);
        assert!(rows == 0 || data.len() >= (rows - 1) * stride + cols);
        RowsMut {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            stride,
            _borrow: PhantomData,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Floats from one row to the next.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    #[inline]
    pub(crate) fn row_mut(&mut self, r: usize) -> &mut [f32] {
        assert!(r < self.rows);
        // SAFETY: `new` checked that row `r < rows` lies inside the borrowed buffer, and
        // `split_columns` only narrows `cols` and moves the origin within a row, so the range is
        // in bounds. `&mut self` makes the slice the only live access to these elements.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.stride), self.cols) }
    }

    /// Row `r`, read-only.
    #[inline]
    pub(crate) fn row(&self, r: usize) -> &[f32] {
        assert!(r < self.rows);
        // SAFETY: as in `row_mut`; `&self` makes this a shared access only.
        unsafe { std::slice::from_raw_parts(self.ptr.add(r * self.stride), self.cols) }
    }

    /// The same view, borrowed for a shorter time (to cut it without giving it up).
    pub(crate) fn reborrow(&mut self) -> RowsMut<'_> {
        RowsMut {
            ptr: self.ptr,
            rows: self.rows,
            cols: self.cols,
            stride: self.stride,
            _borrow: PhantomData,
        }
    }

    /// Rows `r0..` of the view.
    ///
    /// # Panics
    /// If `r0 > rows`.
    pub(crate) fn rows_from(self, r0: usize) -> RowsMut<'a> {
        assert!(r0 <= self.rows);
        // For `r0 == rows` the view is empty and its pointer is never dereferenced.
        let ptr = if r0 < self.rows {
            // SAFETY: row `r0 < rows` starts inside the borrowed buffer (see `row_mut`).
            unsafe { self.ptr.add(r0 * self.stride) }
        } else {
            self.ptr
        };
        RowsMut {
            ptr,
            rows: self.rows - r0,
            cols: self.cols,
            stride: self.stride,
            _borrow: PhantomData,
        }
    }

    /// Cuts the view into columns `0..at` and `at..cols` of the same rows.
    ///
    /// # Panics
    /// If `at > cols`.
    pub(crate) fn split_columns(self, at: usize) -> (RowsMut<'a>, RowsMut<'a>) {
        assert!(at <= self.cols);
        let right_ptr = if self.rows == 0 {
            self.ptr
        } else {
            // SAFETY: `at <= cols`, so the offset stays inside (or one past the end of) row 0,
            // which lies inside the borrowed buffer.
            unsafe { self.ptr.add(at) }
        };
        (
            RowsMut {
                ptr: self.ptr,
                rows: self.rows,
                cols: at,
                stride: self.stride,
                _borrow: PhantomData,
            },
            RowsMut {
                ptr: right_ptr,
                rows: self.rows,
                cols: self.cols - at,
                stride: self.stride,
                _borrow: PhantomData,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_columns_writes_disjoint_ranges() {
        let mut buf = vec![0.0f32; 3 * 7];
        let view = RowsMut::new(&mut buf, 3, 6, 7);
        let (mut left, mut right) = view.split_columns(4);
        assert_eq!((left.cols(), right.cols()), (4, 2));
        for r in 0..3 {
            left.row_mut(r).fill(1.0);
            right.row_mut(r).fill(2.0);
        }
        assert_eq!(
            &buf[..14],
            &[
                1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 0.0
            ]
        );
    }

    #[test]
    fn reborrowed_rows_write_through_and_leave_the_view_usable() {
        let mut buf = vec![0.0f32; 3 * 4];
        let mut view = RowsMut::new(&mut buf, 3, 3, 4);
        let mut tail = view.reborrow().rows_from(1);
        assert_eq!(tail.rows(), 2);
        tail.row_mut(0).fill(5.0);
        view.row_mut(0)[2] = 1.0;
        assert_eq!(
            buf,
            [0.0, 0.0, 1.0, 0.0, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
    }
}

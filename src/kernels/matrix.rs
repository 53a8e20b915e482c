//! Borrowed row-major matrices with a row stride: what kernels read and write.

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
}

/// A mutable row-major matrix view: row `r` is `data[r * stride..][..cols]`.
#[derive(Debug)]
pub(crate) struct RowsMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a> RowsMut<'a> {
    /// # Panics
    /// If `data` is too short for `rows` rows of `cols` at `stride`.
    pub(crate) fn new(data: &'a mut [f32], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(cols <= stride || rows <= 1);
        assert!(rows == 0 || data.len() >= (rows - 1) * stride + cols);
        RowsMut {
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
    pub(crate) fn row_mut(&mut self, r: usize) -> &mut [f32] {
        &mut self.data[r * self.stride..r * self.stride + self.cols]
    }
}

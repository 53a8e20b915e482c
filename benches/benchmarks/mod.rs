//! Bench groups, one module each.

pub mod kernels;
pub mod predict_batch;
pub mod scheduler;

use ndarray::Array2;

/// A deterministic input batch with varied signs (the values do not change the work).
pub fn input(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        (((i * 7919 + j * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 1.7
    })
}

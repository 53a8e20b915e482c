//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, ArrayView2};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

/// A fresh temporary folder, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("densebatch-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads tensor `name` of a safetensors file as f32 (F32 or I32 stored).
pub fn tensor_f32(path: &Path, name: &str) -> ArrayD<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor(name).unwrap();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::I32 => view
            .data()
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        other => panic!("unexpected dtype {other:?}"),
    };
    ArrayD::from_shape_vec(view.shape(), values).unwrap()
}

/// Largest per-row relative error: max_j |got - want| / max_j |want|, over all rows.
pub fn max_row_relative_error(got: ArrayView2<f32>, want: ArrayView2<f32>) -> f64 {
    assert_eq!(got.dim(), want.dim());
    got.outer_iter()
        .zip(want.outer_iter())
        .map(|(g, w)| {
            let scale = w.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
            g.iter()
                .zip(w)
                .map(|(a, b)| (*a as f64 - *b as f64).abs() / scale)
                .fold(0f64, f64::max)
        })
        .fold(0f64, f64::max)
}

/// A deterministic input with varied signs.
pub fn input(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        let h = (i as u64 * 7919 + j as u64 * 104_729 + seed * 15_485_863) % 4001;
        h as f32 / 2000.0 - 1.0
    })
}

pub fn argmax(row: ndarray::ArrayView1<f32>) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
        .0
}

//! The plain-Rust reference path: naive loops, kept forever as the oracle every fast kernel is
//! tested against. It fixes the arithmetic every kernel must reproduce bit for bit:
//! `acc = b[n]; for k in 0..K { acc = fma(x[m,k], W[k,n], acc) }; out[m,n] = act(acc)`.

use ndarray::{Array2, ArrayView1, ArrayView2};

use super::precision::{
    ACTIVATION_CODE_OFFSET, Precision, activation_code, effective_weights, quantize_int8, row_scale,
};
use crate::Activation;

/// One dense layer by naive loops: `act(x · w + b)`, with `w` of shape `[k, n]`.
///
/// # Panics
/// If the shapes disagree.
pub(crate) fn dense_reference(
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
    activation: Activation,
) -> Array2<f32> {
    let (m, k) = x.dim();
    let (kw, n) = w.dim();
    assert_eq!(k, kw, "x has {k} columns but w has {kw} rows");
    let mut out = Array2::zeros((m, n));
    for i in 0..m {
        for j in 0..n {
            let mut acc = bias.map_or(0.0, |b| b[j]);
            for kk in 0..k {
                acc = x[[i, kk]].mul_add(w[[kk, j]], acc);
            }
            out[[i, j]] = acc;
        }
        activation.apply_row(
            out.row_mut(i)
                .as_slice_mut()
                .expect("fresh array is contiguous"),
        );
    }
    out
}

/// One dense layer with weights in `precision`, by naive loops: the arithmetic
/// [`Precision`] defines (bf16: [`dense_reference`] on the rounded weights; int8: the chain over
/// the codes from zero, then `fma(acc, s[n], b[n])`, then the activation).
///
/// # Panics
/// If the shapes disagree.
pub(crate) fn dense_reference_precision(
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
    activation: Activation,
    precision: Precision,
) -> Array2<f32> {
    if precision == Precision::Int8Full {
        return dense_reference_int8_full(x, w, bias, activation);
    }
    let (w, scales) = effective_weights(w, precision);
    let Some(scales) = scales else {
        return dense_reference(x, w.view(), bias, activation);
    };
    let mut out = dense_reference(x, w.view(), None, Activation::Identity);
    for mut row in out.rows_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = v.mul_add(scales[j], bias.map_or(0.0, |b| b[j]));
        }
        activation.apply_row(row.as_slice_mut().expect("fresh array is contiguous"));
    }
    out
}

/// One dense layer in [`Precision::Int8Full`] by naive loops: each row quantised on its own,
/// exact integer sums over the codes, then `fma(acc as f32, s_x * s[n], b[n])` and the activation.
fn dense_reference_int8_full(
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
    activation: Activation,
) -> Array2<f32> {
    let (m, k) = x.dim();
    let (kw, n) = w.dim();
    assert_eq!(k, kw, "x has {k} columns but w has {kw} rows");
    let (q, scales) = quantize_int8(w);
    let mut out = Array2::zeros((m, n));
    for i in 0..m {
        let row = x.row(i).to_vec();
        let (scale, inv) = row_scale(&row);
        let codes: Vec<i32> = row
            .iter()
            .map(|&v| i32::from(activation_code(v, inv)) - ACTIVATION_CODE_OFFSET)
            .collect();
        for j in 0..n {
            let acc: i32 = (0..k).map(|kk| codes[kk] * i32::from(q[[kk, j]])).sum();
            out[[i, j]] = (acc as f32).mul_add(scale * scales[j], bias.map_or(0.0, |b| b[j]));
        }
        activation.apply_row(
            out.row_mut(i)
                .as_slice_mut()
                .expect("fresh array is contiguous"),
        );
    }
    out
}

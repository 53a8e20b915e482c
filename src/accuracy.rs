//! How far outputs are from reference outputs: the figures `densebatch inspect --precision`
//! reports for bf16 and int8 weights, and the accuracy gates the tests assert.

use ndarray::{ArrayView1, ArrayView2};

/// Error statistics of outputs against reference outputs of the same shape.
///
/// ```
/// use densebatch::OutputError;
/// let reference = ndarray::arr2(&[[1.0f64, 2.0], [3.0, -4.0]]);
/// let got = ndarray::arr2(&[[1.0f32, 2.5], [3.0, -4.0]]);
/// let e = OutputError::between(reference.view(), got.view());
/// assert_eq!((e.rows, e.max_abs, e.max_rel), (2, 0.5, 0.25));
/// assert!((e.sqnr_db - 20.0 * (30f64.sqrt() / 0.5).log10()).abs() < 1e-12);
/// assert_eq!(e.argmax_agreement, 1.0);
/// assert!(e.min_cosine < 1.0 && e.min_cosine > 0.99);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct OutputError {
    /// Rows compared.
    pub rows: usize,
    /// The largest `|got - reference|` of any element.
    pub max_abs: f64,
    /// The largest `max |got - reference| / max |reference|` of any row (relative to the row's
    /// largest magnitude, so that outputs near zero do not blow it up).
    pub max_rel: f64,
    /// Signal-to-quantisation-noise ratio over every element,
    /// `20 log10(‖reference‖ / ‖got - reference‖)`, in dB (infinite when equal).
    pub sqnr_db: f64,
    /// The smallest cosine similarity of a row with its reference row (1 for two zero rows).
    pub min_cosine: f64,
    /// Fraction of rows whose largest output sits at the same index as the reference's.
    pub argmax_agreement: f64,
}

impl OutputError {
    /// Compares `got` with `reference` (`f64` or `f32`), row by row.
    ///
    /// # Panics
    /// If the shapes differ.
    pub fn between<R: Copy + Into<f64>>(
        reference: ArrayView2<'_, R>,
        got: ArrayView2<'_, f32>,
    ) -> Self {
        assert_eq!(reference.dim(), got.dim(), "shapes differ");
        let mut e = OutputError {
            rows: got.nrows(),
            max_abs: 0.0,
            max_rel: 0.0,
            sqnr_db: f64::INFINITY,
            min_cosine: 1.0,
            argmax_agreement: 1.0,
        };
        let (mut signal, mut noise, mut agree) = (0.0f64, 0.0f64, 0usize);
        for (want, have) in reference.outer_iter().zip(got.outer_iter()) {
            let want = want.mapv(Into::into);
            let have = have.mapv(f64::from);
            let (mut row_abs, mut row_peak, mut dot, mut ww, mut hh) =
                (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for (&w, &h) in want.iter().zip(&have) {
                row_abs = row_abs.max((h - w).abs());
                row_peak = row_peak.max(w.abs());
                noise += (h - w) * (h - w);
                (dot, ww, hh) = (dot + w * h, ww + w * w, hh + h * h);
            }
            signal += ww;
            e.max_abs = e.max_abs.max(row_abs);
            if row_peak > 0.0 {
                e.max_rel = e.max_rel.max(row_abs / row_peak);
            }
            let cosine = if ww == 0.0 && hh == 0.0 {
                1.0
            } else {
                dot / (ww.sqrt() * hh.sqrt())
            };
            e.min_cosine = e.min_cosine.min(cosine);
            agree += usize::from(argmax(want.view()) == argmax(have.view()));
        }
        if noise > 0.0 {
            e.sqnr_db = 10.0 * (signal / noise).log10();
        }
        if e.rows > 0 {
            e.argmax_agreement = agree as f64 / e.rows as f64;
        }
        e
    }
}

/// The index of the first largest value.
fn argmax(row: ArrayView1<'_, f64>) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
        .0
}

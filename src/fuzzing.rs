//! Entry points for the fuzz targets (tests/fuzz) into parsers that have no public bytes-based
//! door of their own. Not part of the API: hidden from the docs and free to change.

use ndarray::ArrayD;

use crate::error::Result;

/// Parses the bytes of a float32 `.npy` file exactly as the reference-harness loader parses each
/// `W{i}.npy` / `b{i}.npy` file.
///
/// # Examples
/// ```
/// let err = densebatch::fuzzing::read_npy_f32(b"\x93NUMPY\x01\x00").unwrap_err();
/// assert!(matches!(err, densebatch::Error::Format { .. }), "{err}");
/// ```
///
/// # Errors
/// [`crate::Error::Format`] for a malformed header, another dtype, Fortran order, or a length
/// that disagrees with the header's shape.
pub fn read_npy_f32(bytes: &[u8]) -> Result<ArrayD<f32>> {
    crate::model::read_npy_f32_bytes(bytes)
}

//! A small reader for the float32 `.npy` files of reference-harness models.
//!
//! Written by hand because the loader must refuse a lying header before it allocates: npyz 0.9
//! multiplies the header's shape unchecked (an overflowing shape panics, or wraps to a small
//! length in release builds), and `ndarray-npy` reads whole files without checking their length
//! against the header first.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Origin, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NpyHeader {
    /// The dtype string, e.g. `<f4`.
    pub descr: String,
    /// Whether the data is in column-major order.
    pub fortran_order: bool,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Byte offset of the first data byte.
    pub data_offset: u64,
}

impl NpyHeader {
    /// Bytes of float32 data the shape holds; `None` when that overflows 64 bits (a lying
    /// header).
    fn data_bytes(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(4u64, |bytes, &d| bytes.checked_mul(d as u64))
    }
}

/// Reads and parses a `.npy` header from the start of `reader`.
///
/// # Errors
/// [`Error::Format`] when the magic, version or header dictionary is malformed.
pub(crate) fn read_npy_header(reader: &mut impl Read, origin: &Origin) -> Result<NpyHeader> {
    let bad = |msg: &str| Error::format(origin, format!("not a valid .npy file: {msg}"));
    let mut prefix = [0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|_| bad("shorter than its magic"))?;
    if &prefix[..6] != MAGIC {
        return Err(bad("bad magic"));
    }
    let (len_bytes, offset) = match prefix[6] {
        1 => (2, 10u64),
        2 | 3 => (4, 12u64),
        v => return Err(bad(&format!("unsupported version {v}"))),
    };
    let mut len_buf = [0u8; 4];
    reader
        .read_exact(&mut len_buf[..len_bytes])
        .map_err(|_| bad("truncated header length"))?;
    let header_len = u32::from_le_bytes(len_buf) as usize;
    if header_len > 1 << 20 {
        return Err(bad("header longer than 1 MiB"));
    }
    let mut header = vec![0u8; header_len];
    reader
        .read_exact(&mut header)
        .map_err(|_| bad("truncated header"))?;
    let header = String::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let descr = dict_value(&header, "descr")
        .and_then(|v| v.trim().strip_prefix('\'')?.split('\'').next())
        .ok_or_else(|| bad("no descr"))?
        .to_string();
    let fortran_order = match dict_value(&header, "fortran_order").map(str::trim_start) {
        Some(v) if v.starts_with("False") => false,
        Some(v) if v.starts_with("True") => true,
        _ => return Err(bad("no fortran_order")),
    };
    let shape_text = dict_value(&header, "shape")
        .and_then(|v| v.trim_start().strip_prefix('(')?.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad("shape is not a tuple of integers"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
        data_offset: offset + header_len as u64,
    })
}

fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = &header[at + key.len() + 2..];
    rest.trim_start().strip_prefix(':')
}

/// Reads a whole little-endian float32, C-order `.npy` file.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] for another dtype, Fortran order,
/// or a length that disagrees with the header's shape (checked before allocating).
pub(crate) fn read_npy_f32(path: &Path) -> Result<ArrayD<f32>> {
    let origin = Origin::file(path);
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    read_npy_f32_from(BufReader::new(file), file_len, &origin)
}

/// Reads a `.npy` file's bytes as [`read_npy_f32`] reads the file.
///
/// # Errors
/// As [`read_npy_f32`].
pub(crate) fn read_npy_f32_bytes(bytes: &[u8]) -> Result<ArrayD<f32>> {
    read_npy_f32_from(bytes, bytes.len() as u64, &Origin::default())
}

/// The reader behind both: `len` is the whole input's length, checked against the header's shape
/// before anything is allocated.
fn read_npy_f32_from(mut reader: impl Read, len: u64, origin: &Origin) -> Result<ArrayD<f32>> {
    let header = read_npy_header(&mut reader, origin)?;
    if header.descr != "<f4" {
        return Err(Error::format(
            origin,
            format!(
                "dtype is {}, expected little-endian float32 (<f4)",
                header.descr
            ),
        ));
    }
    if header.fortran_order {
        return Err(Error::format(
            origin,
            "Fortran-order arrays are not supported",
        ));
    }
    let held = len.saturating_sub(header.data_offset);
    let Some(needed) = header.data_bytes() else {
        return Err(Error::format(
            origin,
            format!(
                "shape {:?} is too large (its size overflows 64 bits); the file holds {held} data bytes",
                header.shape
            ),
        ));
    };
    if header.data_offset.checked_add(needed) != Some(len) {
        return Err(Error::format(
            origin,
            format!(
                "shape {:?} needs {needed} data bytes but the file holds {held}",
                header.shape
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(held as usize);
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(origin.path().unwrap_or(Path::new("<in-memory .npy>")), e))?;
    if bytes.len() as u64 != held {
        // The file changed length while it was read.
        return Err(Error::format(
            origin,
            format!("expected {held} data bytes, read {}", bytes.len()),
        ));
    }
    let values = super::safetensors_file::f32s_from_le_bytes(&bytes);
    // The length matches; ndarray still refuses a shape whose non-zero axes multiply past
    // isize::MAX, which an empty array (one axis 0) can have.
    ArrayD::from_shape_vec(IxDyn(&header.shape), values).map_err(|e| {
        Error::format(
            origin,
            format!("shape {:?} is not a valid array shape: {e}", header.shape),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayView2, array};
    use std::io::Write;

    /// The header bytes of a version-1 `.npy` file holding a float32 C-order array of `shape`.
    fn npy_header_bytes(shape: &[usize]) -> Vec<u8> {
        let dims = match shape {
            [d] => format!("({d},)"),
            _ => format!(
                "({})",
                shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
        // Pad so that the data starts on a 64-byte boundary, ending the header with a newline.
        let total = MAGIC.len() + 4 + dict.len() + 1;
        dict.push_str(&" ".repeat((64 - total % 64) % 64));
        dict.push('\n');
        let mut out = Vec::with_capacity(10 + dict.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out
    }

    /// Writes a 2-D float32 array as a `.npy` file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    fn write_npy_f32(path: &Path, array: ArrayView2<'_, f32>) -> Result<()> {
        let mut bytes = npy_header_bytes(array.shape());
        bytes.extend(array.iter().flat_map(|v| v.to_le_bytes()));
        let mut file = File::create(path).map_err(|e| Error::io(path, e))?;
        file.write_all(&bytes).map_err(|e| Error::io(path, e))
    }

    /// Found by the `npy` fuzz target: an empty array (one axis 0, so 0 data bytes) whose other
    /// axes multiply past what ndarray can index.
    #[test]
    fn an_empty_shape_too_large_to_index_is_a_format_error() {
        let huge = 1usize << 40;
        for shape in [vec![0, huge, huge], vec![huge, huge, 0]] {
            let bytes = npy_header_bytes(&shape);
            let err = read_npy_f32_bytes(&bytes).unwrap_err();
            assert!(matches!(err, Error::Format { .. }), "{err}");
        }
        // A small empty array still reads.
        let bytes = npy_header_bytes(&[0, 3]);
        assert_eq!(read_npy_f32_bytes(&bytes).unwrap().shape(), &[0, 3]);
    }

    #[test]
    fn header_round_trip() {
        let bytes = npy_header_bytes(&[3, 5]);
        assert_eq!(bytes.len() % 64, 0);
        let h = read_npy_header(&mut bytes.as_slice(), &Origin::default()).unwrap();
        assert_eq!(h.shape, vec![3, 5]);
        assert_eq!(h.descr, "<f4");
        assert!(!h.fortran_order);
        assert_eq!(h.data_offset, bytes.len() as u64);
        let h1 =
            read_npy_header(&mut npy_header_bytes(&[7]).as_slice(), &Origin::default()).unwrap();
        assert_eq!(h1.shape, vec![7]);
    }

    #[test]
    fn file_round_trip_and_truncation() {
        let dir = std::env::temp_dir().join(format!("densebatch-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        let a = array![[1.0f32, -2.5], [3.0, f32::MIN_POSITIVE]];
        write_npy_f32(&path, a.view()).unwrap();
        let back = read_npy_f32(&path).unwrap();
        assert_eq!(back.into_dimensionality::<ndarray::Ix2>().unwrap(), a);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(read_npy_f32(&path), Err(Error::Format { .. })));
        std::fs::write(&path, &bytes[..5]).unwrap();
        assert!(matches!(read_npy_f32(&path), Err(Error::Format { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A header whose shape overflows when multiplied, with no data: refused, never a panic
    /// (a wrapping product would make it look like an empty array).
    #[test]
    fn an_overflowing_shape_is_refused() {
        let dir = std::env::temp_dir().join(format!("densebatch-npy-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.npy");
        for shape in [[4_611_686_018_427_387_904, 4], [usize::MAX, 2]] {
            std::fs::write(&path, npy_header_bytes(&shape)).unwrap();
            let error = read_npy_f32(&path).unwrap_err();
            assert!(
                error.to_string().contains("too large"),
                "{shape:?}: {error}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

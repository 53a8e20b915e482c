//! `.npy` files of rows: read through `npyz` (f2, f4 and f8, either byte order), written as `<f4`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, ensure};
use half::f16;
use npyz::{DType, NpyFile, NpyReader, NpyWriter, Order, TypeChar, WriterBuilder};

use super::{RowSink, RowSource, rows_and_cols};

/// Headers longer than this are refused (numpy writes a few hundred bytes at most).
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Opens a `.npy` file of float rows, checking its header against its length first.
pub fn open(path: &Path, file: File, file_len: u64) -> Result<Box<dyn RowSource>> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let header = read_header_bytes(path, &mut reader)?;
    check_plain_header(path, &header)?;
    check_shape_fits(path, &header)?;
    let data_offset = header.len() as u64;
    // npyz parses the header again from our copy, then reads the data from the file.
    let npy = NpyFile::new(Cursor::new(header).chain(reader)).map_err(|e| {
        // npyz's header parse errors span several lines (a caret diagram): keep one.
        let msg = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        anyhow!("{}: not a valid .npy file: {msg}", path.display())
    })?;
    ensure!(
        npy.order() == Order::C,
        "{}: Fortran-order arrays are not supported; save the array in C order",
        path.display()
    );
    let dtype = npy.dtype();
    let not_float = || {
        let descr = match &dtype {
            DType::Plain(type_str) => type_str.to_string(),
            other => other.descr(),
        };
        anyhow!(
            "{}: dtype `{descr}` is not a floating-point type; convert the input to float32",
            path.display()
        )
    };
    let DType::Plain(type_str) = &dtype else {
        return Err(not_float());
    };
    if type_str.type_char() != TypeChar::Float {
        return Err(not_float());
    }
    let elem_bytes = type_str.size_field();
    let shape = npy.shape().to_vec();
    let (rows, cols) = rows_and_cols(path, &shape)?;
    let needed = rows
        .checked_mul(cols as u64)
        .and_then(|n| n.checked_mul(elem_bytes));
    let data_len = file_len.saturating_sub(data_offset);
    ensure!(
        needed == Some(data_len),
        "{}: shape {shape:?} needs {} data bytes but {data_len} are there",
        path.display(),
        needed.map_or("too many".to_string(), |n| n.to_string()),
    );
    let layout = Layout {
        path: path.to_path_buf(),
        cols,
        rows,
        data_offset,
        elem_bytes,
        file_len,
    };
    let wrong_dtype = |e| anyhow!("{}: {e}", path.display());
    Ok(match elem_bytes {
        2 => Box::new(NpyRows::new(
            layout,
            npy.data::<f16>().map_err(wrong_dtype)?,
        )),
        4 => Box::new(NpyRows::new(
            layout,
            npy.data::<f32>().map_err(wrong_dtype)?,
        )),
        8 => Box::new(NpyRows::new(
            layout,
            npy.data::<f64>().map_err(wrong_dtype)?,
        )),
        _ => return Err(not_float()),
    })
}

/// Reads the magic string, version, header length and header text: everything before the data.
fn read_header_bytes(path: &Path, reader: &mut impl Read) -> Result<Vec<u8>> {
    let mut header = vec![0u8; 8];
    reader
        .read_exact(&mut header)
        .ok()
        .filter(|_| header.starts_with(b"\x93NUMPY"))
        .ok_or_else(|| {
            anyhow!(
                "{}: not a .npy file (magic string not found)",
                path.display()
            )
        })?;
    // Version 1 stores the text length in two bytes, later versions in four.
    let length_bytes = if header[6] == 1 { 2 } else { 4 };
    let mut length = [0u8; 4];
    reader
        .read_exact(&mut length[..length_bytes])
        .with_context(|| format!("{}: truncated header", path.display()))?;
    header.extend_from_slice(&length[..length_bytes]);
    let text_len = u32::from_le_bytes(length) as usize;
    ensure!(
        text_len <= MAX_HEADER_BYTES,
        "{}: header of {text_len} bytes; at most {MAX_HEADER_BYTES} are read",
        path.display()
    );
    let start = header.len();
    header.resize(start + text_len, 0);
    reader
        .read_exact(&mut header[start..])
        .with_context(|| format!("{}: truncated header", path.display()))?;
    Ok(header)
}

/// Refuses a header that is more than one flat dictionary with one tuple (`descr`, `fortran_order`,
/// `shape`): npyz parses it with a backtracking grammar that takes exponential time in the nesting
/// depth (the cli_input fuzz target found a 60-deep `[[[...` that ran for seconds), and the float
/// arrays read here never need lists or nested values.
fn check_plain_header(path: &Path, header: &[u8]) -> Result<()> {
    let count = |c: u8| header.iter().filter(|&&b| b == c).count();
    ensure!(
        count(b'[') == 0 && count(b'{') <= 1 && count(b'(') <= 1,
        "{}: not a valid .npy file of floats: its header holds nested values",
        path.display()
    );
    Ok(())
}

/// Refuses a shape whose element count (or any partial product of it) overflows 64 bits: `npyz`
/// multiplies the dimensions unchecked, which panics in a debug build and wraps in a release one.
fn check_shape_fits(path: &Path, header: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(header);
    let Some(shape) = text.find("'shape'").map(|at| &text[at..]).and_then(|rest| {
        // The first ')' after the '(' (a damaged header may hold one before it).
        let open = rest.find('(')? + 1;
        let close = open + rest[open..].find(')')?;
        Some(&rest[open..close])
    }) else {
        // No shape to check: npyz reports what is missing.
        return Ok(());
    };
    let dims: Vec<u64> = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter_map(|d| d.parse().ok())
        .collect();
    // Zeros skipped: npyz also multiplies the dimensions after a zero (the strides).
    let fits = dims
        .iter()
        .filter(|d| **d != 0)
        .try_fold(1u64, |product, d| product.checked_mul(*d))
        .is_some();
    ensure!(
        fits,
        "{}: shape ({shape}) holds more elements than 64 bits can count",
        path.display()
    );
    Ok(())
}

/// Where the rows of an `.npy` file are.
struct Layout {
    path: PathBuf,
    cols: usize,
    rows: u64,
    data_offset: u64,
    elem_bytes: u64,
    file_len: u64,
}

/// A float element read from a file, converted exactly (f2, f4) or rounded (f8) to f32.
trait ToF32 {
    fn to_f32(self) -> f32;
}

impl ToF32 for f16 {
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
}

impl ToF32 for f32 {
    fn to_f32(self) -> f32 {
        self
    }
}

impl ToF32 for f64 {
    fn to_f32(self) -> f32 {
        self as f32
    }
}

/// The rows of an `.npy` file of element type `T`, in order.
struct NpyRows<T: npyz::Deserialize, R: Read> {
    layout: Layout,
    values: NpyReader<T, R>,
    rows_read: u64,
}

impl<T: npyz::Deserialize, R: Read> NpyRows<T, R> {
    fn new(layout: Layout, values: NpyReader<T, R>) -> Self {
        NpyRows {
            layout,
            values,
            rows_read: 0,
        }
    }
}

impl<T: npyz::Deserialize + ToF32, R: Read> RowSource for NpyRows<T, R> {
    fn cols(&self) -> usize {
        self.layout.cols
    }

    fn rows_hint(&self) -> Option<u64> {
        Some(self.layout.rows)
    }

    fn total_bytes(&self) -> u64 {
        self.layout.file_len
    }

    fn bytes_read(&self) -> u64 {
        self.layout.data_offset + self.rows_read * self.layout.cols as u64 * self.layout.elem_bytes
    }

    fn read_rows(&mut self, buf: &mut [f32]) -> Result<usize> {
        let cols = self.layout.cols;
        if cols == 0 {
            return Ok(0);
        }
        let rows = ((buf.len() / cols) as u64).min(self.layout.rows - self.rows_read) as usize;
        for dst in &mut buf[..rows * cols] {
            let value = self.values.next().transpose().ok().flatten();
            *dst = value
                .ok_or_else(|| {
                    anyhow!(
                        "{}: cannot read the data (truncated?)",
                        self.layout.path.display()
                    )
                })?
                .to_f32();
        }
        self.rows_read += rows as u64;
        Ok(rows)
    }
}

/// Output rows as a float32 `.npy` file; `npyz` patches the row count into the header at the end.
pub struct NpySink {
    path: PathBuf,
    writer: NpyWriter<f32, BufWriter<File>>,
    file: File,
}

impl NpySink {
    pub fn create(path: &Path, file: File, cols: usize) -> Result<Self> {
        let io = || format!("{}", path.display());
        let synced = file.try_clone().with_context(io)?;
        let writer = npyz::WriteOptions::new()
            .default_dtype()
            .writer(BufWriter::with_capacity(1 << 20, file))
            .begin_2d(cols as u64)
            .with_context(io)?;
        Ok(NpySink {
            path: path.to_path_buf(),
            writer,
            file: synced,
        })
    }
}

impl RowSink for NpySink {
    fn write_rows(&mut self, values: &[f32]) -> Result<()> {
        self.writer
            .extend(values.iter().copied())
            .with_context(|| format!("{}", self.path.display()))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let NpySink { path, writer, file } = *self;
        let io = || format!("{}", path.display());
        writer.finish().with_context(io)?;
        file.sync_all().with_context(io)
    }
}

//! `.safetensors` files: tensors read through the `safetensors` crate over a memory map (F16, BF16,
//! F32, F64 as rows; integer labels too), output rows written as they come.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use half::{bf16, f16};
use memmap2::Mmap;
use ndarray::{ArrayD, IxDyn};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use super::{RowSink, RowSource, rows_and_cols};

/// Maps `file` into memory.
fn map(path: &Path, file: &File) -> Result<Mmap> {
    // SAFETY: the map is only read. A file truncated by another process while we read it would
    // fault, which the CLI accepts for its input files, as every mmap reader does.
    unsafe { Mmap::map(file) }.with_context(|| format!("{}", path.display()))
}

fn deserialize<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))
}

/// The tensor `wanted`, or without a name the file's only tensor, or else its tensor `x`.
fn pick_tensor<'a>(
    path: &Path,
    tensors: &SafeTensors<'a>,
    wanted: Option<&str>,
) -> Result<(String, TensorView<'a>)> {
    let mut names = tensors.names();
    names.sort_unstable();
    let name = match wanted {
        Some(name) => name,
        None if names.len() == 1 => names[0],
        None => "x",
    };
    match tensors.tensor(name) {
        Ok(view) => Ok((name.to_string(), view)),
        Err(_) => {
            let listed = names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            match wanted {
                Some(name) => bail!("{}: no tensor `{name}` (it holds {listed})", path.display()),
                None => bail!(
                    "{}: holds several tensors ({listed}); choose one with --tensor",
                    path.display()
                ),
            }
        }
    }
}

/// A float element type of a safetensors file (always little-endian).
#[derive(Debug, Clone, Copy)]
enum FloatElem {
    F16,
    BF16,
    F32,
    F64,
}

impl FloatElem {
    fn of(path: &Path, name: &str, dtype: Dtype) -> Result<Self> {
        Ok(match dtype {
            Dtype::F16 => FloatElem::F16,
            Dtype::BF16 => FloatElem::BF16,
            Dtype::F32 => FloatElem::F32,
            Dtype::F64 => FloatElem::F64,
            _ => bail!(
                "{}: tensor `{name}` has dtype {dtype}, not a floating-point type; convert it to F32",
                path.display()
            ),
        })
    }

    fn bytes(self) -> usize {
        match self {
            FloatElem::F16 | FloatElem::BF16 => 2,
            FloatElem::F32 => 4,
            FloatElem::F64 => 8,
        }
    }

    /// Decodes `raw` (a whole number of elements) into `out`, one value per element.
    fn decode(self, raw: &[u8], out: &mut [f32]) {
        let chunks = raw.chunks_exact(self.bytes());
        match self {
            FloatElem::F16 => {
                for (dst, c) in out.iter_mut().zip(chunks) {
                    *dst = f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            FloatElem::BF16 => {
                for (dst, c) in out.iter_mut().zip(chunks) {
                    *dst = bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            FloatElem::F32 => {
                for (dst, c) in out.iter_mut().zip(chunks) {
                    *dst = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            FloatElem::F64 => {
                for (dst, c) in out.iter_mut().zip(chunks) {
                    *dst = f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32;
                }
            }
        }
    }
}

/// The rows of one tensor of a mapped safetensors file.
pub struct MappedRows {
    map: Mmap,
    data: Range<usize>,
    elem: FloatElem,
    cols: usize,
    rows: u64,
    rows_read: u64,
}

impl MappedRows {
    pub fn open(path: &Path, file: &File, wanted: Option<&str>) -> Result<Self> {
        let map = map(path, file)?;
        let tensors = deserialize(path, &map)?;
        let (name, view) = pick_tensor(path, &tensors, wanted)?;
        let elem = FloatElem::of(path, &name, view.dtype())?;
        let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
        let (rows, cols) =
            rows_and_cols(path, &shape).with_context(|| format!("tensor `{name}`"))?;
        // The crate has checked that the data matches the shape and lies inside the file.
        let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
        let data = start..start + view.data().len();
        Ok(MappedRows {
            map,
            data,
            elem,
            cols,
            rows,
            rows_read: 0,
        })
    }

    fn row_bytes(&self) -> usize {
        self.cols * self.elem.bytes()
    }
}

impl RowSource for MappedRows {
    fn cols(&self) -> usize {
        self.cols
    }

    fn rows_hint(&self) -> Option<u64> {
        Some(self.rows)
    }

    fn total_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    fn bytes_read(&self) -> u64 {
        (self.data.start + self.rows_read as usize * self.row_bytes()) as u64
    }

    fn read_rows(&mut self, buf: &mut [f32]) -> Result<usize> {
        if self.cols == 0 {
            return Ok(0);
        }
        let rows = ((buf.len() / self.cols) as u64).min(self.rows - self.rows_read) as usize;
        let from = self.data.start + self.rows_read as usize * self.row_bytes();
        let raw = &self.map[from..from + rows * self.row_bytes()];
        self.elem.decode(raw, &mut buf[..rows * self.cols]);
        self.rows_read += rows as u64;
        Ok(rows)
    }
}

/// Reads a whole (small) tensor of a safetensors file as f32; integer tensors (labels) too.
pub fn read_tensor(path: &Path, name: &str) -> Result<ArrayD<f32>> {
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let map = map(path, &file)?;
    let tensors = deserialize(path, &map)?;
    let (_, view) = pick_tensor(path, &tensors, Some(name))?;
    let raw = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::I32 => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        Dtype::I64 => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        dtype => {
            let elem = FloatElem::of(path, name, dtype)?;
            let mut values = vec![0f32; raw.len() / elem.bytes()];
            elem.decode(raw, &mut values);
            values
        }
    };
    ArrayD::from_shape_vec(IxDyn(view.shape()), values).with_context(|| {
        format!(
            "{}: tensor `{name}`'s data does not match its shape {:?}",
            path.display(),
            view.shape()
        )
    })
}

/// Bytes reserved for the output header: enough for a shape of two 20-digit numbers.
const HEADER_BYTES: usize = 256;

/// Output rows as tensor `y` (F32) of a safetensors file. Written by hand rather than with
/// `safetensors::serialize`, which needs every row in memory at once: a fixed-size header is
/// reserved and rewritten with the row count at the end.
pub struct SafetensorsSink {
    path: PathBuf,
    writer: BufWriter<File>,
    cols: usize,
    rows: u64,
}

impl SafetensorsSink {
    pub fn create(path: &Path, file: File, cols: usize) -> Result<Self> {
        let mut sink = SafetensorsSink {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, file),
            cols,
            rows: 0,
        };
        let placeholder = sink.header();
        sink.writer
            .write_all(&placeholder)
            .with_context(|| format!("{}", path.display()))?;
        Ok(sink)
    }

    fn header(&self) -> Vec<u8> {
        let (rows, cols) = (self.rows, self.cols);
        let bytes = rows * cols as u64 * 4;
        let json = format!(
            "{{\"y\":{{\"dtype\":\"F32\",\"shape\":[{rows},{cols}],\"data_offsets\":[0,{bytes}]}}}}"
        );
        let mut out = (HEADER_BYTES as u64).to_le_bytes().to_vec();
        // The format allows trailing spaces in the header.
        out.extend_from_slice(format!("{json:<HEADER_BYTES$}").as_bytes());
        out
    }
}

impl RowSink for SafetensorsSink {
    fn write_rows(&mut self, values: &[f32]) -> Result<()> {
        for v in values {
            self.writer
                .write_all(&v.to_le_bytes())
                .with_context(|| format!("{}", self.path.display()))?;
        }
        self.rows += (values.len() / self.cols) as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let header = self.header();
        let path = self.path.display().to_string();
        let mut file = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .context(path.clone())?;
        file.seek(SeekFrom::Start(0)).context(path.clone())?;
        file.write_all(&header).context(path.clone())?;
        file.sync_all().context(path)
    }
}

//! Input and output files of rows (`.npy`, `.safetensors`, `.csv`): the kind told by the extension
//! and the two interfaces the commands use, one per direction.
//!
//! Inputs are read in chunks of rows so a file larger than memory streams through; outputs are
//! written as they come, with the row count patched into the header at the end.

mod csv;
mod npy;
pub mod safetensors;

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The file kinds `densebatch run` reads and writes, told by the extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// NumPy `.npy`.
    Npy,
    /// A safetensors file.
    Safetensors,
    /// Comma-separated numbers, one row per line.
    Csv,
}

impl FileKind {
    /// The kind of `path`, from its extension.
    pub fn of(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("npy") => Ok(FileKind::Npy),
            Some("safetensors") => Ok(FileKind::Safetensors),
            Some("csv") => Ok(FileKind::Csv),
            _ => bail!(
                "{}: unknown file kind; use .npy, .safetensors or .csv",
                path.display()
            ),
        }
    }
}

/// A file of rows read front to back, a chunk at a time.
pub trait RowSource {
    /// Values per row.
    fn cols(&self) -> usize;
    /// Total rows when the header says so (CSV does not).
    fn rows_hint(&self) -> Option<u64>;
    /// The file's length, for progress.
    fn total_bytes(&self) -> u64;
    /// Bytes consumed so far, for progress.
    fn bytes_read(&self) -> u64;
    /// Reads up to `buf.len() / cols` rows into `buf` (row-major float32); 0 at the end.
    fn read_rows(&mut self, buf: &mut [f32]) -> Result<usize>;
}

/// Opens `path` as a source of rows. `tensor` picks the tensor of a safetensors file.
pub fn open_source(path: &Path, tensor: Option<&str>) -> Result<Box<dyn RowSource>> {
    let kind = FileKind::of(path)?;
    if kind != FileKind::Safetensors && tensor.is_some() {
        bail!("--tensor only applies to .safetensors inputs");
    }
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("{}", path.display()))?
        .len();
    match kind {
        FileKind::Npy => npy::open(path, file, len),
        FileKind::Safetensors => Ok(Box::new(safetensors::MappedRows::open(
            path, &file, tensor,
        )?)),
        FileKind::Csv => Ok(Box::new(csv::CsvSource::open(path, file, len)?)),
    }
}

/// A file of output rows written front to back.
pub trait RowSink {
    /// Appends rows (row-major float32, `cols` per row).
    fn write_rows(&mut self, values: &[f32]) -> Result<()>;
    /// Completes the file (patches the header with the row count) and syncs it to disk.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Creates the output file at `path` for rows of `cols` floats.
pub fn create_sink(path: &Path, cols: usize) -> Result<Box<dyn RowSink>> {
    let kind = FileKind::of(path)?;
    let file = File::create(path).with_context(|| format!("{}", path.display()))?;
    Ok(match kind {
        FileKind::Npy => Box::new(npy::NpySink::create(path, file, cols)?),
        FileKind::Safetensors => Box::new(safetensors::SafetensorsSink::create(path, file, cols)?),
        FileKind::Csv => Box::new(csv::CsvSink::create(path, file, cols)),
    })
}

/// The check every binary input passes before any row is read: a 1-D array is one row, a 2-D
/// one is [rows, features], anything else is refused. Returns (rows, cols).
fn rows_and_cols(path: &Path, shape: &[u64]) -> Result<(u64, usize)> {
    match *shape {
        [cols] => Ok((1, cols as usize)),
        [rows, cols] => Ok((rows, cols as usize)),
        _ => bail!(
            "{}: the array has shape {shape:?}; expected 2-D [rows, features]",
            path.display()
        ),
    }
}

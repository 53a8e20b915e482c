//! Input and output files of rows: `.npy`, `.safetensors` and `.csv`.
//!
//! Inputs are read in chunks of rows so a file larger than memory streams through; outputs are
//! written as they come, with the row count patched into the header at the end.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use densebatch::{Origin, read_npy_header};
use ndarray::{ArrayD, IxDyn};
use serde_json::Value;

/// The file kinds `infer run` reads and writes, told by the extension.
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

// ---- reading ---------------------------------------------------------------------------------

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
    let reader = BufReader::with_capacity(1 << 20, file);
    Ok(match kind {
        FileKind::Npy => Box::new(open_npy(path, reader, len)?),
        FileKind::Safetensors => Box::new(open_safetensors(path, reader, len, tensor)?),
        FileKind::Csv => Box::new(CsvSource::open(path, reader, len)?),
    })
}

/// A float element type as stored in a file.
#[derive(Debug, Clone, Copy)]
struct FloatElem {
    bytes: usize,
    big_endian: bool,
    bfloat: bool,
}

impl FloatElem {
    fn decode(self, raw: &[u8]) -> f32 {
        let mut b = [0u8; 8];
        b[..self.bytes].copy_from_slice(raw);
        if self.big_endian {
            b[..self.bytes].reverse();
        }
        match (self.bytes, self.bfloat) {
            (2, true) => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            (2, false) => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            (4, _) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => f64::from_le_bytes(b) as f32,
        }
    }
}

/// IEEE 754 half to single precision (exact: every half is a single). Written out because it is
/// a dozen lines and the `half` crate would be a dependency for this alone.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal half: value = frac · 2^-24, a normal single.
            let value = frac as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -value } else { value };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Rows of fixed-size floats at a known place in a file (the body of .npy and .safetensors).
struct RawFloatRows {
    path: PathBuf,
    reader: BufReader<File>,
    elem: FloatElem,
    cols: usize,
    rows: u64,
    rows_left: u64,
    total_bytes: u64,
    bytes_read: u64,
    raw: Vec<u8>,
}

impl RawFloatRows {
    /// Checks that the file holds exactly the bytes the shape needs, before reading any.
    fn new(
        path: &Path,
        reader: BufReader<File>,
        elem: FloatElem,
        shape: &[usize],
        data_offset: u64,
        data_len: u64,
        file_len: u64,
    ) -> Result<Self> {
        let (rows, cols) = match *shape {
            [cols] => (1, cols),
            [rows, cols] => (rows as u64, cols),
            _ => bail!(
                "{}: the array has shape {shape:?}; expected 2-D [rows, features]",
                path.display()
            ),
        };
        let needed = rows
            .checked_mul(cols as u64)
            .and_then(|n| n.checked_mul(elem.bytes as u64));
        ensure!(
            needed == Some(data_len),
            "{}: shape {shape:?} needs {} data bytes but {} are there",
            path.display(),
            needed.map_or("too many".to_string(), |n| n.to_string()),
            data_len
        );
        ensure!(
            data_offset + data_len <= file_len,
            "{}: truncated: the data ends at byte {} but the file has {file_len}",
            path.display(),
            data_offset + data_len
        );
        Ok(RawFloatRows {
            path: path.to_path_buf(),
            reader,
            elem,
            cols,
            rows,
            rows_left: rows,
            total_bytes: file_len,
            bytes_read: data_offset,
            raw: Vec::new(),
        })
    }
}

impl RowSource for RawFloatRows {
    fn cols(&self) -> usize {
        self.cols
    }

    fn rows_hint(&self) -> Option<u64> {
        Some(self.rows)
    }

    fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn read_rows(&mut self, buf: &mut [f32]) -> Result<usize> {
        if self.cols == 0 {
            return Ok(0);
        }
        let rows = ((buf.len() / self.cols) as u64).min(self.rows_left) as usize;
        let values = rows * self.cols;
        self.raw.resize(values * self.elem.bytes, 0);
        self.reader.read_exact(&mut self.raw).with_context(|| {
            format!("{}: cannot read the data (truncated?)", self.path.display())
        })?;
        for (dst, src) in buf[..values]
            .iter_mut()
            .zip(self.raw.chunks_exact(self.elem.bytes))
        {
            *dst = self.elem.decode(src);
        }
        self.rows_left -= rows as u64;
        self.bytes_read += self.raw.len() as u64;
        Ok(rows)
    }
}

fn open_npy(path: &Path, mut reader: BufReader<File>, len: u64) -> Result<RawFloatRows> {
    let header = read_npy_header(&mut reader, &Origin::file(path))?;
    ensure!(
        !header.fortran_order,
        "{}: Fortran-order arrays are not supported; save the array in C order",
        path.display()
    );
    let descr = header.descr.as_str();
    let (order, kind_size) = descr.split_at(1.min(descr.len()));
    let big_endian = match order {
        "<" | "|" | "=" => false,
        ">" => true,
        _ => bail!("{}: unknown dtype `{descr}`", path.display()),
    };
    let bytes = match kind_size {
        "f2" => 2,
        "f4" => 4,
        "f8" => 8,
        _ => bail!(
            "{}: dtype `{descr}` is not a floating-point type; convert the input to float32",
            path.display()
        ),
    };
    let elem = FloatElem {
        bytes,
        big_endian,
        bfloat: false,
    };
    let data_len = len.saturating_sub(header.data_offset);
    RawFloatRows::new(
        path,
        reader,
        elem,
        &header.shape,
        header.data_offset,
        data_len,
        len,
    )
}

/// One tensor's entry in a safetensors header.
struct SafetensorsEntry {
    dtype: String,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

/// Reads a safetensors header: tensor name → entry, plus the data section's offset. Parsed here
/// rather than by the `safetensors` crate, whose API wants the whole file in memory.
fn safetensors_header(
    path: &Path,
    reader: &mut impl Read,
    file_len: u64,
) -> Result<(Vec<(String, SafetensorsEntry)>, u64)> {
    let bad =
        |msg: &str| anyhow::anyhow!("{}: not a valid safetensors file: {msg}", path.display());
    let mut len = [0u8; 8];
    reader
        .read_exact(&mut len)
        .map_err(|_| bad("shorter than its header length"))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 100 << 20 || 8 + header_len > file_len {
        return Err(bad("header length beyond the file or over 100 MiB"));
    }
    let mut text = vec![0u8; header_len as usize];
    reader
        .read_exact(&mut text)
        .map_err(|_| bad("truncated header"))?;
    let json: Value = serde_json::from_slice(&text).map_err(|e| bad(&e.to_string()))?;
    let object = json
        .as_object()
        .ok_or_else(|| bad("header is not a JSON object"))?;
    let mut entries = Vec::new();
    for (name, info) in object {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info["dtype"]
            .as_str()
            .ok_or_else(|| bad(&format!("tensor `{name}` has no dtype")))?;
        let shape = info["shape"]
            .as_array()
            .and_then(|dims| {
                dims.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect()
            })
            .ok_or_else(|| bad(&format!("tensor `{name}` has no valid shape")))?;
        let offsets: Option<Vec<u64>> = info["data_offsets"]
            .as_array()
            .and_then(|o| o.iter().map(Value::as_u64).collect());
        let [begin, end] = offsets.as_deref().unwrap_or_default() else {
            return Err(bad(&format!("tensor `{name}` has no valid data_offsets")));
        };
        if begin > end {
            return Err(bad(&format!("tensor `{name}` has inverted data_offsets")));
        }
        entries.push((
            name.clone(),
            SafetensorsEntry {
                dtype: dtype.to_string(),
                shape,
                begin: *begin,
                end: *end,
            },
        ));
    }
    Ok((entries, 8 + header_len))
}

fn pick_tensor<'a>(
    path: &Path,
    entries: &'a [(String, SafetensorsEntry)],
    wanted: Option<&str>,
) -> Result<&'a (String, SafetensorsEntry)> {
    let names = || {
        entries
            .iter()
            .map(|(n, _)| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match wanted {
        Some(name) => entries.iter().find(|(n, _)| n == name),
        None if entries.len() == 1 => entries.first(),
        None => entries.iter().find(|(n, _)| n == "x"),
    };
    found.ok_or_else(|| match wanted {
        Some(name) => anyhow::anyhow!(
            "{}: no tensor `{name}` (it holds {})",
            path.display(),
            names()
        ),
        None => anyhow::anyhow!(
            "{}: holds several tensors ({}); choose one with --tensor",
            path.display(),
            names()
        ),
    })
}

fn safetensors_elem(path: &Path, name: &str, dtype: &str) -> Result<FloatElem> {
    let (bytes, bfloat) = match dtype {
        "F16" => (2, false),
        "BF16" => (2, true),
        "F32" => (4, false),
        "F64" => (8, false),
        _ => bail!(
            "{}: tensor `{name}` has dtype {dtype}, not a floating-point type; convert it to F32",
            path.display()
        ),
    };
    Ok(FloatElem {
        bytes,
        big_endian: false,
        bfloat,
    })
}

fn open_safetensors(
    path: &Path,
    mut reader: BufReader<File>,
    len: u64,
    tensor: Option<&str>,
) -> Result<RawFloatRows> {
    let (entries, data_start) = safetensors_header(path, &mut reader, len)?;
    let (name, entry) = pick_tensor(path, &entries, tensor)?;
    let elem = safetensors_elem(path, name, &entry.dtype)?;
    let offset = data_start + entry.begin;
    reader
        .seek(SeekFrom::Start(offset))
        .with_context(|| format!("{}", path.display()))?;
    RawFloatRows::new(
        path,
        reader,
        elem,
        &entry.shape,
        offset,
        entry.end - entry.begin,
        len,
    )
    .with_context(|| format!("tensor `{name}`"))
}

/// Reads a whole (small) tensor of a safetensors file as f32; integer tensors (labels) too.
pub fn safetensors_tensor(path: &Path, name: &str) -> Result<ArrayD<f32>> {
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("{}", path.display()))?
        .len();
    let mut reader = BufReader::new(file);
    let (entries, data_start) = safetensors_header(path, &mut reader, len)?;
    let (_, entry) = pick_tensor(path, &entries, Some(name))?;
    ensure!(
        data_start + entry.end <= len,
        "{}: tensor `{name}` lies beyond the end of the file",
        path.display()
    );
    reader
        .seek(SeekFrom::Start(data_start + entry.begin))
        .with_context(|| format!("{}", path.display()))?;
    let mut raw = vec![0u8; (entry.end - entry.begin) as usize];
    reader
        .read_exact(&mut raw)
        .with_context(|| format!("{}", path.display()))?;
    let values: Vec<f32> = match entry.dtype.as_str() {
        "I32" => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        "I64" => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        dtype => {
            let elem = safetensors_elem(path, name, dtype)?;
            raw.chunks_exact(elem.bytes)
                .map(|c| elem.decode(c))
                .collect()
        }
    };
    ArrayD::from_shape_vec(IxDyn(&entry.shape), values).with_context(|| {
        format!(
            "{}: tensor `{name}`'s data does not match its shape {:?}",
            path.display(),
            entry.shape
        )
    })
}

/// CSV rows: numbers separated by commas, an optional header line (told by not being numbers).
struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<CountingReader<BufReader<File>>>,
    record: csv::StringRecord,
    pending: Option<Vec<f32>>,
    cols: usize,
    total_bytes: u64,
}

impl CsvSource {
    fn open(path: &Path, reader: BufReader<File>, len: u64) -> Result<Self> {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(CountingReader {
                inner: reader,
                count: 0,
            });
        let mut source = CsvSource {
            path: path.to_path_buf(),
            reader,
            record: csv::StringRecord::new(),
            pending: None,
            cols: 0,
            total_bytes: len,
        };
        // The first record fixes the width; it is a header when it is not all numbers.
        if !source.next_record()? {
            bail!("{}: the file holds no rows", path.display());
        }
        let first = source.parse_record();
        let first = match first {
            Ok(values) => values,
            Err(_) => {
                if !source.next_record()? {
                    bail!("{}: the file holds a header but no rows", path.display());
                }
                source.parse_record()?
            }
        };
        source.cols = first.len();
        source.pending = Some(first);
        Ok(source)
    }

    fn next_record(&mut self) -> Result<bool> {
        loop {
            let more = self
                .reader
                .read_record(&mut self.record)
                .with_context(|| format!("{}", self.path.display()))?;
            // Blank lines are skipped.
            let blank = more && self.record.len() == 1 && self.record[0].is_empty();
            if !blank {
                return Ok(more);
            }
        }
    }

    fn line(&self) -> u64 {
        self.record.position().map_or(0, |p| p.line())
    }

    fn parse_record(&self) -> Result<Vec<f32>> {
        self.record
            .iter()
            .enumerate()
            .map(|(col, text)| {
                text.parse::<f32>().map_err(|_| {
                    anyhow::anyhow!(
                        "{}: line {}, column {}: `{text}` is not a number",
                        self.path.display(),
                        self.line(),
                        col + 1
                    )
                })
            })
            .collect()
    }
}

impl RowSource for CsvSource {
    fn cols(&self) -> usize {
        self.cols
    }

    fn rows_hint(&self) -> Option<u64> {
        None
    }

    fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    fn bytes_read(&self) -> u64 {
        self.reader.get_ref().count
    }

    fn read_rows(&mut self, buf: &mut [f32]) -> Result<usize> {
        let capacity = buf.len() / self.cols;
        let mut rows = 0;
        if let Some(first) = self.pending.take() {
            buf[..self.cols].copy_from_slice(&first);
            rows = 1;
        }
        while rows < capacity && self.next_record()? {
            ensure!(
                self.record.len() == self.cols,
                "{}: line {} has {} columns, expected {} (as the first row)",
                self.path.display(),
                self.line(),
                self.record.len(),
                self.cols
            );
            for (col, text) in self.record.iter().enumerate() {
                buf[rows * self.cols + col] = text.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "{}: line {}, column {}: `{text}` is not a number",
                        self.path.display(),
                        self.line(),
                        col + 1
                    )
                })?;
            }
            rows += 1;
        }
        Ok(rows)
    }
}

/// Counts bytes passing through, for the progress bar.
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for CountingReader<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.count += amount as u64;
        self.inner.consume(amount);
    }
}

// ---- writing ---------------------------------------------------------------------------------

/// A file of output rows written front to back.
pub trait RowSink {
    /// Appends rows (row-major float32, `cols` per row).
    fn write_rows(&mut self, values: &[f32]) -> Result<()>;
    /// Completes the file (patches the header with the row count).
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Creates the output file at `path` for rows of `cols` floats.
pub fn create_sink(path: &Path, cols: usize) -> Result<Box<dyn RowSink>> {
    let kind = FileKind::of(path)?;
    let file = File::create(path).with_context(|| format!("{}", path.display()))?;
    let writer = BufWriter::with_capacity(1 << 20, file);
    let mut sink = HeaderedSink {
        path: path.to_path_buf(),
        writer,
        kind,
        cols,
        rows: 0,
        text: String::new(),
    };
    // Binary kinds reserve a fixed-size header, rewritten with the row count at the end.
    if kind != FileKind::Csv {
        let placeholder = sink.header(0)?;
        sink.writer
            .write_all(&placeholder)
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(Box::new(sink))
}

/// Bytes reserved for an output header: enough for any shape of two 20-digit numbers.
const NPY_HEADER_BYTES: usize = 128;
const SAFETENSORS_HEADER_BYTES: usize = 256;

struct HeaderedSink {
    path: PathBuf,
    writer: BufWriter<File>,
    kind: FileKind,
    cols: usize,
    rows: u64,
    text: String,
}

impl HeaderedSink {
    fn header(&self, rows: u64) -> Result<Vec<u8>> {
        let cols = self.cols;
        Ok(match self.kind {
            FileKind::Npy => {
                let dict = format!(
                    "{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}"
                );
                let mut out = b"\x93NUMPY\x01\x00".to_vec();
                let dict_len = NPY_HEADER_BYTES - 10;
                out.extend_from_slice(&(dict_len as u16).to_le_bytes());
                out.extend_from_slice(format!("{dict:<width$}\n", width = dict_len - 1).as_bytes());
                out
            }
            FileKind::Safetensors => {
                let bytes = rows * cols as u64 * 4;
                let json = format!(
                    "{{\"y\":{{\"dtype\":\"F32\",\"shape\":[{rows},{cols}],\"data_offsets\":[0,{bytes}]}}}}"
                );
                let mut out = (SAFETENSORS_HEADER_BYTES as u64).to_le_bytes().to_vec();
                // The format allows trailing spaces in the header.
                out.extend_from_slice(
                    format!("{json:<width$}", width = SAFETENSORS_HEADER_BYTES).as_bytes(),
                );
                out
            }
            FileKind::Csv => Vec::new(),
        })
    }
}

impl RowSink for HeaderedSink {
    fn write_rows(&mut self, values: &[f32]) -> Result<()> {
        let io = |e| anyhow::Error::new(e).context(format!("{}", self.path.display()));
        match self.kind {
            FileKind::Csv => {
                use std::fmt::Write as _;
                for row in values.chunks_exact(self.cols) {
                    self.text.clear();
                    for (i, v) in row.iter().enumerate() {
                        // `{}` prints the shortest text that parses back to the same bits.
                        let sep = if i == 0 { "" } else { "," };
                        write!(self.text, "{sep}{v}").expect("writing to a String");
                    }
                    self.text.push('\n');
                    self.writer.write_all(self.text.as_bytes()).map_err(io)?;
                }
            }
            _ => {
                for v in values {
                    self.writer.write_all(&v.to_le_bytes()).map_err(io)?;
                }
            }
        }
        self.rows += (values.len() / self.cols) as u64;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let header = self.header(self.rows)?;
        let path = self.path.clone();
        let io = |e| anyhow::Error::new(e).context(format!("{}", path.display()));
        self.writer.flush().map_err(io)?;
        let mut file = self.writer.into_inner().map_err(|e| io(e.into_error()))?;
        if !header.is_empty() {
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(&header).map_err(io)?;
        }
        file.sync_all().map_err(io)
    }
}

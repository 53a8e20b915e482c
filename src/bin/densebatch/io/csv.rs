//! `.csv` files of rows: numbers separated by commas, read with an optional header line and
//! written with the shortest text that parses back to the same bits.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::{RowSink, RowSource};

/// CSV rows: numbers separated by commas, an optional header line (told by not being numbers).
pub struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<CountingReader<BufReader<File>>>,
    record: csv::StringRecord,
    pending: Option<Vec<f32>>,
    cols: usize,
    total_bytes: u64,
}

impl CsvSource {
    pub fn open(path: &Path, file: File, len: u64) -> Result<Self> {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(CountingReader {
                inner: BufReader::with_capacity(1 << 20, file),
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
        let first = match source.parse_record() {
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

    fn not_a_number(&self, col: usize, text: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: line {}, column {}: `{text}` is not a number",
            self.path.display(),
            self.line(),
            col + 1
        )
    }

    fn parse_record(&self) -> Result<Vec<f32>> {
        self.record
            .iter()
            .enumerate()
            .map(|(col, text)| {
                text.parse::<f32>()
                    .map_err(|_| self.not_a_number(col, text))
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
                buf[rows * self.cols + col] =
                    text.parse().map_err(|_| self.not_a_number(col, text))?;
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

/// Output rows as CSV lines, no header.
pub struct CsvSink {
    path: PathBuf,
    writer: BufWriter<File>,
    cols: usize,
    line: String,
}

impl CsvSink {
    pub fn create(path: &Path, file: File, cols: usize) -> Self {
        CsvSink {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, file),
            cols,
            line: String::new(),
        }
    }
}

impl RowSink for CsvSink {
    fn write_rows(&mut self, values: &[f32]) -> Result<()> {
        for row in values.chunks_exact(self.cols) {
            self.line.clear();
            for (i, v) in row.iter().enumerate() {
                // `{}` prints the shortest text that parses back to the same bits.
                let sep = if i == 0 { "" } else { "," };
                write!(self.line, "{sep}{v}").expect("writing to a String");
            }
            self.line.push('\n');
            self.writer
                .write_all(self.line.as_bytes())
                .with_context(|| format!("{}", self.path.display()))?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let path = self.path.display().to_string();
        let file = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .context(path.clone())?;
        file.sync_all().context(path)
    }
}

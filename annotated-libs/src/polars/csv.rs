//! Single-column CSV files read in row batches, as part of a plan.
//!
//! Reading a column is two steps, so that parsing can run batch by batch
//! inside Bach's plan, pipelined with the computation:
//!
//! 1. [`CsvColumn::open`] maps the file and builds a *block index*: for every
//!    [`BLOCK`] bytes, how many lines end before it. One vectorised pass
//!    counts newlines (in parallel over blocks) and parses nothing. It gives
//!    the row count, which the runtime needs at plan time (element counts are
//!    static), and lets any row be found by scanning at most one block.
//! 2. [`read_column`](fn@super::read_column) parses the rows of a [`CsvColumn`]
//!    into a `Float64Chunked`. Under Bach, [`CsvSplit`] cuts the column into
//!    row ranges at line boundaries, so each batch parses only its own lines
//!    and the parsed column is never built whole unless it is a result.
//!
//! Each line holds one number, parsed with `fast_float2::parse`, the parser
//! polars' CSV reader uses for `Float64` columns (so `NaN`, `inf`, `-inf`,
//! `infinity` and exponents read as polars reads them). A `\r` before the
//! `\n` is dropped; the last line may lack its `\n`. There is no quoting and
//! no null: an empty or non-numeric line is an error naming the file and line.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars_core::prelude::Float64Chunked;
use rayon::prelude::*;

use bach_runtime::{Error as BachError, SplitKind, SplitType};

/// Bytes per block of the line index: one `usize` per 4 KiB of text (0.2% of
/// it), and at most 4 KiB scanned to find a row, so that cutting a batch
/// costs little beside parsing it.
pub const BLOCK: usize = 1 << 12;

/// Bytes per parallel task of the indexing pass (many blocks each).
const INDEX_TASK: usize = 1 << 20;

/// Whether a CSV file starts with a header line (the column's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CsvOptions {
    /// The first line names the column and is not a row.
    pub has_header: bool,
}

/// Why a CSV column could not be read. Every variant names the file.
#[derive(Debug)]
pub enum CsvError {
    /// The file could not be opened or mapped.
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file holds no bytes at all (not even a header).
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line that is not one number.
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line's number, from 1, counting the header.
        line: usize,
        /// The line's text (at most 64 bytes of it).
        text: String,
    },
    /// Columns that are read together have different row counts.
    LengthMismatch {
        /// The shorter file.
        path: PathBuf,
        /// Its rows.
        rows: usize,
        /// The file it was compared with.
        other: PathBuf,
        /// That file's rows.
        other_rows: usize,
        /// The first line of `other` with no counterpart in `path` (from 1,
        /// counting the header).
        line: usize,
    },
}

impl std::fmt::Display for CsvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CsvError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            CsvError::Empty { path } => write!(f, "{}: empty file", path.display()),
            CsvError::Malformed { path, line, text } => {
                write!(f, "{}:{line}: not a number: {text:?}", path.display())
            }
            CsvError::LengthMismatch {
                path,
                rows,
                other,
                other_rows,
                line,
            } => write!(
                f,
                "{}: {rows} rows, but {} has {other_rows}: its line {line} has no counterpart",
                path.display(),
                other.display()
            ),
        }
    }
}

impl std::error::Error for CsvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CsvError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The bytes of an opened file: mapped, or (for an empty file, which cannot
/// be mapped) none.
enum Bytes {
    Mapped(memmap2::Mmap),
    Empty,
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Empty => &[],
        }
    }
}

/// An opened, indexed file, shared by every batch of a [`CsvColumn`].
struct IndexedFile {
    path: PathBuf,
    name: String,
    bytes: Bytes,
    /// Where the rows start (after the header line, if any).
    data_start: usize,
    /// Where the rows end (the file's end).
    data_end: usize,
    /// `ends_before[k]`: lines ended (newlines seen) in
    /// `data_start..data_start + k * BLOCK`; one entry per block, plus the total.
    ends_before: Vec<usize>,
    rows: usize,
    /// The line number (from 1) of row 0.
    first_line: usize,
}

impl IndexedFile {
    fn data(&self) -> &[u8] {
        &self.bytes.get()[self.data_start..self.data_end]
    }

    /// The byte offset (in `data()`) where row `row` starts; `row == rows`
    /// gives the end of the data.
    fn row_start(&self, row: usize) -> usize {
        if row == 0 {
            return 0;
        }
        if row >= self.rows {
            return self.data_end - self.data_start;
        }
        // Row `row` starts after the `row`-th newline: find the block holding it.
        let block = self.ends_before.partition_point(|&n| n < row) - 1;
        let start = block * BLOCK;
        let data = self.data();
        let end = (start + BLOCK).min(data.len());
        let nth = row - self.ends_before[block];
        let at = memchr::memchr_iter(b'\n', &data[start..end])
            .nth(nth - 1)
            .expect("the block index counts this newline");
        start + at + 1
    }
}

/// A single-column CSV file (or a row range of one), indexed by lines: what
/// [`read_column`](fn@super::read_column) parses. Cloning and splitting share
/// the mapped file.
#[derive(Clone)]
pub struct CsvColumn {
    file: Arc<IndexedFile>,
    /// The rows of this view.
    rows: Range<usize>,
}

impl std::fmt::Debug for CsvColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvColumn")
            .field("path", &self.file.path)
            .field("rows", &self.rows)
            .finish()
    }
}

impl CsvColumn {
    /// Maps `path` and indexes its lines (no parsing).
    ///
    /// The file must not change while the column is in use (it is mapped).
    pub fn open(path: impl AsRef<Path>, options: CsvOptions) -> Result<CsvColumn, CsvError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| CsvError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let bytes = if len == 0 {
            Bytes::Empty
        } else {
            // SAFETY: the map is read only; the file must not be truncated or
            // written while it is mapped (documented above).
            // Populated: the kernel reads the pages in at once, rather than
            // one fault per page as the index pass touches them.
            Bytes::Mapped(unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(io)?)
        };
        let all = bytes.get();
        if all.is_empty() {
            return Err(CsvError::Empty { path });
        }
        let (data_start, name, first_line) = if options.has_header {
            let end = memchr::memchr(b'\n', all).unwrap_or(all.len());
            let header = all[..end].strip_suffix(b"\r").unwrap_or(&all[..end]);
            let start = (end + 1).min(all.len());
            (start, String::from_utf8_lossy(header).into_owned(), 2)
        } else {
            let stem = path.file_stem().unwrap_or_default();
            (0, stem.to_string_lossy().into_owned(), 1)
        };
        let data = &all[data_start..];
        let counts: Vec<usize> = data
            .par_chunks(INDEX_TASK)
            .flat_map_iter(|task| {
                task.chunks(BLOCK)
                    .map(|block| block.iter().filter(|&&b| b == b'\n').count())
            })
            .collect();
        let mut ends_before = Vec::with_capacity(counts.len() + 1);
        let mut total = 0;
        ends_before.push(0);
        for c in counts {
            total += c;
            ends_before.push(total);
        }
        // A last line without its newline is a row too.
        let rows = total + usize::from(data.last().is_some_and(|&b| b != b'\n'));
        let data_end = all.len();
        let file = IndexedFile {
            path,
            name,
            bytes,
            data_start,
            data_end,
            ends_before,
            rows,
            first_line,
        };
        Ok(CsvColumn {
            rows: 0..file.rows,
            file: Arc::new(file),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// The column's name: the header, or the file's stem without one.
    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// Rows in this column (or this row range of it).
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows `range` of this column (relative to it), sharing the file.
    pub fn slice(&self, range: Range<usize>) -> CsvColumn {
        assert!(
            range.start <= range.end && range.end <= self.rows.len(),
            "row range {range:?} outside 0..{}",
            self.rows.len()
        );
        CsvColumn {
            file: self.file.clone(),
            rows: self.rows.start + range.start..self.rows.start + range.end,
        }
    }

    /// Checks that `columns` all have the same number of rows (columns of one
    /// table read together).
    pub fn same_rows(columns: &[&CsvColumn]) -> Result<(), CsvError> {
        let Some(first) = columns.first() else {
            return Ok(());
        };
        for c in &columns[1..] {
            if c.rows() != first.rows() {
                let (short, long) = match c.rows() < first.rows() {
                    true => (c, first),
                    false => (first, c),
                };
                return Err(CsvError::LengthMismatch {
                    path: short.path().to_path_buf(),
                    rows: short.rows(),
                    other: long.path().to_path_buf(),
                    other_rows: long.rows(),
                    line: long.file.first_line + long.rows.start + short.rows(),
                });
            }
        }
        Ok(())
    }

    /// Parses the rows into a `Float64Chunked` named like the column.
    pub fn parse(&self) -> Result<Float64Chunked, CsvError> {
        let file = &*self.file;
        let data = file.data();
        let start = file.row_start(self.rows.start);
        let end = file.row_start(self.rows.end);
        let bytes = &data[start..end];
        let mut values = Vec::with_capacity(self.rows.len());
        // One scan for the range's newlines; the last line may lack one.
        let mut ends = memchr::memchr_iter(b'\n', bytes);
        let mut pos = 0;
        for row in self.rows.clone() {
            let line_end = ends.next().unwrap_or(bytes.len());
            let line = &bytes[pos..line_end];
            let field = line.strip_suffix(b"\r").unwrap_or(line);
            match fast_float2::parse::<f64, _>(field) {
                Ok(x) => values.push(x),
                Err(_) => {
                    let shown = &field[..field.len().min(64)];
                    return Err(CsvError::Malformed {
                        path: file.path.clone(),
                        line: file.first_line + row,
                        text: String::from_utf8_lossy(shown).into_owned(),
                    });
                }
            }
            pos = line_end + 1;
        }
        Ok(Float64Chunked::from_vec(file.name.as_str().into(), values))
    }
}

/// Splits a [`CsvColumn`] into row ranges (at line boundaries, found with the
/// block index); pieces are never merged (a column is an input, not a result).
#[derive(Debug, Clone, Copy, Default)]
pub struct CsvSplit;

impl SplitType<CsvColumn> for CsvSplit {
    const KIND: SplitKind = SplitKind::Partition;
    fn elements(value: &CsvColumn) -> Option<usize> {
        Some(value.rows())
    }
    fn split(value: &CsvColumn, range: Range<usize>) -> CsvColumn {
        value.slice(range)
    }
    fn merge(pieces: Vec<CsvColumn>) -> bach_runtime::Result<CsvColumn> {
        // Consecutive row ranges of one file merge into their union.
        let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
            return Err(BachError::Internal(
                "at least one piece of a CSV column".into(),
            ));
        };
        let contiguous = pieces
            .windows(2)
            .all(|w| Arc::ptr_eq(&w[0].file, &w[1].file) && w[0].rows.end == w[1].rows.start);
        match contiguous {
            true => Ok(CsvColumn {
                file: first.file.clone(),
                rows: first.rows.start..last.rows.end,
            }),
            false => Err(BachError::Internal(
                "consecutive row ranges of one CSV column".into(),
            )),
        }
    }
}

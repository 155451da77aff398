//! The crime index's input files: three single-column CSV files, generated
//! from a seed outside the timed region and cached on disk by size, seed and
//! kind, so a sweep writes each size once.
//!
//! Values are uniform in the ranges of the anchors' generator
//! (`shared/anchors/ml_workloads.py`): total population in [1e5, 1e6), adult
//! population in [5e4, 5e5), robberies in [0, 2e3), written with six decimals
//! (NumPy's `savetxt(fmt="%.6f")`), one per line, no header. Random values
//! cross both thresholds of the formula in every batch, so an indexing bug
//! changes the result; `BACH_CRIME_DATA=constant` writes the seed's
//! constant-valued files instead.

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::inputs::uniform;

/// The three columns: file stem, and the range of its values.
pub const COLUMNS: [(&str, f64, f64); 3] = [
    ("total_population", 1e5, 1e6),
    ("adult_population", 5e4, 5e5),
    ("num_robberies", 0.0, 2e3),
];

/// The values of the constant-valued files (one per column): a total
/// population above the 500000 threshold, so every row takes both masks.
const CONSTANT: [f64; 3] = [600000.0, 50000.0, 10.0];

/// Random values (the default) or the seed's constant ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Uniform in each column's range.
    Random,
    /// One value per column (`BACH_CRIME_DATA=constant`).
    Constant,
}

impl Kind {
    /// From `BACH_CRIME_DATA` (`random`, the default, or `constant`).
    pub fn from_env() -> Result<Kind, String> {
        match std::env::var("BACH_CRIME_DATA").as_deref() {
            Err(_) | Ok("") | Ok("random") => Ok(Kind::Random),
            Ok("constant") => Ok(Kind::Constant),
            Ok(other) => Err(format!(
                "BACH_CRIME_DATA={other}: expected `random` or `constant`"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Random => "random",
            Kind::Constant => "constant",
        }
    }
}

/// Where the files for `(log2, seed, kind)` live: `$BACH_DATA_DIR`, else the
/// system's temporary directory's `bach-data`, then
/// `crime_index/<log2>-seed<seed>-<kind>/`. The anchor script computes the
/// same path.
pub fn dir(log2: u32, seed: u64, kind: Kind) -> PathBuf {
    let root = std::env::var_os("BACH_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("bach-data"));
    root.join("crime_index")
        .join(format!("{log2}-seed{seed}-{}", kind.name()))
}

/// Rows per formatting task.
const CHUNK: usize = 1 << 16;

/// Writes (or finds) the three files for `n = 2^log2` rows; their paths.
pub fn files(log2: u32, seed: u64, kind: Kind) -> std::io::Result<[PathBuf; 3]> {
    files_in(&dir(log2, seed, kind), log2, seed, kind)
}

/// [`files`] in the directory `dir`.
pub fn files_in(dir: &Path, log2: u32, seed: u64, kind: Kind) -> std::io::Result<[PathBuf; 3]> {
    std::fs::create_dir_all(dir)?;
    let n = 1usize << log2;
    let mut paths = Vec::with_capacity(3);
    for (stream, &(stem, low, high)) in COLUMNS.iter().enumerate() {
        let path = dir.join(format!("{stem}.csv"));
        if !path.exists() {
            let values = match kind {
                Kind::Random => uniform(n, low, high, seed, stream as u64).to_vec(),
                Kind::Constant => vec![CONSTANT[stream]; n],
            };
            write_column(&path, &values)?;
        }
        paths.push(path);
    }
    Ok(paths.try_into().expect("three columns"))
}

/// Writes `values` one per line with six decimals, atomically (a temporary
/// file renamed into place), so an interrupted run leaves no partial file.
fn write_column(path: &Path, values: &[f64]) -> std::io::Result<()> {
    let chunks: Vec<Vec<u8>> = values
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut text = Vec::with_capacity(chunk.len() * 16);
            for x in chunk {
                writeln!(text, "{x:.6}").expect("writing to memory");
            }
            text
        })
        .collect();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for chunk in &chunks {
            file.write_all(chunk)?;
        }
        file.flush()?;
    }
    std::fs::rename(&tmp, path)
}

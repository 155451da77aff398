//! The on-disk cache Bach keeps between processes, under one root directory:
//! compiled kernels (`<root>/kernels`, by the NVRTC layer) and measured costs
//! (`<root>/costs`: the CUDA device's calibration and the CPU cost table).
//!
//! The root is `$BACH_CACHE_DIR`, else `$XDG_CACHE_HOME/bach`, else
//! `$HOME/.cache/bach` (empty variables count as unset). Entries are written
//! atomically ([`write_atomically`]), so concurrent processes never read a
//! partial one. `BACH_COST_CACHE=off` ([`COST_CACHE_ENV`]) makes a process
//! measure its costs instead of reading them from the cache.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that turns reading the cost cache off (`off`).
pub(crate) const COST_CACHE_ENV: &str = "BACH_COST_CACHE";

/// The cache's root directory (see the module docs); `None` when none of its
/// variables is set.
pub(crate) fn root_dir() -> Option<PathBuf> {
    root_from(|name| std::env::var_os(name))
}

/// Where compiled kernels are cached: `<root>/kernels`.
pub(crate) fn kernels_dir() -> Option<PathBuf> {
    root_dir().map(|root| root.join("kernels"))
}

/// Where measured costs are cached: `<root>/costs`.
pub(crate) fn costs_dir() -> Option<PathBuf> {
    root_dir().map(|root| root.join("costs"))
}

/// [`root_dir`] with the environment read through `env`.
fn root_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("BACH_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("bach")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("bach")))
}

/// Whether the cost cache may be read, given the value of [`COST_CACHE_ENV`]:
/// not when it is `off` (or `0`, `false`, `no`; any case).
pub(crate) fn cost_cache_readable(setting: Option<&str>) -> bool {
    !setting.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "off" | "0" | "false" | "no"
        )
    })
}

/// `name` as a portable file-name part: ASCII letters, digits, `-`, `_` and
/// `.` are kept, runs of anything else become one `_`; no leading or trailing
/// `_` or `.`; at most 64 bytes; `device` when nothing is left.
pub(crate) fn sanitize_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let mut out = out.trim_matches(['_', '.']).to_string();
    out.truncate(64);
    let out = out.trim_end_matches(['_', '.']);
    if out.is_empty() {
        "device".to_string()
    } else {
        out.to_string()
    }
}

/// Writes `contents` to `path` atomically: into a temporary file in the same
/// directory (created if needed), synced, then renamed over `path`. The
/// temporary file is removed when any step fails.
pub(crate) fn write_atomically<C>(path: &Path, contents: &C) -> io::Result<()>
where
    C: AsRef<[u8]> + ?Sized,
{
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp = dir.join(format!(
        ".{file_name}.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(contents.as_ref())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_directory_follows_the_environment() {
        let root = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            root_from(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into()))
        };
        let all = [
            ("BACH_CACHE_DIR", "/b"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(root(&all), Some(PathBuf::from("/b")));
        assert_eq!(root(&all[1..]), Some(PathBuf::from("/x/bach")));
        assert_eq!(root(&all[2..]), Some(PathBuf::from("/h/.cache/bach")));
        assert_eq!(
            root(&[("BACH_CACHE_DIR", ""), ("HOME", "/h")]),
            Some(PathBuf::from("/h/.cache/bach"))
        );
        assert_eq!(root(&[]), None);
    }

    #[test]
    fn names_are_sanitized_for_file_names() {
        assert_eq!(
            sanitize_file_name("NVIDIA H100 80GB HBM3"),
            "NVIDIA_H100_80GB_HBM3"
        );
        assert_eq!(
            sanitize_file_name("Tesla V100-SXM2-16GB"),
            "Tesla_V100-SXM2-16GB"
        );
        assert_eq!(
            sanitize_file_name("  NVIDIA  GeForce RTX 4090 "),
            "NVIDIA_GeForce_RTX_4090"
        );
        assert_eq!(sanitize_file_name("../../etc/passwd"), "etc_passwd");
        assert_eq!(
            sanitize_file_name("a/b\\c:d*e?f\"g<h>i|j\0k"),
            "a_b_c_d_e_f_g_h_i_j_k"
        );
        assert_eq!(sanitize_file_name("Gerät ü"), "Ger_t");
        assert_eq!(sanitize_file_name(""), "device");
        assert_eq!(sanitize_file_name(" / . "), "device");
        let long = sanitize_file_name(&"x".repeat(500));
        assert_eq!(long.len(), 64);
    }

    #[test]
    fn files_are_written_atomically() {
        let dir = std::env::temp_dir().join(format!("bach-disk-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("costs").join("entry.txt");
        write_atomically(&path, "one").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one");
        write_atomically(&path, b"two".as_slice()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let entries: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file left: {entries:?}");
        // A directory in the way: an error, not a panic, and nothing left behind.
        let blocked = dir.join("blocked");
        fs::create_dir_all(blocked.join("sub")).unwrap();
        assert!(write_atomically(&blocked, "x").is_err());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn bach_cost_cache_off_disables_reading_the_cache() {
        assert!(cost_cache_readable(None));
        assert!(cost_cache_readable(Some("")));
        assert!(cost_cache_readable(Some("on")));
        for off in ["off", "OFF", " Off ", "0", "false", "no"] {
            assert!(!cost_cache_readable(Some(off)), "{off:?}");
        }
    }
}

//! NVRTC compilation of CUDA kernel sources (e.g. `annotated-libs/kernels/numpy.cu`), with
//! an on-disk cache of the compiled code.
//!
//! [`compile`] is the entry point: for a device of compute capability `X.Y` it produces a
//! CUBIN for `sm_XY` when NVRTC supports that architecture, and otherwise PTX for the
//! newest architecture NVRTC supports below it (the driver JIT-compiles PTX for newer
//! devices). Compiled code is cached in the kernel directory of [`crate::disk_cache`], keyed
//! by the source's hash, the target architecture and NVRTC's version, and written atomically
//! (temporary file + rename), so concurrent processes never read a partial entry.
//! [`compile_for_target`] compiles for an exact [`Target`] without any cache.
//!
//! Every function checks that NVRTC can be loaded first ([`ensure_nvrtc`]) and returns why
//! not ([`GpuUnavailable`](super::discovery::GpuUnavailable): missing, or too old) instead of
//! panicking when it cannot. NVRTC needs no GPU.

use std::ffi::{c_char, CStr, CString};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

use super::discovery::{ensure_nvrtc, ComputeCapability, NvrtcVersion};
use super::error::CudaError;
use crate::device::KernelSource;
use crate::disk_cache::{self, sanitize_file_name, write_atomically};

/// Options passed to NVRTC for every compilation, besides `-arch`.
///
/// `--fmad=false` forbids contracting `a * b + c` into a fused multiply-add, so that
/// kernels round exactly like the CPU implementations they mirror.
pub const DEFAULT_OPTIONS: &[&str] = &["--fmad=false"];

/// The kind of code NVRTC produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeKind {
    /// Device machine code (an ELF image) for one real architecture (`-arch=sm_XY`).
    Cubin,
    /// PTX assembly text for a virtual architecture (`-arch=compute_XY`), which the driver
    /// JIT-compiles for the device at load time.
    Ptx,
}

/// What to compile for: a code kind and an architecture number (`10 * major + minor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// CUBIN or PTX.
    pub kind: CodeKind,
    /// The architecture, e.g. 90 for `sm_90` / `compute_90`.
    pub arch: u32,
}

impl Target {
    /// CUBIN for the real architecture of `cc` (`sm_XY`).
    pub const fn cubin(cc: ComputeCapability) -> Self {
        Self {
            kind: CodeKind::Cubin,
            arch: cc.arch(),
        }
    }

    /// PTX for the virtual architecture of `cc` (`compute_XY`).
    pub const fn ptx(cc: ComputeCapability) -> Self {
        Self {
            kind: CodeKind::Ptx,
            arch: cc.arch(),
        }
    }

    /// The architecture name: `sm_90` for CUBIN, `compute_90` for PTX.
    pub fn arch_name(&self) -> String {
        match self.kind {
            CodeKind::Cubin => format!("sm_{}", self.arch),
            CodeKind::Ptx => format!("compute_{}", self.arch),
        }
    }

    /// The file extension of this kind of code: `cubin` or `ptx`.
    pub const fn extension(&self) -> &'static str {
        match self.kind {
            CodeKind::Cubin => "cubin",
            CodeKind::Ptx => "ptx",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            CodeKind::Cubin => "CUBIN",
            CodeKind::Ptx => "PTX",
        };
        write!(f, "{} ({kind})", self.arch_name())
    }
}

/// The result of a compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledModule {
    /// The name of the source it was compiled from.
    pub source_name: String,
    /// What it was compiled for.
    pub target: Target,
    /// The code: a CUBIN image, or PTX text (without a trailing NUL).
    pub code: Vec<u8>,
    /// NVRTC's log (warnings); empty when the module came from the cache.
    pub log: String,
    /// Whether the module was read from the on-disk cache.
    pub from_cache: bool,
}

impl CompiledModule {
    /// The PTX text, when this is PTX.
    pub fn ptx(&self) -> Option<&str> {
        match self.target.kind {
            CodeKind::Ptx => std::str::from_utf8(&self.code).ok(),
            CodeKind::Cubin => None,
        }
    }
}

/// NVRTC's name for a status code, e.g. `NVRTC_ERROR_COMPILATION`.
fn status_string(status: nvrtc_sys::nvrtcResult) -> String {
    // SAFETY: only called once NVRTC is loaded; the string is static in libnvrtc.
    let ptr = unsafe { nvrtc_sys::nvrtcGetErrorString(status) };
    if ptr.is_null() {
        format!("{status:?}")
    } else {
        // SAFETY: NVRTC returns a NUL-terminated static string.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

/// NVRTC's version. Errors with [`GpuUnavailable::NoNvrtc`](super::discovery::GpuUnavailable)
/// when NVRTC cannot be loaded.
pub fn nvrtc_version() -> Result<NvrtcVersion, CudaError> {
    ensure_nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is loaded; both are valid out-pointers.
    let status = unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) };
    status.result().map_err(|e| CudaError::Nvrtc {
        source_name: String::new(),
        call: "nvrtcVersion",
        status: status_string(e.0),
    })?;
    Ok(NvrtcVersion {
        major: major as u32,
        minor: minor as u32,
    })
}

/// The real architectures NVRTC can compile for (`nvrtcGetSupportedArchs`), ascending,
/// as `10 * major + minor` (e.g. `[75, 80, ..., 90, ...]`).
pub fn supported_archs() -> Result<Vec<u32>, CudaError> {
    ensure_nvrtc()?;
    let fail = |call, e: nvrtc::NvrtcError| CudaError::Nvrtc {
        source_name: String::new(),
        call,
        status: status_string(e.0),
    };
    let mut n = 0;
    // SAFETY: NVRTC is loaded; `n` is a valid out-pointer.
    unsafe { nvrtc_sys::nvrtcGetNumSupportedArchs(&mut n) }
        .result()
        .map_err(|e| fail("nvrtcGetNumSupportedArchs", e))?;
    let mut archs = vec![0; n.max(0) as usize];
    // SAFETY: `archs` has room for the `n` entries NVRTC writes.
    unsafe { nvrtc_sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
        .result()
        .map_err(|e| fail("nvrtcGetSupportedArchs", e))?;
    let mut archs: Vec<u32> = archs.into_iter().map(|a| a as u32).collect();
    archs.sort_unstable();
    Ok(archs)
}

/// The target [`compile`] picks for a device of capability `cc`, given NVRTC's
/// [`supported_archs`]: CUBIN for `sm_XY` when supported, else PTX for the newest
/// supported architecture below it; `None` when NVRTC supports nothing at or below `cc`.
pub fn choose_target(cc: ComputeCapability, supported: &[u32]) -> Option<Target> {
    if supported.contains(&cc.arch()) {
        return Some(Target::cubin(cc));
    }
    supported
        .iter()
        .copied()
        .filter(|&a| a < cc.arch())
        .max()
        .map(|arch| Target::ptx(ComputeCapability::from_arch(arch)))
}

/// An NVRTC program, destroyed on drop.
struct Program(nvrtc_sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by `create_program` and destroyed only here.
        let _ = unsafe { nvrtc::destroy_program(self.0) };
    }
}

fn c_chars_to_string(chars: Vec<c_char>) -> String {
    let bytes: Vec<u8> = chars
        .into_iter()
        .map(|c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Compiles `src` for exactly `target` with [`DEFAULT_OPTIONS`], without the cache.
///
/// A source NVRTC rejects gives [`CudaError::Compile`], carrying the source's name, the
/// target and NVRTC's log.
pub fn compile_for_target(src: &KernelSource, target: Target) -> Result<CompiledModule, CudaError> {
    ensure_nvrtc()?;
    let nul = || CudaError::NulInSource {
        source_name: src.name.to_string(),
    };
    let code = CString::new(src.code).map_err(|_| nul())?;
    let name = CString::new(src.name).map_err(|_| nul())?;
    let fail = |call, e: nvrtc::NvrtcError| CudaError::Nvrtc {
        source_name: src.name.to_string(),
        call,
        status: status_string(e.0),
    };

    let program = Program(
        nvrtc::create_program(&code, Some(&name)).map_err(|e| fail("nvrtcCreateProgram", e))?,
    );
    let mut options: Vec<String> = DEFAULT_OPTIONS.iter().map(|s| s.to_string()).collect();
    options.push(format!("-arch={}", target.arch_name()));

    // SAFETY: `program` is live; `code` and `name` outlive it.
    let compiled = unsafe { nvrtc::compile_program(program.0, &options) };
    // SAFETY: as above.
    let log = unsafe { nvrtc::get_program_log(program.0) }
        .map(c_chars_to_string)
        .unwrap_or_default();
    if let Err(e) = compiled {
        return Err(CudaError::Compile {
            source_name: src.name.to_string(),
            target: target.to_string(),
            status: status_string(e.0),
            log,
        });
    }

    let code = match target.kind {
        CodeKind::Ptx => {
            // SAFETY: `program` is live and compiled.
            let ptx = unsafe { nvrtc::get_ptx(program.0) }.map_err(|e| fail("nvrtcGetPTX", e))?;
            c_chars_to_string(ptx).into_bytes()
        }
        CodeKind::Cubin => {
            let mut size = 0usize;
            // SAFETY: `program` is live and compiled; `size` is a valid out-pointer.
            unsafe { nvrtc_sys::nvrtcGetCUBINSize(program.0, &mut size) }
                .result()
                .map_err(|e| fail("nvrtcGetCUBINSize", e))?;
            let mut cubin = vec![0u8; size];
            // SAFETY: `cubin` has the `size` bytes NVRTC writes.
            unsafe { nvrtc_sys::nvrtcGetCUBIN(program.0, cubin.as_mut_ptr().cast()) }
                .result()
                .map_err(|e| fail("nvrtcGetCUBIN", e))?;
            cubin
        }
    };
    Ok(CompiledModule {
        source_name: src.name.to_string(),
        target,
        code,
        log,
        from_cache: false,
    })
}

/// Compiles `src` for a device of capability `cc`: CUBIN for `sm_XY` when NVRTC supports
/// it, else PTX (see [`choose_target`]; also when a CUBIN compilation fails for a reason
/// other than an error in the source). With a `cache`, a module compiled before by the same
/// NVRTC version for the same target is read back instead of compiled, and a new one is
/// stored (failures to read or write the cache are logged and otherwise ignored).
pub fn compile(
    src: &KernelSource,
    cc: ComputeCapability,
    cache: Option<&KernelCache>,
) -> Result<CompiledModule, CudaError> {
    let version = nvrtc_version()?;
    let supported = supported_archs()?;
    let target = choose_target(cc, &supported).ok_or_else(|| CudaError::UnsupportedArch {
        source_name: src.name.to_string(),
        arch: cc.arch(),
        nvrtc_version: version.to_string(),
        supported: supported.clone(),
    })?;

    let cached_or_compiled = |target: Target| -> Result<CompiledModule, CudaError> {
        let key = CacheKey::new(src, target, version);
        if let Some(code) = cache.and_then(|c| c.load(&key)) {
            return Ok(CompiledModule {
                source_name: src.name.to_string(),
                target,
                code,
                log: String::new(),
                from_cache: true,
            });
        }
        let module = compile_for_target(src, target)?;
        if let Some(cache) = cache {
            if let Err(e) = cache.store(&key, &module.code) {
                tracing::warn!(
                    "could not write the kernel cache in {}: {e}",
                    cache.dir().display()
                );
            }
        }
        Ok(module)
    };

    match cached_or_compiled(target) {
        Err(CudaError::Compile { status, .. })
            if target.kind == CodeKind::Cubin && status != "NVRTC_ERROR_COMPILATION" =>
        {
            tracing::info!(
                "NVRTC could not produce a CUBIN for {} ({status}); compiling PTX",
                target.arch_name()
            );
            cached_or_compiled(Target {
                kind: CodeKind::Ptx,
                arch: target.arch,
            })
        }
        other => other,
    }
}

/// The identity of a cache entry: the source (name, text and [`DEFAULT_OPTIONS`]) by hash,
/// the target and the NVRTC version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    stem: String,
    source_hash: u128,
    target: Target,
    nvrtc: NvrtcVersion,
}

impl CacheKey {
    /// The key of `src` compiled for `target` by NVRTC `nvrtc`.
    pub fn new(src: &KernelSource, target: Target, nvrtc: NvrtcVersion) -> Self {
        let mut hash = Fnv128::new();
        hash.write(b"bach-kernel-cache-v1\0");
        hash.write(src.name.as_bytes());
        hash.write(b"\0");
        hash.write(src.code.as_bytes());
        for option in DEFAULT_OPTIONS {
            hash.write(b"\0");
            hash.write(option.as_bytes());
        }
        // At most 40 bytes of the name: the hash identifies the entry, the name helps people.
        let mut stem = sanitize_file_name(src.name.trim_end_matches(".cu"));
        stem.truncate(40);
        Self {
            stem,
            source_hash: hash.finish(),
            target,
            nvrtc,
        }
    }

    /// The entry's file name, e.g. `numpy-<32 hex digits>.sm_90.nvrtc13.0.cubin`.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{:032x}.{}.nvrtc{}.{}",
            self.stem,
            self.source_hash,
            self.target.arch_name(),
            self.nvrtc,
            self.target.extension()
        )
    }
}

/// 128-bit FNV-1a: a hash that is stable across Rust versions and platforms, for cache keys.
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;

    fn new() -> Self {
        Self(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u128;
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u128 {
        self.0
    }
}

/// An on-disk cache of compiled kernels: one file per [`CacheKey`] in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCache {
    dir: PathBuf,
}

impl KernelCache {
    /// A cache in `dir` (created on the first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// A cache in the kernel directory of the disk cache (`<cache>/kernels`, see
    /// [`crate::disk_cache`]), if there is one.
    pub fn from_env() -> Option<Self> {
        disk_cache::kernels_dir().map(Self::new)
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for `key` lives.
    pub fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// The cached code for `key`, if there is a readable, non-empty entry.
    pub fn load(&self, key: &CacheKey) -> Option<Vec<u8>> {
        match fs::read(self.path(key)) {
            Ok(code) if !code.is_empty() => Some(code),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(
                    "could not read kernel cache entry {}: {e}",
                    self.path(key).display()
                );
                None
            }
        }
    }

    /// Stores `code` as the entry for `key`, atomically: it is written to a temporary file
    /// in the same directory, then renamed over the entry. Returns the entry's path.
    pub fn store(&self, key: &CacheKey, code: &[u8]) -> io::Result<PathBuf> {
        let path = self.path(key);
        write_atomically(&path, code)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests;

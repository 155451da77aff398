//! GPU discovery: whether the CUDA driver (`libcuda`) and NVRTC (`libnvrtc`) can be loaded,
//! which devices exist, and, when a GPU cannot be used, why ([`GpuUnavailable`]).
//!
//! cudarc loads both libraries lazily and *panics* on first use when a library is missing,
//! or when it is present but lacks a symbol of the CUDA 13.0 API cudarc was built for
//! (an older driver or NVRTC). Every function here checks loadability first (cudarc's
//! `is_culib_present`, itself guarded with [`std::panic::catch_unwind`]), so none of them
//! panics on a machine without CUDA. NVRTC's version is read before cudarc loads it (a plain
//! `dlopen` of the library cudarc would pick, and `nvrtcVersion`, which every NVRTC has): one
//! older than [`MIN_NVRTC`] is [`GpuUnavailable::NvrtcTooOld`], and cudarc never touches
//! it. Results are probed once per process and cached.

use std::ffi::c_int;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use cudarc::driver::{result as driver, sys as driver_sys};
use cudarc::nvrtc::sys as nvrtc_sys;

/// Why the GPU backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuUnavailable {
    /// No CUDA driver library (`libcuda.so`) could be loaded.
    #[error("no CUDA driver: libcuda could not be loaded")]
    NoDriver,
    /// The driver loaded, but reports no CUDA device.
    #[error("the CUDA driver reports no device")]
    NoDevice,
    /// NVRTC (`libnvrtc.so`, needed to compile kernels) could not be loaded, or lacks
    /// symbols of the CUDA 13 API.
    #[error(
        "NVRTC could not be loaded: install a CUDA 13 libnvrtc (e.g. with .ci/install-nvrtc.sh) \
         and add its directory to LD_LIBRARY_PATH"
    )]
    NoNvrtc,
    /// NVRTC is older than the `MIN_NVRTC` (12.0) the CUDA bindings need.
    #[error(
        "NVRTC {found} is too old: compiling kernels needs NVRTC {required} or newer; install \
         a CUDA 13 libnvrtc (e.g. with .ci/install-nvrtc.sh) and add its directory to \
         LD_LIBRARY_PATH"
    )]
    NvrtcTooOld {
        /// The version of the NVRTC found.
        found: NvrtcVersion,
        /// The oldest version that works (`MIN_NVRTC`).
        required: NvrtcVersion,
    },
    /// The driver is present but unusable: too old for the CUDA 13 API, or a driver call
    /// (e.g. `cuInit`) failed. The string says which and why.
    #[error("CUDA driver error: {0}")]
    DriverError(String),
}

/// NVRTC's version (`nvrtcVersion`), e.g. 13.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NvrtcVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl NvrtcVersion {
    /// Version `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }
}

impl fmt::Display for NvrtcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The oldest NVRTC the CUDA bindings can load. cudarc's `cuda-13000` bindings (the feature
/// bach-runtime enables) resolve every NVRTC function they know when the library is loaded,
/// and panic on a missing one. Besides the functions every NVRTC has, they include
/// `nvrtcGetLTOIR`, `nvrtcGetLTOIRSize`, `nvrtcGetOptiXIR` and `nvrtcGetOptiXIRSize`, which
/// NVRTC has since CUDA 12.0 (and no longer `nvrtcGetNVVM`, which CUDA 13 removed).
pub const MIN_NVRTC: NvrtcVersion = NvrtcVersion::new(12, 0);

/// `Ok` when the CUDA bindings can use an NVRTC of version `found`, else
/// [`GpuUnavailable::NvrtcTooOld`].
pub fn check_nvrtc_version(found: NvrtcVersion) -> Result<(), GpuUnavailable> {
    if found >= MIN_NVRTC {
        Ok(())
    } else {
        Err(GpuUnavailable::NvrtcTooOld {
            found,
            required: MIN_NVRTC,
        })
    }
}

/// A device's compute capability, e.g. 9.0 for an H100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComputeCapability {
    /// Major version (9 for sm_90).
    pub major: u32,
    /// Minor version (0 for sm_90).
    pub minor: u32,
}

impl ComputeCapability {
    /// A compute capability `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The architecture number NVRTC uses: `10 * major + minor` (90 for sm_90).
    pub const fn arch(self) -> u32 {
        self.major * 10 + self.minor
    }

    /// The inverse of [`arch`](Self::arch): 90 gives 9.0, 120 gives 12.0.
    pub const fn from_arch(arch: u32) -> Self {
        Self::new(arch / 10, arch % 10)
    }
}

impl fmt::Display for ComputeCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One CUDA device, as the driver describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device ordinal (`cuDeviceGet`'s index).
    pub ordinal: usize,
    /// The device name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// The compute capability.
    pub compute_capability: ComputeCapability,
    /// Total device memory in bytes.
    pub total_memory: usize,
}

/// Whether a library could be loaded, as probed once.
#[derive(Debug, Clone)]
enum LibState {
    Absent,
    Present,
    /// Present, but loading it panicked (typically a missing symbol: the library is older
    /// than the CUDA 13.0 API cudarc was built for). Holds the panic message.
    Incompatible(String),
}

/// NVRTC, as probed once: too old for the bindings ([`check_nvrtc_version`]), or what
/// cudarc's probe made of it.
#[derive(Debug, Clone)]
enum NvrtcState {
    TooOld(NvrtcVersion),
    Probed(LibState),
}

fn probe(is_present: unsafe fn() -> bool) -> LibState {
    // SAFETY: `is_culib_present` only dlopens candidate names and resolves symbols.
    match catch_unwind(AssertUnwindSafe(|| unsafe { is_present() })) {
        Ok(true) => LibState::Present,
        Ok(false) => LibState::Absent,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic while loading the library".to_string());
            LibState::Incompatible(msg)
        }
    }
}

fn driver_state() -> &'static LibState {
    static STATE: OnceLock<LibState> = OnceLock::new();
    STATE.get_or_init(|| probe(driver_sys::is_culib_present))
}

fn nvrtc_state() -> &'static NvrtcState {
    static STATE: OnceLock<NvrtcState> = OnceLock::new();
    STATE.get_or_init(|| match loadable_nvrtc_version() {
        Some(found) if check_nvrtc_version(found).is_err() => NvrtcState::TooOld(found),
        _ => NvrtcState::Probed(probe(nvrtc_sys::is_culib_present)),
    })
}

/// The file names cudarc tries for NVRTC, in its order (cudarc 0.17's
/// `get_lib_name_candidates("nvrtc")` for CUDA 13.0, the version of its `cuda-13000`
/// feature), so that the library whose version is checked is the one cudarc would load.
fn nvrtc_candidates() -> Vec<String> {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
    let (lib, major, minor) = ("nvrtc", 13, 0);
    let bits = if cfg!(target_pointer_width = "32") {
        32
    } else {
        64
    };
    vec![
        format!("{DLL_PREFIX}{lib}{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib}{bits}{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib}{bits}_{major}{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib}{bits}_{major}{minor}{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib}{bits}_{major}{minor}_0{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib}{bits}_{major}0_{minor}{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib}{bits}_10{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib}{bits}_{major}0_0{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib}{bits}_9{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib}{DLL_SUFFIX}.{major}"),
        format!("{DLL_PREFIX}{lib}{DLL_SUFFIX}.11"),
        format!("{DLL_PREFIX}{lib}{DLL_SUFFIX}.10"),
        format!("{DLL_PREFIX}{lib}{DLL_SUFFIX}.1"),
    ]
}

/// The version of the NVRTC cudarc would load (the first of [`nvrtc_candidates`] that can be
/// opened), read with `nvrtcVersion` alone; `None` when there is none, or it cannot say.
fn loadable_nvrtc_version() -> Option<NvrtcVersion> {
    type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
    let library = nvrtc_candidates().into_iter().find_map(|name| {
        // SAFETY: loading NVRTC runs no initialisation code with preconditions; the library
        // is only asked for `nvrtcVersion` below.
        unsafe { libloading::Library::new(name) }.ok()
    })?;
    // SAFETY: `nvrtcVersion` has this signature in every NVRTC
    // (`nvrtcResult nvrtcVersion(int* major, int* minor)`; NVRTC_SUCCESS is 0).
    let version = unsafe { library.get::<VersionFn>(b"nvrtcVersion\0") }.ok()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: both are valid out-pointers; `library` stays loaded during the call.
    let status = unsafe { version(&mut major, &mut minor) };
    (status == 0 && major >= 0 && minor >= 0).then(|| NvrtcVersion::new(major as u32, minor as u32))
}

/// Whether a CUDA driver library (`libcuda`) with the CUDA 13 API can be loaded.
/// Never panics.
pub fn libcuda_present() -> bool {
    matches!(driver_state(), LibState::Present)
}

/// `Ok` when cuBLAS (`libcublas`, which the matrix product calls) can be loaded, so that calls
/// into `cudarc::cublas` will not panic; else why not. Probed once per process.
pub(crate) fn ensure_cublas() -> Result<(), String> {
    static STATE: OnceLock<LibState> = OnceLock::new();
    let state = STATE.get_or_init(|| probe(cudarc::cublas::sys::is_culib_present));
    library_status("cuBLAS (libcublas)", "the matrix product", state)
}

/// `Ok` when cuSOLVER (`libcusolver`, which the symmetric eigensolver calls, and the cuBLAS,
/// cuBLASLt and cuSPARSE libraries it links) can be loaded, so that calls into
/// `cudarc::cusolver` will not panic; else why not. Probed once per process.
pub(crate) fn ensure_cusolver() -> Result<(), String> {
    static STATE: OnceLock<LibState> = OnceLock::new();
    let state = STATE.get_or_init(|| probe(cudarc::cusolver::sys::is_culib_present));
    library_status("cuSOLVER (libcusolver)", "the symmetric eigensolver", state)
}

fn library_status(library: &str, needed_by: &str, state: &LibState) -> Result<(), String> {
    match state {
        LibState::Present => Ok(()),
        LibState::Absent => Err(format!(
            "{library} cannot be loaded, and {needed_by} needs it: install the CUDA 13 \
             libraries or put them on the library path"
        )),
        LibState::Incompatible(msg) => Err(format!(
            "{library} is present but does not provide the CUDA 13.0 API {needed_by} was \
             built for: {msg}"
        )),
    }
}

/// `Ok` when NVRTC can be loaded (so that calls into `cudarc::nvrtc` will not panic), else
/// [`GpuUnavailable::NoNvrtc`], or [`GpuUnavailable::NvrtcTooOld`] for an NVRTC older than
/// [`MIN_NVRTC`].
pub fn ensure_nvrtc() -> Result<(), GpuUnavailable> {
    match nvrtc_state() {
        NvrtcState::Probed(LibState::Present) => Ok(()),
        NvrtcState::Probed(LibState::Absent) => Err(GpuUnavailable::NoNvrtc),
        &NvrtcState::TooOld(found) => Err(GpuUnavailable::NvrtcTooOld {
            found,
            required: MIN_NVRTC,
        }),
        NvrtcState::Probed(LibState::Incompatible(msg)) => {
            tracing::warn!("libnvrtc is present but unusable: {msg}");
            Err(GpuUnavailable::NoNvrtc)
        }
    }
}

/// `Ok` when the driver is loaded and initialised (`cuInit` succeeded, once per process),
/// so that calls into `cudarc::driver` will not panic; else why not.
pub fn ensure_driver() -> Result<(), GpuUnavailable> {
    static INIT: OnceLock<Result<(), GpuUnavailable>> = OnceLock::new();
    INIT.get_or_init(|| match driver_state() {
        LibState::Absent => Err(GpuUnavailable::NoDriver),
        LibState::Incompatible(msg) => Err(GpuUnavailable::DriverError(format!(
            "libcuda is present but does not provide the CUDA 13.0 driver API \
             (driver too old?): {msg}"
        ))),
        LibState::Present => match driver::init() {
            Ok(()) => Ok(()),
            Err(e) if e.0 == driver_sys::CUresult::CUDA_ERROR_NO_DEVICE => {
                Err(GpuUnavailable::NoDevice)
            }
            Err(e) => Err(GpuUnavailable::DriverError(format!("cuInit failed: {e}"))),
        },
    })
    .clone()
}

/// The CUDA version the driver supports, as `(major, minor)` (e.g. `(13, 0)`).
pub fn driver_version() -> Result<(u32, u32), GpuUnavailable> {
    ensure_driver()?;
    let mut version = 0;
    // SAFETY: the driver is loaded and initialised; `version` is a valid out-pointer.
    unsafe { driver_sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(|e| GpuUnavailable::DriverError(format!("cuDriverGetVersion failed: {e}")))?;
    let version = version as u32;
    Ok((version / 1000, (version % 1000) / 10))
}

/// The CUDA devices, in ordinal order. Errors when there is no driver, the driver fails, or
/// it reports no device ([`GpuUnavailable::NoDevice`]: the list is never empty).
pub fn devices() -> Result<Vec<DeviceInfo>, GpuUnavailable> {
    ensure_driver()?;
    let err = |call: &str, e: driver::DriverError| {
        GpuUnavailable::DriverError(format!("{call} failed: {e}"))
    };
    let count = driver::device::get_count().map_err(|e| err("cuDeviceGetCount", e))?;
    if count <= 0 {
        return Err(GpuUnavailable::NoDevice);
    }
    (0..count)
        .map(|ordinal| {
            let dev = driver::device::get(ordinal).map_err(|e| err("cuDeviceGet", e))?;
            let name = driver::device::get_name(dev).map_err(|e| err("cuDeviceGetName", e))?;
            // SAFETY: `dev` came from `cuDeviceGet`.
            let attr = |a| unsafe { driver::device::get_attribute(dev, a) };
            use driver_sys::CUdevice_attribute::*;
            let major = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
                .map_err(|e| err("cuDeviceGetAttribute", e))?;
            let minor = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
                .map_err(|e| err("cuDeviceGetAttribute", e))?;
            // SAFETY: as above.
            let total_memory = unsafe { driver::device::total_mem(dev) }
                .map_err(|e| err("cuDeviceTotalMem", e))?;
            Ok(DeviceInfo {
                ordinal: ordinal as usize,
                name,
                compute_capability: ComputeCapability::new(major as u32, minor as u32),
                total_memory,
            })
        })
        .collect()
}

/// Everything the GPU backend needs: the devices when a driver, at least one device and
/// NVRTC are all usable; otherwise the first reason it is not, checked in the order
/// driver, device, NVRTC.
pub fn availability() -> Result<Vec<DeviceInfo>, GpuUnavailable> {
    let devices = devices()?;
    ensure_nvrtc()?;
    Ok(devices)
}

/// What the GPU backend can use, for users: the devices the driver reports, and why the GPU
/// cannot be used when it cannot ([`gpu_status`]). Its `Display` is one line per fact, e.g.
/// `no GPU: libcuda.so not found (running on the CPU)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuStatus {
    /// The CUDA devices (empty without a driver or a device; listed even when NVRTC is
    /// missing, in which case `unavailable` says so).
    pub devices: Vec<DeviceInfo>,
    /// Why Bach runs on the CPU only; `None` when the GPU backend is usable.
    pub unavailable: Option<GpuUnavailable>,
}

impl GpuStatus {
    /// Whether the GPU backend can be used (a driver, a device and NVRTC are all present).
    pub fn is_available(&self) -> bool {
        self.unavailable.is_none() && !self.devices.is_empty()
    }
}

/// A short, user-facing phrase for why the GPU cannot be used.
fn reason_phrase(reason: &GpuUnavailable) -> String {
    match reason {
        GpuUnavailable::NoDriver => "libcuda.so not found".to_string(),
        GpuUnavailable::NoDevice => "the CUDA driver reports no device".to_string(),
        GpuUnavailable::NoNvrtc => {
            "libnvrtc.so (CUDA 13) not found; it compiles the kernels (see .ci/install-nvrtc.sh)"
                .to_string()
        }
        GpuUnavailable::NvrtcTooOld { found, required } => format!(
            "libnvrtc.so is NVRTC {found}, older than the {required} that compiles the kernels \
             (see .ci/install-nvrtc.sh)"
        ),
        GpuUnavailable::DriverError(msg) => msg.clone(),
    }
}

impl fmt::Display for GpuStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reason) = &self.unavailable {
            write!(f, "no GPU: {} (running on the CPU)", reason_phrase(reason))?;
        } else if self.devices.is_empty() {
            write!(f, "no GPU: no CUDA device (running on the CPU)")?;
        } else {
            write!(f, "GPU available")?;
        }
        for d in &self.devices {
            write!(
                f,
                "
  device {}: {} (compute capability {}, {:.1} GiB)",
                d.ordinal,
                d.name,
                d.compute_capability,
                d.total_memory as f64 / (1u64 << 30) as f64
            )?;
        }
        Ok(())
    }
}

/// The GPU status for users (`bach_runtime::gpu_status()`): the devices and, when the GPU
/// backend cannot be used, why. Never panics; probes once per process.
pub fn gpu_status() -> GpuStatus {
    match availability() {
        Ok(devices) => GpuStatus {
            devices,
            unavailable: None,
        },
        Err(reason) => GpuStatus {
            devices: devices().unwrap_or_default(),
            unavailable: Some(reason),
        },
    }
}

#[cfg(test)]
mod tests;

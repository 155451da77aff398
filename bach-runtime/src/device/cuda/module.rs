//! Compiled kernel modules: each [`KernelSource`] is compiled on first use with NVRTC (CUBIN
//! for the device's architecture when NVRTC supports it, PTX otherwise; cached on disk by
//! [`super::nvrtc`]), loaded into the device's context, and its kernels looked up by name once.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};

use cudarc::driver::result as driver;
use cudarc::driver::sys as driver_sys;
use cudarc::driver::CudaContext;

use super::discovery::ComputeCapability;
use super::error::{from_cuda, gpu_err, kernel_not_found};
use super::lock;
use super::nvrtc::{self as compile, CodeKind, CompiledModule, KernelCache};
use crate::device::KernelSource;
use crate::error::Result;

/// Identifies a kernel source within a process by address (sources are `'static`), for the
/// fast path; sources at different addresses with equal names and texts share one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SourceKey {
    name: &'static str,
    code: usize,
    len: usize,
}

impl SourceKey {
    fn of(src: &KernelSource) -> Self {
        SourceKey {
            name: src.name,
            code: src.code.as_ptr() as usize,
            len: src.code.len(),
        }
    }
}

struct Entries<M> {
    by_address: HashMap<SourceKey, Result<Arc<M>>>,
    /// Every source compiled, by text.
    by_text: Vec<(KernelSource, Result<Arc<M>>)>,
}

/// Compiles each kernel source once (NVRTC, with the on-disk cache underneath) for one compute
/// capability and keeps what `load` made of it (a loaded module on a GPU); failures are kept
/// too, so a broken source is not recompiled at every launch. This is the path
/// [`CudaDevice::launch`] takes, minus the driver.
pub(super) struct ModuleCache<M> {
    cc: ComputeCapability,
    disk: Option<KernelCache>,
    entries: Mutex<Entries<M>>,
}

impl<M> ModuleCache<M> {
    pub(super) fn new(cc: ComputeCapability, disk: Option<KernelCache>) -> Self {
        ModuleCache {
            cc,
            disk,
            entries: Mutex::new(Entries {
                by_address: HashMap::new(),
                by_text: Vec::new(),
            }),
        }
    }

    /// The module of `src`: compiled and loaded with `load` on first use, then cached.
    pub(super) fn get(
        &self,
        src: &KernelSource,
        load: impl FnOnce(&CompiledModule) -> Result<M>,
    ) -> Result<Arc<M>> {
        let key = SourceKey::of(src);
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.by_address.get(&key) {
            return entry.clone();
        }
        let known = entries
            .by_text
            .iter()
            .find(|(s, _)| s.name == src.name && s.code == src.code)
            .map(|(_, entry)| entry.clone());
        let entry = match known {
            Some(entry) => entry,
            None => match compile_source(src, self.cc, self.disk.as_ref()) {
                // A failed load (e.g. out of memory) is not kept: the next launch tries again.
                Ok(compiled) => {
                    let entry = Ok(Arc::new(load(&compiled)?));
                    entries.by_text.push((*src, entry.clone()));
                    entry
                }
                Err(e) => {
                    entries.by_text.push((*src, Err(e.clone())));
                    Err(e)
                }
            },
        };
        entries.by_address.insert(key, entry.clone());
        entry
    }
}

/// Compiles `src` for `cc` ([`compile::compile`]), in the runtime's error type.
pub(super) fn compile_source(
    src: &KernelSource,
    cc: ComputeCapability,
    disk: Option<&KernelCache>,
) -> Result<CompiledModule> {
    let module = compile::compile(src, cc, disk).map_err(from_cuda)?;
    if module.target.kind == CodeKind::Ptx {
        tracing::info!(
            "{}: NVRTC has no CUBIN target for sm_{}; the driver JIT-compiles PTX for {}",
            src.name,
            cc.arch(),
            module.target.arch_name()
        );
    }
    if !module.log.trim().is_empty() {
        tracing::debug!("NVRTC log for {}:\n{}", src.name, module.log);
    }
    Ok(module)
}

/// A module loaded into the device's context, with the functions looked up so far.
pub(super) struct LoadedModule {
    source: &'static str,
    module: driver_sys::CUmodule,
    functions: Mutex<HashMap<String, usize>>,
    ctx: Arc<CudaContext>,
}

// SAFETY: a CUmodule and its CUfunctions are handles valid in any thread that binds the
// context; the function map is behind a mutex.
unsafe impl Send for LoadedModule {}

// SAFETY: as above.
unsafe impl Sync for LoadedModule {}

impl LoadedModule {
    pub(super) fn load(
        ctx: &Arc<CudaContext>,
        source: &'static str,
        compiled: &CompiledModule,
    ) -> Result<Self> {
        ctx.bind_to_thread()
            .map_err(|e| gpu_err("binding the CUDA context", e))?;
        // The driver takes a CUBIN image as is and PTX as a NUL-terminated string.
        let mut image = compiled.code.clone();
        if compiled.target.kind == CodeKind::Ptx {
            image.push(0);
        }
        // SAFETY: `image` is a complete CUBIN (an ELF image) or NUL-terminated PTX text, as
        // produced by NVRTC for this device; it stays alive for the duration of the call (the
        // driver copies what it needs).
        let module = unsafe { driver::module::load_data(image.as_ptr().cast()) }.map_err(|e| {
            gpu_err(
                format_args!("loading the {} module of {source}", compiled.target),
                e,
            )
        })?;
        Ok(LoadedModule {
            source,
            module,
            functions: Mutex::new(HashMap::new()),
            ctx: ctx.clone(),
        })
    }

    /// The function `kernel`, looked up once.
    pub(super) fn function(&self, kernel: &str) -> Result<driver_sys::CUfunction> {
        let mut functions = lock(&self.functions);
        if let Some(&f) = functions.get(kernel) {
            return Ok(f as driver_sys::CUfunction);
        }
        let name = CString::new(kernel).map_err(|_| kernel_not_found(kernel, self.source))?;
        // SAFETY: `self.module` is loaded and not unloaded before `self` is dropped.
        let f = match unsafe { driver::module::get_function(self.module, name) } {
            Ok(f) => f,
            Err(e) if e.0 == driver_sys::CUresult::CUDA_ERROR_NOT_FOUND => {
                return Err(kernel_not_found(kernel, self.source));
            }
            Err(e) => {
                return Err(gpu_err(
                    format_args!("looking up kernel `{kernel}` in {}", self.source),
                    e,
                ))
            }
        };
        functions.insert(kernel.to_string(), f as usize);
        Ok(f)
    }
}

impl Drop for LoadedModule {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: loaded in `load`, unloaded only here; no launch can use it any more
            // (the device that owned it is being dropped and has synchronized its streams).
            let _ = unsafe { driver::module::unload(self.module) };
        }
    }
}

#[cfg(test)]
mod tests;

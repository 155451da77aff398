//! Kernel sources compiled as host C++ (`kernels/host_emulation.h` and
//! `common.cuh` in front), so that tests run a kernel's arithmetic on the
//! CPU against the Rust functions it implements. Included by the tests that
//! use it (`#[path = "common/host_cpp.rs"] mod host_cpp;`).

use std::ffi::c_void;
use std::path::PathBuf;
use std::process::Command;

/// The annotated libraries' kernel sources.
pub const KERNELS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/kernels");

type HostLaunch = unsafe extern "C" fn(u32, u32, extern "C" fn(*mut c_void), *mut c_void);

/// `kernels/{file}` compiled as a host library, or `None` (with the reason
/// printed) without a compiler, unless `BACH_REQUIRE_GXX=1`. Each call builds
/// its own library file, so tests running at once never share one.
pub fn host_kernels(file: &str) -> Option<libloading::Library> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".to_string());
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("lib{file}-{}-{unique}.so", std::process::id()));
    let output = Command::new(&cxx)
        .args([
            "-O2",
            "-shared",
            "-fPIC",
            "-pthread",
            "-Wall",
            "-ffp-contract=off",
        ])
        .arg("-include")
        .arg(format!("{KERNELS_DIR}/host_emulation.h"))
        .arg("-include")
        .arg(format!("{KERNELS_DIR}/common.cuh"))
        .args(["-x", "c++"])
        .arg(format!("{KERNELS_DIR}/{file}"))
        .arg("-o")
        .arg(&out)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if std::env::var("BACH_REQUIRE_GXX").as_deref() != Ok("1") => {
            eprintln!("skipping the host kernel check: cannot run `{cxx}`: {e}");
            return None;
        }
        Err(e) => panic!("BACH_REQUIRE_GXX=1 but `{cxx}` cannot run: {e}"),
    };
    assert!(
        output.status.success(),
        "{cxx} failed on {file}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // SAFETY: the library just built; its initialisers only set up thread-locals.
    let lib = unsafe { libloading::Library::new(&out) }.expect("load the host kernels");
    let _ = std::fs::remove_file(&out);
    Some(lib)
}

/// Runs `body` once per emulated thread of a `grid` x `block` launch.
pub fn launch<F: Fn() + Sync>(lib: &libloading::Library, grid: u32, block: u32, body: F) {
    extern "C" fn trampoline<F: Fn() + Sync>(ctx: *mut c_void) {
        // SAFETY: `ctx` is the `&F` below, alive for the whole launch.
        unsafe { (*(ctx as *const F))() }
    }
    // SAFETY: the signature of `bach_host_launch` in host_emulation.h; it returns after
    // every thread has finished.
    unsafe {
        let run = *lib
            .get::<HostLaunch>(b"bach_host_launch\0")
            .expect("bach_host_launch");
        run(
            grid,
            block,
            trampoline::<F>,
            &body as *const F as *mut c_void,
        )
    }
}

/// A pointer that crosses the emulated threads (each writes its own elements).
#[derive(Clone, Copy)]
pub struct Ptr(pub usize);

impl Ptr {
    /// The start of `v`.
    pub fn of<T>(v: &[T]) -> Self {
        Ptr(v.as_ptr() as usize)
    }
    /// As a pointer the kernel reads.
    pub fn c<T>(self) -> *const T {
        self.0 as *const T
    }
    /// As a pointer the kernel writes.
    pub fn m<T>(self) -> *mut T {
        self.0 as *mut T
    }
}

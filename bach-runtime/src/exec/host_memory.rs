//! Host memory behaviour of batched execution.
//!
//! A partitioned stage on the CPU allocates every call's result afresh for
//! each batch (the annotated functions allocate their outputs) and frees it
//! after its last reader: tens of arrays of 32 to 512 KiB per batch, over and
//! over. glibc returns the top of a heap to the operating system as soon as
//! more than 128 KiB of it is free (its trim threshold), so every batch gives
//! its pages back and the next one faults them in again, zeroed. On
//! Black-Scholes at 2^22 elements that was a fifth of the time
//! (BENCHMARKS.md). Raising the trim threshold keeps those pages in the
//! process, as jemalloc and mimalloc do by design.
//!
//! It is a process-wide setting, made once, the first time a stage runs in
//! more than one batch; not made when the program set `MALLOC_TRIM_THRESHOLD_`
//! itself, or with `BACH_HEAP_TRIM=default`.

/// Bytes of free heap glibc may keep before returning memory to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 256 << 20;

/// Keeps freed batch memory in the process (see the module docs); once.
pub(crate) fn keep_freed_batches() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let chosen = std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
            || std::env::var("BACH_HEAP_TRIM").is_ok_and(|v| v.trim() == "default");
        if !chosen {
            raise_trim_threshold();
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn raise_trim_threshold() {
    // SAFETY: `mallopt` only changes a parameter of the allocator, which is
    // thread-safe in glibc; no memory is touched.
    let ok = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
    if ok != 1 {
        tracing::debug!(
            "mallopt(M_TRIM_THRESHOLD) was refused; freed batches go back to the system"
        );
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn raise_trim_threshold() {}

//! A simulated device for tests: its own address space in host memory with a
//! hard capacity, counted transfers, and kernels run by the calls' CPU
//! functions. It exercises exactly the planning, batching and transfer code
//! that a CUDA device uses, on any machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Device, DeviceBuffer, KernelArg, Launch, TransferStats};
use crate::error::{Error, Result};

/// Settings of a [`SimulatedDevice`].
#[derive(Debug, Clone)]
pub struct SimulatedDeviceConfig {
    /// Device memory in bytes; allocations beyond it fail with `DeviceOutOfMemory`.
    pub capacity: usize,
    /// Fail the allocation with this (0-based) index, to test recovery from
    /// out-of-memory errors.
    pub fail_alloc: Option<u64>,
    /// The costs placement assumes for this device.
    pub costs: crate::cost::DeviceCosts,
}

impl Default for SimulatedDeviceConfig {
    fn default() -> Self {
        SimulatedDeviceConfig {
            capacity: 1 << 30,
            fail_alloc: None,
            costs: crate::cost::DeviceCosts::default(),
        }
    }
}

#[derive(Default)]
struct Counters {
    stats: Mutex<TransferStats>,
    in_use: AtomicU64,
    allocs: AtomicU64,
}

/// A test device backed by host memory (see the module docs).
pub struct SimulatedDevice {
    config: SimulatedDeviceConfig,
    counters: Arc<Counters>,
}

/// One simulated allocation; returns its bytes to the device on drop.
struct SimAlloc {
    data: Mutex<Vec<u8>>,
    counters: Arc<Counters>,
}

impl Drop for SimAlloc {
    fn drop(&mut self) {
        let n = self.data.get_mut().map(|d| d.len()).unwrap_or(0);
        self.counters.in_use.fetch_sub(n as u64, Ordering::SeqCst);
    }
}

impl SimulatedDevice {
    /// A simulated device with the given settings.
    pub fn new(config: SimulatedDeviceConfig) -> Self {
        SimulatedDevice {
            config,
            counters: Arc::new(Counters::default()),
        }
    }

    /// A simulated device with `capacity` bytes of memory.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::new(SimulatedDeviceConfig {
            capacity,
            ..Default::default()
        })
    }

    /// Bytes allocated now.
    pub fn in_use(&self) -> usize {
        self.counters.in_use.load(Ordering::SeqCst) as usize
    }

    fn raw(buf: &DeviceBuffer) -> Result<&SimAlloc> {
        buf.raw.downcast_ref::<SimAlloc>().ok_or_else(|| {
            Error::Gpu("a buffer of another device was given to the simulated device".into())
        })
    }

    /// Modelled nanoseconds of one transfer of `bytes`.
    fn transfer_ns(&self, bytes: usize) -> u64 {
        let c = &self.config.costs;
        ((c.link_latency_s + bytes as f64 / c.link_bytes_per_s) * 1e9) as u64
    }

    fn update(&self, f: impl FnOnce(&mut TransferStats)) {
        f(&mut self
            .counters
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner()))
    }
}

impl Device for SimulatedDevice {
    fn name(&self) -> String {
        format!("simulated device ({} bytes)", self.config.capacity)
    }

    fn free_memory(&self) -> usize {
        self.config.capacity.saturating_sub(self.in_use())
    }

    fn alloc(&self, bytes: usize) -> Result<DeviceBuffer> {
        let index = self.counters.allocs.fetch_add(1, Ordering::SeqCst);
        let injected = self.config.fail_alloc == Some(index);
        // Reserve first, so concurrent allocations cannot overshoot the capacity together.
        let before = self
            .counters
            .in_use
            .fetch_add(bytes as u64, Ordering::SeqCst) as usize;
        if injected || before + bytes > self.config.capacity {
            self.counters
                .in_use
                .fetch_sub(bytes as u64, Ordering::SeqCst);
            return Err(Error::DeviceOutOfMemory {
                requested: bytes,
                free: self.config.capacity.saturating_sub(before),
            });
        }
        let now = (before + bytes) as u64;
        self.update(|s| s.peak_bytes = s.peak_bytes.max(now));
        Ok(DeviceBuffer {
            bytes,
            raw: Box::new(SimAlloc {
                data: Mutex::new(vec![0u8; bytes]),
                counters: self.counters.clone(),
            }),
        })
    }

    fn upload(&self, src: &[u8], dst: &DeviceBuffer) -> Result<()> {
        let mut d = Self::raw(dst)?
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if src.len() > d.len() {
            return Err(Error::Gpu(format!(
                "upload of {} bytes into a {}-byte buffer",
                src.len(),
                d.len()
            )));
        }
        d[..src.len()].copy_from_slice(src);
        let t = self.transfer_ns(src.len());
        self.update(|s| {
            s.uploads += 1;
            s.upload_bytes += src.len() as u64;
            s.modelled_ns += t;
        });
        Ok(())
    }

    fn download(&self, src: &DeviceBuffer, dst: &mut [u8]) -> Result<()> {
        let d = Self::raw(src)?
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if dst.len() > d.len() {
            return Err(Error::Gpu(format!(
                "download of {} bytes from a {}-byte buffer",
                dst.len(),
                d.len()
            )));
        }
        dst.copy_from_slice(&d[..dst.len()]);
        let t = self.transfer_ns(dst.len());
        self.update(|s| {
            s.downloads += 1;
            s.download_bytes += dst.len() as u64;
            s.modelled_ns += t;
        });
        Ok(())
    }

    fn launch(&self, launch: &Launch<'_>) -> Result<()> {
        // Copy inputs out of the simulated address space, run the emulation,
        // and write the outputs back, as a kernel would.
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        let mut outputs: Vec<&SimAlloc> = Vec::new();
        for a in &launch.args {
            match a {
                KernelArg::In(b) => inputs.push(
                    Self::raw(b)?
                        .data
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                ),
                KernelArg::Out(b) => outputs.push(Self::raw(b)?),
                KernelArg::F32(_) | KernelArg::F64(_) => {}
            }
        }
        let views: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let results = (launch.emulate)(&views)?;
        if results.len() != outputs.len() {
            return Err(Error::Gpu(format!(
                "kernel `{}` produced {} outputs for {} output buffers",
                launch.kernel,
                results.len(),
                outputs.len()
            )));
        }
        for (bytes, out) in results.iter().zip(outputs) {
            let mut d = out.data.lock().unwrap_or_else(|e| e.into_inner());
            if bytes.len() > d.len() {
                return Err(Error::Gpu(format!(
                    "kernel `{}` overflowed its output buffer",
                    launch.kernel
                )));
            }
            d[..bytes.len()].copy_from_slice(bytes);
        }
        let c = &self.config.costs;
        let t = ((c.launch_s + launch.n as f64 / c.elements_per_s) * 1e9) as u64;
        self.update(|s| {
            s.launches += 1;
            s.modelled_ns += t;
        });
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn stats(&self) -> TransferStats {
        *self
            .counters
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn costs(&self) -> crate::cost::DeviceCosts {
        self.config.costs
    }
}

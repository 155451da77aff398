//! A simulated device for tests: its own address space in host memory with a
//! hard capacity, counted transfers, and kernels run by the calls' CPU
//! functions. It exercises exactly the planning, batching, transfer and
//! queue-ordering code that a CUDA device uses, on any machine.
//!
//! Work runs at once (in the order the host enqueues it), but the device keeps
//! two models of what a real, asynchronous device would do with it:
//!
//! - **Ordering.** A vector clock per queue (and one for the host) records
//!   which work each queue is known to run after, through [`Device::record`] and
//!   [`Device::wait`]. Every buffer remembers its last write and its latest
//!   read per queue. Work that touches a buffer in a way not ordered after a
//!   conflicting earlier access (a kernel reading an upload it did not wait
//!   for, an upload overwriting a buffer a kernel may still read) is a data
//!   race on a real device: it fails with an [`Error::Device`] naming both sides,
//!   so the executor's missing events show up as failing tests here.
//! - **Time.** Each queue has a timeline in modelled nanoseconds (from the
//!   [`DeviceCosts`](super::DeviceCosts)): work starts when its queue is free
//!   and the events it waits for have completed. `TransferStats::modelled_ns`
//!   is the end of the last work, so overlapping queues show up as a shorter
//!   time than `serial_ns`, the sum of all work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    check_copy, check_range, linalg, Device, DeviceBuffer, Event, Gemm, KernelArg, Launch,
    PendingDownload, Queue, SymmetricEigen, TransferStats,
};
use crate::error::{Error, Result};

/// Settings of a [`SimulatedDevice`].
#[derive(Debug, Clone)]
pub struct SimulatedDeviceConfig {
    /// Device memory in bytes; allocations beyond it fail with `DeviceOutOfMemory`.
    pub capacity: usize,
    /// Fail the allocation with this (0-based) index, to test recovery from
    /// out-of-memory errors.
    pub fail_alloc: Option<u64>,
    /// Fail every kernel launch of this name with a device error (not an
    /// out-of-memory), as a module that does not load or a failing launch
    /// would: to test what evaluation does with a broken device.
    pub fail_kernel: Option<String>,
    /// The costs placement assumes for this device, and its time model.
    pub costs: super::DeviceCosts,
}

impl Default for SimulatedDeviceConfig {
    fn default() -> Self {
        SimulatedDeviceConfig {
            capacity: 1 << 30,
            fail_alloc: None,
            fail_kernel: None,
            costs: super::DeviceCosts::default(),
        }
    }
}

/// The three queues and the host.
const AGENTS: usize = 4;
const HOST: usize = 3;

fn agent_name(agent: usize) -> &'static str {
    ["upload", "compute", "download", "host"][agent]
}

/// One access to a buffer: work number `seq` of `agent`.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    agent: usize,
    seq: u64,
    what: &'static str,
}

/// Vector clocks and timelines of the queues and the host.
#[derive(Default)]
struct Clocks {
    /// `known[a][b]`: how many of `b`'s works `a`'s next work is ordered after
    /// (`known[a][a]`: `a`'s own count).
    known: [[u64; AGENTS]; AGENTS],
    /// Modelled nanosecond at which each agent is free.
    time: [u64; AGENTS],
}

impl Clocks {
    /// True when `earlier` is ordered before the next work of `agent`.
    fn ordered(&self, earlier: &Stamp, agent: usize) -> bool {
        earlier.agent == agent || self.known[agent][earlier.agent] >= earlier.seq
    }

    /// Starts one work on `agent` lasting `ns`: returns its number.
    fn start(&mut self, agent: usize, ns: u64) -> u64 {
        self.known[agent][agent] += 1;
        // Work cannot start before the host enqueued it.
        let begin = self.time[agent].max(self.time[HOST]);
        self.time[agent] = begin + ns;
        self.known[agent][agent]
    }

    fn merge(&mut self, agent: usize, event: &SimEvent) {
        for b in 0..AGENTS {
            self.known[agent][b] = self.known[agent][b].max(event.known[b]);
        }
        self.time[agent] = self.time[agent].max(event.time);
    }
}

#[derive(Default)]
struct Counters {
    stats: Mutex<TransferStats>,
    clocks: Mutex<Clocks>,
    in_use: AtomicU64,
    allocs: AtomicU64,
}

/// A test device backed by host memory (see the module docs).
pub struct SimulatedDevice {
    config: SimulatedDeviceConfig,
    counters: Arc<Counters>,
}

/// Who touched a buffer last (for the ordering check).
#[derive(Default)]
struct AccessLog {
    last_write: Option<Stamp>,
    /// The latest read by each agent since the last write.
    reads: [Option<Stamp>; AGENTS],
}

/// One simulated allocation; returns its bytes to the device on drop.
struct SimAlloc {
    data: Mutex<Vec<u8>>,
    log: Mutex<AccessLog>,
    counters: Arc<Counters>,
}

impl Drop for SimAlloc {
    fn drop(&mut self) {
        let n = self.data.get_mut().map(|d| d.len()).unwrap_or(0);
        self.counters.in_use.fetch_sub(n as u64, Ordering::SeqCst);
    }
}

/// A recorded point of one queue: its clock and modelled time.
struct SimEvent {
    /// The device's counters, to reject events of other devices.
    device: usize,
    known: [u64; AGENTS],
    time: u64,
}

/// A download's bytes, copied when it was enqueued.
struct SimDownload {
    bytes: Vec<u8>,
    done: SimEvent,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    fn id(&self) -> usize {
        Arc::as_ptr(&self.counters) as usize
    }

    fn raw<'b>(&self, buf: &'b DeviceBuffer) -> Result<&'b SimAlloc> {
        buf.raw
            .downcast_ref::<SimAlloc>()
            .filter(|a| Arc::ptr_eq(&a.counters, &self.counters))
            .ok_or_else(|| {
                Error::Device("a buffer of another device was given to a simulated device".into())
            })
    }

    fn event<'e>(&self, event: &'e Event) -> Result<&'e SimEvent> {
        event
            .raw
            .downcast_ref::<SimEvent>()
            .filter(|e| e.device == self.id())
            .ok_or_else(|| {
                Error::Device("an event of another device was given to a simulated device".into())
            })
    }

    /// Modelled nanoseconds of one transfer of `bytes`.
    fn transfer_ns(&self, bytes: usize) -> u64 {
        let c = &self.config.costs;
        ((c.link_latency_s + bytes as f64 / c.link_bytes_per_s) * 1e9) as u64
    }

    /// Modelled nanoseconds of a kernel over `elements` elements.
    fn kernel_ns(&self, elements: f64) -> u64 {
        let c = &self.config.costs;
        ((c.launch_s + elements / c.elements_per_s) * 1e9) as u64
    }

    /// The injected failure of `kernel`, if `fail_kernel` names it.
    fn injected_failure(&self, kernel: &str) -> Result<()> {
        if self.config.fail_kernel.as_deref() == Some(kernel) {
            return Err(Error::Device(format!(
                "launching `{kernel}`: injected failure"
            )));
        }
        Ok(())
    }

    fn update(&self, f: impl FnOnce(&mut TransferStats)) {
        f(&mut lock(&self.counters.stats))
    }

    /// Runs the bookkeeping of one work on `queue` lasting `ns` that reads
    /// `reads` and writes `writes`: the ordering check, then the clocks.
    fn work(
        &self,
        queue: Queue,
        what: &'static str,
        ns: u64,
        reads: &[&SimAlloc],
        writes: &[&SimAlloc],
    ) -> Result<()> {
        let agent = queue.index();
        let mut clocks = lock(&self.counters.clocks);
        let race = |earlier: &Stamp| {
            Error::Device(format!(
                "data race on the simulated device: {what} on the {} queue is not ordered after the {} on the {} queue (a missing event wait)",
                agent_name(agent),
                earlier.what,
                agent_name(earlier.agent)
            ))
        };
        for b in reads {
            let log = lock(&b.log);
            if let Some(w) = log
                .last_write
                .as_ref()
                .filter(|w| !clocks.ordered(w, agent))
            {
                return Err(race(w));
            }
        }
        for b in writes {
            let log = lock(&b.log);
            let earlier = log.last_write.iter().chain(log.reads.iter().flatten());
            for e in earlier {
                if !clocks.ordered(e, agent) {
                    return Err(race(e));
                }
            }
        }
        let seq = clocks.start(agent, ns);
        let stamp = Stamp { agent, seq, what };
        for b in reads {
            lock(&b.log).reads[agent] = Some(stamp);
        }
        for b in writes {
            *lock(&b.log) = AccessLog {
                last_write: Some(stamp),
                ..Default::default()
            };
        }
        let end = *clocks.time.iter().max().expect("four agents");
        drop(clocks);
        self.update(|s| {
            s.serial_ns += ns;
            s.modelled_ns = s.modelled_ns.max(end);
        });
        Ok(())
    }

    fn snapshot(&self, queue: usize) -> SimEvent {
        let clocks = lock(&self.counters.clocks);
        SimEvent {
            device: self.id(),
            known: clocks.known[queue],
            time: clocks.time[queue],
        }
    }
}

impl Device for SimulatedDevice {
    fn name(&self) -> String {
        format!("simulated device ({} bytes)", self.config.capacity)
    }

    fn free_memory(&self) -> usize {
        self.config.capacity.saturating_sub(self.in_use())
    }

    fn alloc_on(&self, queue: Queue, bytes: usize) -> Result<DeviceBuffer> {
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
        let alloc = SimAlloc {
            data: Mutex::new(vec![0u8; bytes]),
            log: Mutex::new(AccessLog::default()),
            counters: self.counters.clone(),
        };
        // The allocation is the buffer's first write, on `queue`: other queues
        // must be ordered after it (a real device orders the reuse of a freed
        // block on the allocating queue only).
        self.work(queue, "allocation", 0, &[], &[&alloc])?;
        Ok(DeviceBuffer {
            bytes,
            raw: Box::new(alloc),
        })
    }

    fn upload_on(&self, queue: Queue, src: &[u8], dst: &DeviceBuffer) -> Result<()> {
        let alloc = self.raw(dst)?;
        check_range("upload", 0, src.len(), dst.bytes)?;
        self.work(queue, "upload", self.transfer_ns(src.len()), &[], &[alloc])?;
        lock(&alloc.data)[..src.len()].copy_from_slice(src);
        self.update(|s| {
            s.uploads += 1;
            s.upload_bytes += src.len() as u64;
        });
        Ok(())
    }

    fn launch_on(&self, queue: Queue, launch: &Launch<'_>) -> Result<()> {
        if self.config.fail_kernel.as_deref() == Some(launch.kernel.as_str()) {
            return Err(Error::Device(format!(
                "launching `{}`: injected failure",
                launch.kernel
            )));
        }
        let mut reads: Vec<&SimAlloc> = Vec::new();
        let mut writes: Vec<&SimAlloc> = Vec::new();
        for a in &launch.args {
            match a {
                KernelArg::In(b) => reads.push(self.raw(b)?),
                KernelArg::Out(b) => writes.push(self.raw(b)?),
                KernelArg::F32(_) | KernelArg::F64(_) | KernelArg::I32(_) | KernelArg::U64(_) => {}
            }
        }
        let c = &self.config.costs;
        let ns = ((c.launch_s + launch.n as f64 / c.elements_per_s) * 1e9) as u64;
        self.work(queue, "kernel", ns, &reads, &writes)?;
        // Copy inputs out of the simulated address space, run the emulation,
        // and write the outputs back, as a kernel would.
        let inputs: Vec<Vec<u8>> = reads.iter().map(|b| lock(&b.data).clone()).collect();
        let views: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let results = (launch.reference)(&views)?;
        if results.len() != writes.len() {
            return Err(Error::Device(format!(
                "kernel `{}` produced {} outputs for {} output buffers",
                launch.kernel,
                results.len(),
                writes.len()
            )));
        }
        for (bytes, out) in results.iter().zip(writes) {
            let mut d = lock(&out.data);
            if bytes.len() > d.len() {
                return Err(Error::Device(format!(
                    "kernel `{}` overflowed its output buffer",
                    launch.kernel
                )));
            }
            d[..bytes.len()].copy_from_slice(bytes);
        }
        self.update(|s| s.launches += 1);
        Ok(())
    }

    fn copy_on(
        &self,
        queue: Queue,
        src: &DeviceBuffer,
        src_offset: usize,
        dst: &DeviceBuffer,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<()> {
        let (from, to) = (self.raw(src)?, self.raw(dst)?);
        check_copy(src, src_offset, dst, dst_offset, bytes)?;
        // On-device bandwidth: as a kernel moving `bytes` bytes.
        let c = &self.config.costs;
        let ns = ((c.launch_s + bytes as f64 / 8.0 / c.elements_per_s) * 1e9) as u64;
        self.work(queue, "device copy", ns, &[from], &[to])?;
        let data = lock(&from.data)[src_offset..src_offset + bytes].to_vec();
        lock(&to.data)[dst_offset..dst_offset + bytes].copy_from_slice(&data);
        Ok(())
    }

    fn start_download(
        &self,
        queue: Queue,
        src: &DeviceBuffer,
        bytes: usize,
    ) -> Result<PendingDownload> {
        let alloc = self.raw(src)?;
        check_range("download", 0, bytes, src.bytes)?;
        self.work(queue, "download", self.transfer_ns(bytes), &[alloc], &[])?;
        let copied = lock(&alloc.data)[..bytes].to_vec();
        self.update(|s| {
            s.downloads += 1;
            s.download_bytes += bytes as u64;
        });
        Ok(PendingDownload {
            bytes,
            raw: Box::new(SimDownload {
                bytes: copied,
                done: self.snapshot(queue.index()),
            }),
        })
    }

    fn finish_download(&self, pending: PendingDownload, dst: &mut [u8]) -> Result<()> {
        let download = pending
            .raw
            .downcast::<SimDownload>()
            .ok()
            .filter(|d| d.done.device == self.id())
            .ok_or_else(|| {
                Error::Device("a download of another device was given to a simulated device".into())
            })?;
        if dst.len() != download.bytes.len() {
            return Err(Error::Device(format!(
                "a download of {} bytes finished into {} bytes",
                download.bytes.len(),
                dst.len()
            )));
        }
        lock(&self.counters.clocks).merge(HOST, &download.done);
        dst.copy_from_slice(&download.bytes);
        Ok(())
    }

    fn record(&self, queue: Queue) -> Result<Event> {
        Ok(Event {
            raw: Box::new(self.snapshot(queue.index())),
        })
    }

    fn wait(&self, queue: Queue, event: &Event) -> Result<()> {
        let event = self.event(event)?;
        lock(&self.counters.clocks).merge(queue.index(), event);
        Ok(())
    }

    fn host_wait(&self, event: &Event) -> Result<()> {
        let event = self.event(event)?;
        lock(&self.counters.clocks).merge(HOST, event);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        for q in Queue::ALL {
            let event = self.snapshot(q.index());
            lock(&self.counters.clocks).merge(HOST, &event);
        }
        Ok(())
    }

    fn stats(&self) -> TransferStats {
        *lock(&self.counters.stats)
    }

    fn costs(&self) -> super::DeviceCosts {
        self.config.costs
    }

    /// On the host, with ndarray's `general_mat_mul` over the operands' bytes; modelled as a
    /// kernel over `m n k` elements, counted as a launch. `fail_kernel` names it `gemm_f64`
    /// (or `gemm_f32`).
    fn gemm_on(&self, queue: Queue, g: &Gemm<'_>) -> Result<()> {
        let spans = g.check()?;
        self.injected_failure(&g.name())?;
        let (a, b, c) = (
            self.raw(g.a.buffer)?,
            self.raw(g.b.buffer)?,
            self.raw(g.c.buffer)?,
        );
        let mut reads = vec![a, b];
        if g.beta != 0.0 {
            reads.push(c);
        }
        let ns = self.kernel_ns(g.work());
        self.work(queue, "matrix product", ns, &reads, &[c])?;
        if g.m > 0 && g.n > 0 {
            // Copies first: A or B may share C's buffer (not its range).
            let a_bytes = lock(&a.data)[spans.a.clone()].to_vec();
            let b_bytes = lock(&b.data)[spans.b.clone()].to_vec();
            let mut c_data = lock(&c.data);
            linalg::host_gemm(g, &a_bytes, &b_bytes, &mut c_data[spans.c.clone()]);
        }
        self.update(|s| s.launches += 1);
        Ok(())
    }

    /// Runs the solve's [`reference`](SymmetricEigen::reference) on the matrix's bytes;
    /// modelled as a kernel over `n^3` elements, counted as a launch. `fail_kernel` names it
    /// `syevd_f64` (or `syevd_f32`).
    fn symmetric_eigen_on(&self, queue: Queue, e: &SymmetricEigen<'_>) -> Result<()> {
        let spans = e.check()?;
        self.injected_failure(&e.name())?;
        let (m, values, vectors) = (
            self.raw(e.matrix)?,
            self.raw(e.values)?,
            self.raw(e.vectors)?,
        );
        let ns = self.kernel_ns(e.work());
        self.work(queue, "eigensolver", ns, &[m], &[values, vectors])?;
        if e.n > 0 {
            let input = lock(&m.data)[spans.matrix.clone()].to_vec();
            let out = (e.reference)(&[&input])?;
            let [v, w] = &out[..] else {
                return Err(Error::Device(format!(
                    "the eigensolver's reference produced {} outputs, not 2 (values, vectors)",
                    out.len()
                )));
            };
            if v.len() != spans.values.len() || w.len() != spans.vectors.len() {
                return Err(Error::Device(format!(
                    "the eigensolver's reference produced {} and {} bytes for {} and {}",
                    v.len(),
                    w.len(),
                    spans.values.len(),
                    spans.vectors.len()
                )));
            }
            lock(&values.data)[spans.values].copy_from_slice(v);
            lock(&vectors.data)[spans.vectors].copy_from_slice(w);
        }
        self.update(|s| s.launches += 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::KernelSource;

    const SOURCE: KernelSource = KernelSource {
        name: "test.cu",
        code: "",
    };

    /// Doubles its input's bytes.
    fn double(inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![inputs[0].iter().map(|b| b.wrapping_mul(2)).collect()])
    }

    fn kernel<'b>(input: &'b DeviceBuffer, output: &'b DeviceBuffer) -> Launch<'b> {
        Launch {
            source: SOURCE,
            kernel: "double_u8".into(),
            n: input.len(),
            args: vec![KernelArg::In(input), KernelArg::Out(output)],
            shape: crate::device::LaunchShape::Elementwise,
            reference: &double,
        }
    }

    fn costs() -> crate::device::DeviceCosts {
        crate::device::DeviceCosts {
            link_bytes_per_s: 1e9,
            link_latency_s: 0.0,
            launch_s: 0.0,
            elements_per_s: 1e9,
        }
    }

    fn device() -> SimulatedDevice {
        SimulatedDevice::new(SimulatedDeviceConfig {
            capacity: 1 << 20,
            costs: costs(),
            ..Default::default()
        })
    }

    #[test]
    fn ordered_work_on_three_queues_computes_and_overlaps() {
        let dev = device();
        let mut results = Vec::new();
        let mut pending = Vec::new();
        for batch in 0..4u8 {
            let input = dev.alloc_on(Queue::Upload, 1000).unwrap();
            dev.upload_on(Queue::Upload, &[batch; 1000], &input)
                .unwrap();
            dev.wait(Queue::Compute, &dev.record(Queue::Upload).unwrap())
                .unwrap();
            let output = dev.alloc_on(Queue::Compute, 1000).unwrap();
            dev.launch_on(Queue::Compute, &kernel(&input, &output))
                .unwrap();
            dev.wait(Queue::Download, &dev.record(Queue::Compute).unwrap())
                .unwrap();
            pending.push(dev.start_download(Queue::Download, &output, 1000).unwrap());
        }
        for p in pending {
            let mut out = vec![0u8; 1000];
            dev.finish_download(p, &mut out).unwrap();
            results.push(out[0]);
        }
        assert_eq!(results, [0, 2, 4, 6]);
        let s = dev.stats();
        // Twelve works of 1 µs each; with three queues overlapping, the four
        // batches take 4 + 2 µs (a pipeline of depth three: fill and drain).
        assert_eq!(s.serial_ns, 12_000);
        assert_eq!(s.modelled_ns, 6_000);
    }

    #[test]
    fn a_kernel_reading_an_upload_it_did_not_wait_for_is_a_race() {
        let dev = device();
        let input = dev.alloc_on(Queue::Upload, 10).unwrap();
        dev.upload_on(Queue::Upload, &[1; 10], &input).unwrap();
        let output = dev.alloc_on(Queue::Compute, 10).unwrap();
        let e = dev
            .launch_on(Queue::Compute, &kernel(&input, &output))
            .unwrap_err();
        assert!(
            e.to_string().contains(
                "kernel on the compute queue is not ordered after the upload on the upload queue"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_download_not_ordered_after_its_kernel_is_a_race() {
        let dev = device();
        let input = dev.alloc(10).unwrap();
        dev.upload(&[1; 10], &input).unwrap();
        let output = dev.alloc(10).unwrap();
        dev.launch(&kernel(&input, &output)).unwrap();
        let e = dev
            .start_download(Queue::Download, &output, 10)
            .unwrap_err();
        assert!(
            e.to_string().contains("not ordered after the kernel"),
            "{e}"
        );
        // Waiting for the compute queue makes it legal.
        dev.wait(Queue::Download, &dev.record(Queue::Compute).unwrap())
            .unwrap();
        let p = dev.start_download(Queue::Download, &output, 10).unwrap();
        let mut out = [0u8; 10];
        dev.finish_download(p, &mut out).unwrap();
        assert_eq!(out, [2; 10]);
    }

    #[test]
    fn overwriting_a_buffer_a_kernel_may_still_read_is_a_race() {
        let dev = device();
        let input = dev.alloc(10).unwrap();
        dev.upload(&[1; 10], &input).unwrap();
        let output = dev.alloc(10).unwrap();
        dev.launch(&kernel(&input, &output)).unwrap();
        dev.wait(Queue::Upload, &dev.record(Queue::Compute).unwrap())
            .unwrap();
        // Ordered after the kernel: fine.
        dev.upload_on(Queue::Upload, &[3; 10], &input).unwrap();
        dev.wait(Queue::Compute, &dev.record(Queue::Upload).unwrap())
            .unwrap();
        dev.launch(&kernel(&input, &output)).unwrap();
        // Not ordered after the second kernel: a race.
        let e = dev.upload_on(Queue::Upload, &[5; 10], &input).unwrap_err();
        assert!(e.to_string().contains("upload on the upload queue"), "{e}");
    }

    #[test]
    fn a_buffer_allocated_for_one_queue_is_first_used_there() {
        let dev = device();
        let buf = dev.alloc_on(Queue::Compute, 10).unwrap();
        assert!(dev.upload_on(Queue::Upload, &[0; 10], &buf).is_err());
        let buf = dev.alloc_on(Queue::Upload, 10).unwrap();
        dev.upload_on(Queue::Upload, &[0; 10], &buf).unwrap();
    }

    #[test]
    fn device_copies_check_their_buffers_and_ranges() {
        let dev = device();
        let (a, b) = (dev.alloc(8).unwrap(), dev.alloc(8).unwrap());
        dev.upload(&[7; 8], &a).unwrap();
        assert!(
            dev.copy_on(Queue::Compute, &a, 0, &a, 4, 4).is_err(),
            "same buffer"
        );
        assert!(
            dev.copy_on(Queue::Compute, &a, 6, &b, 0, 4).is_err(),
            "source range"
        );
        assert!(
            dev.copy_on(Queue::Compute, &a, 0, &b, 6, 4).is_err(),
            "destination range"
        );
        dev.copy_on(Queue::Compute, &a, 4, &b, 2, 4).unwrap();
        let mut out = [0u8; 8];
        dev.download(&b, &mut out).unwrap();
        assert_eq!(out, [0, 0, 7, 7, 7, 7, 0, 0]);
    }

    #[test]
    fn foreign_buffers_events_and_downloads_are_errors() {
        let (a, b) = (device(), device());
        let buf = b.alloc(4).unwrap();
        assert!(a.upload(&[0; 4], &buf).is_err());
        let ev = b.record(Queue::Compute).unwrap();
        assert!(a.wait(Queue::Upload, &ev).is_err());
        assert!(a.host_wait(&ev).is_err());
        let p = b.start_download(Queue::Compute, &buf, 4).unwrap();
        assert!(a.finish_download(p, &mut [0; 4]).is_err());
        let p = b.start_download(Queue::Compute, &buf, 4).unwrap();
        assert!(b.finish_download(p, &mut [0; 3]).is_err(), "wrong length");
    }

    #[test]
    fn work_does_not_start_before_the_host_waited_for_what_it_enqueues_after() {
        let dev = device();
        let buf = dev.alloc(1000).unwrap();
        dev.upload(&[0; 1000], &buf).unwrap(); // 1 µs on compute
        let p = dev.start_download(Queue::Compute, &buf, 1000).unwrap(); // ends at 2 µs
        dev.finish_download(p, &mut [0; 1000]).unwrap();
        // Enqueued after the host waited: starts at 2 µs even on an idle queue.
        let up = dev.alloc_on(Queue::Upload, 1000).unwrap();
        dev.upload_on(Queue::Upload, &[0; 1000], &up).unwrap();
        assert_eq!(dev.stats().modelled_ns, 3_000);
    }
}

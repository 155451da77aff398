//! The device executor: runs a partitioned stage on a [`Device`], batch by batch.
//!
//! Per batch, each split input is uploaded once, every call of the stage runs as
//! one kernel over device buffers (intermediates never leave the device), and
//! only escaping outputs are downloaded, straight into their preallocated merged
//! value. Batches are pipelined over the device's queues: while batch `i`
//! computes, batch `i + 1` uploads and batch `i - 1` downloads, ordered by
//! events (see [`run_partitioned`]). The batch size comes from the device's
//! free memory (or the configured budget), the stage's bytes per element and
//! the batches in flight, so data larger than the device pages through it.
//! When an allocation still fails, the batches in flight are finished, then the
//! batch is halved and retried; when a single element does not fit, the caller
//! runs the stage on the CPU.

use std::any::Any;
use std::collections::VecDeque;
use std::ops::Range;

use super::layout::{Binding, Bound};
use super::merge::merged;
use super::{call_cpu, share, Materialized};
use crate::analysis::{Source, StageAnalysis, StageWidths, Step};
use crate::device::codec::{array_dtype, codec, value_dtype, value_width, Codec, DType};
use crate::device::{
    Device, DeviceBuffer, DeviceCall, DeviceInput, KernelArg, Launch, LaunchShape, PendingDownload,
    Queue,
};
use crate::error::{Error, Result};
use crate::fasthash::FastSet;
use crate::footprint::{partials_of, Footprint, IN_FLIGHT};
use crate::op::Args;
use crate::plan::{Externals, Input, Plan, PlanNode, ValueId};
use crate::split::{ErasedAssembler, SplitKind};
use crate::value::{Held, Piece};

/// True for [`NdArraySplit`](crate::NdArraySplit), whose pieces of a 1-D
/// array are contiguous element ranges.
fn is_ndarray_split(vt: &crate::split::SplitVTable) -> bool {
    vt.split_id == std::any::TypeId::of::<crate::split::NdArraySplit>()
}

/// The kernel of a call: `{gpu}_{dtype}` with the dtype of its first float
/// argument (or of its result), `bool` for calls over masks only.
fn kernel_name(pn: &PlanNode) -> String {
    let float = |d: DType| matches!(d, DType::F32 | DType::F64);
    let arg_dtype = pn.args.iter().find_map(|a| {
        let d = match codec(a.split.value_id) {
            Some(Codec::Array { dtype, .. }) | Some(Codec::Scalar { dtype, .. }) => dtype,
            None => return None,
        };
        float(d).then_some(d)
    });
    let dtype = arg_dtype
        .or_else(|| value_dtype(pn.outputs[0].value_id).filter(|d| float(*d)))
        .unwrap_or(DType::Bool);
    format!(
        "{}_{}",
        pn.info.gpu_kernel.unwrap_or(pn.info.name),
        dtype.suffix()
    )
}

fn to_bytes(piece: &dyn Any, id: std::any::TypeId) -> Result<Vec<u8>> {
    match codec(id) {
        Some(Codec::Array { to_bytes, .. }) | Some(Codec::Scalar { to_bytes, .. }) => {
            Ok(to_bytes(piece))
        }
        _ => Err(Error::internal("an array the device can hold")),
    }
}

/// A value rebuilt from device bytes holding rows of `width` numbers.
fn from_bytes(bytes: &[u8], id: std::any::TypeId, width: usize) -> Result<Piece> {
    match codec(id) {
        Some(Codec::Array {
            from_bytes: Some(from_bytes),
            ..
        }) => Ok(from_bytes(bytes, width)),
        Some(Codec::Scalar { from_bytes, .. }) => Ok(from_bytes(bytes)),
        _ => Err(Error::internal("an array the device can hold")),
    }
}

/// Bytes per number of values of type `id` on a device (1 without a codec).
fn number_bytes(id: std::any::TypeId) -> usize {
    value_dtype(id).map_or(1, DType::size)
}

fn scalar_arg(held: &dyn Any) -> Option<KernelArg<'static>> {
    held.downcast_ref::<f64>()
        .map(|x| KernelArg::F64(*x))
        .or_else(|| held.downcast_ref::<f32>().map(|x| KernelArg::F32(*x)))
        .or_else(|| held.downcast_ref::<i32>().map(|x| KernelArg::I32(*x)))
        .or_else(|| held.downcast_ref::<u64>().map(|x| KernelArg::U64(*x)))
        .or_else(|| {
            held.downcast_ref::<usize>()
                .map(|x| KernelArg::U64(*x as u64))
        })
}

/// A batch whose work is enqueued on the device and whose outputs are still
/// being downloaded.
struct InFlight {
    range: Range<usize>,
    /// Every device buffer of the batch, kept until its downloads have finished,
    /// so that the batches after it get other blocks and never wait for it.
    buffers: Vec<DeviceBuffer>,
    /// The escaping outputs' downloads.
    downloads: Vec<Download>,
}

/// One escaping output of a batch on its way to the host.
struct Download {
    slot: usize,
    pending: PendingDownload,
    /// The call producing it (for errors).
    op: &'static str,
    /// Numbers per row of the output.
    width: usize,
    /// A device function's reduction partial: one value, not one number per block.
    one_value: bool,
}

/// Runs `stage` on `device`. `budget` caps the device bytes used;
/// `planned_batch` is the batch size placement chose.
///
/// The batches form a pipeline over the device's three queues: batch `i + 1`
/// uploads while batch `i` computes and batch `i - 1` downloads. Events order
/// each batch's kernels after its uploads and its downloads after its kernels;
/// the host finishes (copies out) a batch's downloads once `IN_FLIGHT` batches
/// are in flight.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_partitioned(
    plan: &Plan,
    analysis: &StageAnalysis,
    kept_values: &FastSet<ValueId>,
    externals: &Externals,
    done: &Materialized,
    resident: &Resident,
    device: &dyn Device,
    budget: usize,
    planned_batch: Option<usize>,
) -> Result<StageOutputs> {
    let kept_of = |input: &Input| match input {
        Input::Local(v) => resident.get(v),
        Input::External(_) => None,
    };
    let Binding { inputs, total } = Binding::of(plan, analysis, externals, done, &|i| {
        kept_of(i).map(|a| a.len)
    })?;
    // Each input's width as this evaluation has it, and the values passed
    // whole that the device holds for the whole stage (models, broadcast
    // matrices: uploaded once, before the first batch, on the upload queue
    // that every batch's kernels wait for).
    let mut input_widths = Vec::with_capacity(inputs.len());
    let mut whole = Vec::with_capacity(inputs.len());
    for (bound, input) in inputs.iter().zip(&analysis.inputs) {
        let id = input.split.value_id;
        input_widths.push(match (bound, kept_of(&input.input)) {
            (_, Some(array)) => array.width,
            (Bound::Split(h), None) => value_width(id, h.get()),
            _ => 1,
        });
        whole.push(match bound {
            Bound::Whole(h) if array_dtype(id).is_some() => {
                let bytes = to_bytes(h.get(), id)?;
                let buf = device.alloc_on(Queue::Upload, bytes.len())?;
                device.upload_on(Queue::Upload, &bytes, &buf)?;
                Some(buf)
            }
            _ => None,
        });
    }
    let (widths, known) = stage_widths(plan, analysis, &input_widths);
    let layout = Layout {
        analysis,
        on_device: analysis.inputs.iter().map(|i| kept_of(&i.input)).collect(),
        inputs,
        input_widths,
        whole,
        total,
    };
    // The outputs that stay on the device, each in one buffer for the whole
    // stage (when it fits and its width is known before the stage runs;
    // otherwise it is downloaded like any other).
    let mut kept: Vec<Option<DeviceBuffer>> = (0..analysis.slots.len()).map(|_| None).collect();
    for (s, slot) in analysis.slots.iter().enumerate() {
        if !kept_values.contains(&slot.value) || !known[s] {
            continue;
        }
        let bytes = total * widths.slots[s] * number_bytes(slot.split.value_id);
        match device.alloc_on(Queue::Compute, bytes) {
            Ok(buf) => kept[s] = Some(buf),
            Err(Error::DeviceOutOfMemory { .. }) => tracing::info!(
                op = plan.nodes[slot.value.node].info.name,
                "no device memory to keep an output for later stages: downloading it"
            ),
            Err(e) => return Err(e),
        }
    }
    // The planned batch (chosen for pipelining), unless memory allows less now.
    // (The stage-long buffers of kept outputs and whole values count against
    // the budget too.)
    let stage_bytes: usize = (kept.iter().flatten())
        .chain(layout.whole.iter().flatten())
        .map(DeviceBuffer::len)
        .sum();
    let memory = budget.saturating_sub(stage_bytes).min(device.free_memory());
    let footprint = Footprint::of(analysis, &widths, &|v| {
        kept_values.contains(&v)
            && (analysis.slots.iter().position(|s| s.value == v)).is_some_and(|s| kept[s].is_some())
    });
    let mut batch = footprint
        .batch(memory, total)
        .min(planned_batch.unwrap_or(usize::MAX))
        .max(1);
    // Fewer batches in flight when memory is tight; none fitting (a budget
    // below one element) hands the stage to the CPU, as a device too small would.
    let Some(mut depth) = footprint.in_flight(memory, batch) else {
        return Err(Error::DeviceOutOfMemory {
            requested: footprint.held + footprint.partial + footprint.transient,
            free: memory,
        });
    };

    let mut out = Outputs {
        assemblers: (0..analysis.slots.len()).map(|_| None).collect(),
        partials: (0..analysis.slots.len()).map(|_| Vec::new()).collect(),
    };
    let mut batch_io = BatchIo {
        kept: &kept,
        slot_widths: (0..analysis.slots.len())
            .map(|s| known[s].then_some(widths.slots[s]))
            .collect(),
    };
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(IN_FLIGHT);
    let mut start = 0;
    loop {
        let range = start..(start + batch).min(total);
        match enqueue_batch(plan, &layout, device, range.clone(), &mut batch_io) {
            Ok(b) => in_flight.push_back(b),
            Err(Error::DeviceOutOfMemory { requested, free }) => {
                // Nothing of a failed batch was downloaded: it is simply enqueued again.
                if !in_flight.is_empty() {
                    // Batches in flight hold memory: finish them, then retry.
                    while let Some(b) = in_flight.pop_front() {
                        finish_batch(&layout, device, b, &mut out)?;
                    }
                    continue;
                }
                if batch == 1 {
                    return Err(Error::DeviceOutOfMemory { requested, free });
                }
                batch = batch.div_ceil(2);
                depth = footprint.in_flight(memory, batch).unwrap_or(1);
                tracing::info!(
                    batch,
                    "device out of memory: halving the batch and retrying"
                );
                continue;
            }
            Err(e) => return Err(e),
        }
        start = range.end;
        if in_flight.len() >= depth {
            let oldest = in_flight.pop_front().expect("batches are in flight");
            finish_batch(&layout, device, oldest, &mut out)?;
        }
        if start >= total {
            break;
        }
    }
    while let Some(b) = in_flight.pop_front() {
        finish_batch(&layout, device, b, &mut out)?;
    }
    device.synchronize()?;

    let Outputs {
        mut assemblers,
        mut partials,
    } = out;
    let mut results = Vec::new();
    let mut on_device = Vec::new();
    for (s, slot) in analysis.slots.iter().enumerate() {
        if let Some(buf) = kept[s].take() {
            on_device.push((
                slot.value,
                DeviceArray {
                    buf,
                    len: total,
                    width: widths.slots[s],
                    value_id: slot.split.value_id,
                },
            ));
            continue;
        }
        if !slot.escaping {
            continue;
        }
        let op = plan.nodes[slot.value.node].info.name;
        let pieces = std::mem::take(&mut partials[s]);
        // SAFETY: the batches wrote disjoint ranges that tile 0..total.
        let value = unsafe { merged(slot.split, op, assemblers[s].take(), pieces) }?;
        results.push((slot.value, share(value)));
    }
    Ok(StageOutputs {
        host: results,
        device: on_device,
    })
}

/// Runs a whole-value stage on `device`: each call's device function
/// (`gpu_fn`) once, on whole values, in order. Arguments are uploaded whole
/// (values an earlier device stage kept there are read in place), results of
/// earlier calls of the stage stay on the device for later ones, and the
/// escaping results are downloaded. Every array argument is passed with its
/// width; `rows` is its row count for an argument with a partition split
/// type and `None` for one passed whole (a model, a matrix a fit reads);
/// the call's `n` is the row count of its first array argument.
pub(crate) fn run_whole(
    plan: &Plan,
    stage: &crate::plan::Stage,
    externals: &Externals,
    done: &Materialized,
    resident: &Resident,
    device: &dyn Device,
) -> Result<StageOutputs> {
    // Results of this stage's calls so far: on the device, with their widths.
    let mut local: crate::fasthash::FastMap<ValueId, (DeviceBuffer, usize)> = Default::default();
    for &node in &stage.nodes {
        let pn = &plan.nodes[node];
        let f = pn
            .info
            .gpu_fn
            .ok_or_else(|| Error::internal("a whole-value device stage of device functions"))?;
        // Where each argument is: (a device buffer of this call, or of an
        // earlier call or stage) with its width, or a scalar.
        enum Where<'v> {
            Uploaded(usize, usize, Held),
            Device(&'v DeviceBuffer, usize),
            Scalar(KernelArg<'static>),
        }
        let mut uploaded: Vec<DeviceBuffer> = Vec::new();
        let mut places = Vec::with_capacity(pn.args.len());
        for a in &pn.args {
            let id = a.split.value_id;
            let place = match a.input {
                Input::Local(v) if local.contains_key(&v) => {
                    let (buf, width) = &local[&v];
                    Where::Device(buf, *width)
                }
                Input::Local(v) if resident.contains_key(&v) => {
                    let array = &resident[&v];
                    Where::Device(&array.buf, array.width)
                }
                _ => {
                    let held = super::layout::host_value(externals, done, &a.input)?;
                    if array_dtype(id).is_some() {
                        let bytes = to_bytes(held.get(), id)?;
                        let buf = device.alloc_on(Queue::Compute, bytes.len())?;
                        device.upload(&bytes, &buf)?;
                        uploaded.push(buf);
                        let width = value_width(id, held.get());
                        Where::Uploaded(uploaded.len() - 1, width, held)
                    } else {
                        Where::Scalar(scalar_arg(held.get()).ok_or_else(|| {
                            Error::internal("a value the device can hold (checked at placement)")
                        })?)
                    }
                }
            };
            places.push(place);
        }
        let mut inputs = Vec::new();
        let mut scalars = Vec::new();
        let mut widths = Vec::with_capacity(pn.args.len());
        let mut n = None;
        for (a, place) in pn.args.iter().zip(&places) {
            let (buf, width, held) = match place {
                Where::Uploaded(k, w, h) => (&uploaded[*k], *w, Some(h)),
                Where::Device(b, w) => (*b, *w, None),
                Where::Scalar(k) => {
                    scalars.push(*k);
                    widths.push(1);
                    continue;
                }
            };
            let row_count = buf.len() / (width * number_bytes(a.split.value_id)).max(1);
            n.get_or_insert(row_count);
            let split = a.split.kind == SplitKind::Partition;
            let rows = split.then_some(row_count);
            let host = held.filter(|_| !split).map(|h| h.get());
            widths.push(width);
            inputs.push(DeviceInput {
                buf,
                rows,
                width,
                host,
            });
        }
        let n = n.unwrap_or(0);
        let host = |bytes: &[&[u8]]| -> Result<Vec<Vec<u8>>> {
            emulate_whole(pn, externals, done, &widths, bytes)
        };
        let out = f(&DeviceCall {
            device,
            n,
            inputs,
            scalars,
            host: &host,
        })?;
        local.insert(ValueId::new(node, 0), (out.buf, out.width));
    }
    let mut host = Vec::new();
    for (v, (buf, width)) in local {
        if !plan.escaping.contains(&v) {
            continue;
        }
        let mut bytes = vec![0u8; buf.len()];
        device.download(&buf, &mut bytes)?;
        let id = plan.nodes[v.node].outputs[v.output as usize].value_id;
        host.push((v, share(from_bytes(&bytes, id, width)?)));
    }
    Ok(StageOutputs {
        host,
        device: Vec::new(),
    })
}

/// The host stand-in of a call in a whole-value device stage: its CPU
/// function on values rebuilt from the array arguments' bytes (`inputs`, in
/// declaration order, `widths` per argument), scalars read from the host.
fn emulate_whole(
    pn: &PlanNode,
    externals: &Externals,
    done: &Materialized,
    widths: &[usize],
    inputs: &[&[u8]],
) -> Result<Vec<Vec<u8>>> {
    let mut next = inputs.iter();
    let mut owned: Vec<Piece> = Vec::with_capacity(pn.args.len());
    for (a, &width) in pn.args.iter().zip(widths) {
        let id = a.split.value_id;
        let bytes = match array_dtype(id) {
            Some(_) => Some(
                next.next()
                    .ok_or_else(|| Error::internal("one input buffer per array argument"))?,
            ),
            None => None,
        };
        // The host value where there is one (scalars, and values that only
        // go to devices); else the bytes of an earlier call's result.
        owned.push(match super::layout::host_value(externals, done, &a.input) {
            Ok(held) => (a.split.clone)(held.get()),
            Err(e) => match bytes {
                Some(b) => from_bytes(b, id, width)?,
                None => return Err(e),
            },
        });
    }
    cpu_result_bytes(pn, &owned)
}

/// What a device stage produced: values on the host and values kept on the device.
pub(crate) struct StageOutputs {
    pub(crate) host: Vec<(ValueId, Held)>,
    pub(crate) device: Vec<(ValueId, DeviceArray)>,
}

/// A stage output kept on the device for later device stages: `len` rows of
/// `width` numbers of the array type `value_id`, in one buffer.
pub(crate) struct DeviceArray {
    pub(crate) buf: DeviceBuffer,
    pub(crate) len: usize,
    pub(crate) width: usize,
    pub(crate) value_id: std::any::TypeId,
}

/// The values kept on the device so far in an evaluation, by (plan node, output).
pub(crate) type Resident = crate::fasthash::FastMap<ValueId, DeviceArray>;

/// Copies a value kept on the device back to the host (for a stage that runs
/// on the CPU after all).
pub(crate) fn to_host(device: &dyn Device, array: &DeviceArray) -> Result<Held> {
    let mut bytes = vec![0u8; array.len * array.width * number_bytes(array.value_id)];
    // The value was written on the compute queue: download after it.
    device.download(&array.buf, &mut bytes)?;
    Ok(share(from_bytes(&bytes, array.value_id, array.width)?))
}

/// Numbers per row of every slot of the analysed stage, from its inputs'
/// `input_widths`: a kernel's result is as wide as its arrays (it runs
/// elementwise over their numbers), so known before running; a device
/// function's is estimated as its widest split argument, and known once it
/// has run (the second vector says which are known).
fn stage_widths(
    plan: &Plan,
    analysis: &StageAnalysis,
    input_widths: &[usize],
) -> (StageWidths, Vec<bool>) {
    let mut slots = vec![1; analysis.slots.len()];
    let mut known = vec![true; analysis.slots.len()];
    for st in &analysis.steps {
        let pn = &plan.nodes[st.node];
        let (mut width, mut all_known) = (1, pn.info.gpu_fn.is_none());
        for ((src, _), a) in st.args.iter().zip(&pn.args) {
            if a.split.kind != SplitKind::Partition || array_dtype(a.split.value_id).is_none() {
                continue;
            }
            let (w, k) = match *src {
                Source::Input(i) => (input_widths[i], true),
                Source::Local(s) => (slots[s], known[s]),
            };
            width = width.max(w);
            all_known &= k;
        }
        for &s in &st.out_slots {
            slots[s] = width;
            known[s] = all_known;
        }
    }
    let widths = StageWidths {
        inputs: input_widths.to_vec(),
        slots,
    };
    (widths, known)
}

/// How a batch writes the stage's values beyond its downloads.
struct BatchIo<'s> {
    /// Slots kept on the device: their stage-long buffers.
    kept: &'s [Option<DeviceBuffer>],
    /// Numbers per row of each slot, once known (a device function's from
    /// the first batch it ran in; every later batch must agree).
    slot_widths: Vec<Option<usize>>,
}

/// A device stage's analysis bound to this evaluation's values.
struct Layout<'a> {
    analysis: &'a StageAnalysis,
    /// Where each stage input is.
    inputs: Vec<Bound>,
    /// Numbers per row of each stage input (1 for 1-D arrays and scalars).
    input_widths: Vec<usize>,
    /// The stage inputs passed whole that live on the device for the stage.
    whole: Vec<Option<DeviceBuffer>>,
    /// The stage inputs kept on the device: their values.
    on_device: Vec<Option<&'a DeviceArray>>,
    /// Elements the stage splits.
    total: usize,
}

/// The stage's escaping outputs as batches finish.
struct Outputs {
    /// In-place merged results, per slot.
    assemblers: Vec<Option<Box<dyn ErasedAssembler>>>,
    /// Reduction partials (and pieces of outputs without in-place assembly)
    /// per slot, in element order.
    partials: Vec<Vec<Piece>>,
}

/// Enqueues one batch: its uploads on the upload queue, its kernels on the
/// compute queue after them, and its escaping outputs' downloads on the
/// download queue after the kernels. Returns without waiting for any of it.
fn enqueue_batch(
    plan: &Plan,
    layout: &Layout<'_>,
    device: &dyn Device,
    range: Range<usize>,
    io: &mut BatchIo<'_>,
) -> Result<InFlight> {
    let n = range.len();
    // Upload each split input once per batch (`None`: not a device buffer,
    // e.g. the size of an allocation, passed as `n`, or a scalar).
    let mut on_device: Vec<Option<DeviceBuffer>> = Vec::with_capacity(layout.inputs.len());
    for (bound, input) in layout.inputs.iter().zip(&layout.analysis.inputs) {
        let vt = input.split;
        let held = match bound {
            Bound::Split(held) if array_dtype(vt.value_id).is_some() => held,
            _ => {
                on_device.push(None);
                continue;
            }
        };
        // An NdArraySplit piece of a contiguous array is a byte range of it:
        // upload from the array itself, with no host copies.
        let direct = match codec(vt.value_id) {
            Some(Codec::Array { range_bytes, .. }) if is_ndarray_split(vt) => {
                range_bytes(held.get(), range.clone())
            }
            _ => None,
        };
        let copied;
        let bytes = match direct {
            Some(b) => b,
            None => {
                copied = to_bytes(&*(vt.split)(held.get(), range.clone())?, vt.value_id)?;
                &copied[..]
            }
        };
        let buf = device.alloc_on(Queue::Upload, bytes.len())?;
        device.upload_on(Queue::Upload, bytes, &buf)?;
        on_device.push(Some(buf));
    }
    device.wait(Queue::Compute, &device.record(Queue::Upload)?)?;
    // This batch's piece of each value on the device: a copy on the device,
    // ordered after the stage that wrote it by the compute queue itself.
    for (k, array) in layout.on_device.iter().enumerate() {
        let Some(array) = array else { continue };
        let row = array.width * number_bytes(array.value_id);
        let buf = device.alloc_on(Queue::Compute, n * row)?;
        device.copy_on(
            Queue::Compute,
            &array.buf,
            range.start * row,
            &buf,
            0,
            n * row,
        )?;
        on_device[k] = Some(buf);
    }

    let mut slots: Vec<Option<DeviceBuffer>> =
        (0..layout.analysis.slots.len()).map(|_| None).collect();
    let mut buffers: Vec<DeviceBuffer> = Vec::new();
    let mut outputs: Vec<(usize, DeviceBuffer, &'static str, bool)> = Vec::new();
    for st in &layout.analysis.steps {
        let pn = &plan.nodes[st.node];
        let args = StepArgs::of(layout, io, st, n, &on_device, &slots)?;
        let out = if let Some(f) = pn.info.gpu_fn {
            run_device_fn(pn, layout, device, st, n, &args, f)?
        } else {
            launch_kernel(pn, layout, device, st, n, &args)?
        };
        let slot = st.out_slots[0];
        match io.slot_widths[slot] {
            Some(w) if w != out.width => {
                return Err(Error::Device(format!(
                    "`{}` returned rows of {} numbers in one batch and {w} in another",
                    pn.info.name, out.width
                )))
            }
            _ => io.slot_widths[slot] = Some(out.width),
        }
        if let Some(buf) = out.buf {
            slots[slot] = Some(buf);
        }
        for &s in &st.frees {
            let Some(buf) = slots[s].take() else { continue };
            if let Some(whole) = &io.kept[s] {
                // Stays on the device: into its place in the stage-long buffer.
                let row = buf.len() / n.max(1);
                device.copy_on(Queue::Compute, &buf, 0, whole, range.start * row, buf.len())?;
            } else if layout.analysis.slots[s].escaping {
                let one_value = pn.info.gpu_fn.is_some()
                    && layout.analysis.slots[s].split.kind == SplitKind::Reduce;
                let producer = plan.nodes[layout.analysis.slots[s].value.node].info.name;
                outputs.push((s, buf, producer, one_value));
            }
            // Anything else is freed now: the device reuses its block for the
            // next kernels on the compute queue, in queue order.
        }
    }

    // The downloads wait for the batch's kernels, not for the host.
    let mut downloads = Vec::with_capacity(outputs.len());
    if !outputs.is_empty() {
        device.wait(Queue::Download, &device.record(Queue::Compute)?)?;
    }
    for (slot, buf, op, one_value) in outputs {
        let bytes = buf.len();
        downloads.push(Download {
            slot,
            pending: device.start_download(Queue::Download, &buf, bytes)?,
            op,
            width: io.slot_widths[slot].unwrap_or(1),
            one_value,
        });
        buffers.push(buf);
    }
    buffers.extend(on_device.into_iter().flatten());
    Ok(InFlight {
        range,
        buffers,
        downloads,
    })
}

/// One call's arguments in a batch, in declaration order.
struct StepArgs<'b> {
    /// Array arguments: their buffers and widths (`rows: None` for a value
    /// passed whole).
    arrays: Vec<DeviceInput<'b>>,
    /// Scalar arguments, as kernel parameters.
    scalars: Vec<KernelArg<'b>>,
    /// The width of every argument (1 for scalars and sizes), for the host
    /// stand-in.
    widths: Vec<usize>,
}

impl<'b> StepArgs<'b> {
    fn of(
        layout: &'b Layout<'_>,
        io: &BatchIo<'_>,
        st: &Step,
        n: usize,
        inputs: &'b [Option<DeviceBuffer>],
        slots: &'b [Option<DeviceBuffer>],
    ) -> Result<StepArgs<'b>> {
        let mut args = StepArgs {
            arrays: Vec::new(),
            scalars: Vec::new(),
            widths: Vec::with_capacity(st.args.len()),
        };
        for (src, _) in &st.args {
            let (buf, rows, width, host) = match *src {
                Source::Local(s) => {
                    let buf = slots[s].as_ref().ok_or_else(|| {
                        Error::internal("a device buffer computed earlier in the batch")
                    })?;
                    (buf, Some(n), io.slot_widths[s].unwrap_or(1), None)
                }
                Source::Input(k) => match (&layout.inputs[k], &inputs[k], &layout.whole[k]) {
                    (_, Some(buf), _) => (buf, Some(n), layout.input_widths[k], None),
                    (Bound::Whole(h), None, Some(buf)) => (buf, None, 1, Some(h.get())),
                    (_, None, Some(buf)) => (buf, None, 1, None),
                    (Bound::Whole(h), None, None) => {
                        args.scalars.push(
                            scalar_arg(h.get())
                                .ok_or_else(|| Error::internal("a scalar kernel argument"))?,
                        );
                        args.widths.push(1);
                        continue;
                    }
                    // The size of an allocation: the kernel's `n`.
                    _ => {
                        args.widths.push(1);
                        continue;
                    }
                },
            };
            args.widths.push(width);
            args.arrays.push(DeviceInput {
                buf,
                rows,
                width,
                host,
            });
        }
        Ok(args)
    }
}

/// A call's result in a batch: its buffer (`None` for a reduction over no
/// elements, which writes no partial) and its width.
struct StepOutput {
    buf: Option<DeviceBuffer>,
    width: usize,
}

/// Runs a call's device function (`gpu_fn`) on the compute queue.
fn run_device_fn(
    pn: &PlanNode,
    layout: &Layout<'_>,
    device: &dyn Device,
    st: &Step,
    n: usize,
    args: &StepArgs<'_>,
    f: crate::device::DeviceFn,
) -> Result<StepOutput> {
    let inputs = args.arrays.clone();
    let scalars = args.scalars.to_vec();
    // The buffers hold this batch only: row 0 is `range.start`.
    let host = |inputs: &[&[u8]]| -> Result<Vec<Vec<u8>>> {
        emulate(pn, layout, st, 0..n, &args.widths, inputs)
    };
    let out = f(&DeviceCall {
        device,
        n,
        inputs,
        scalars,
        host: &host,
    })?;
    let vt = &pn.outputs[0];
    if vt.kind == SplitKind::Partition {
        let expected = n * out.width * number_bytes(vt.value_id);
        if out.buf.len() != expected {
            return Err(Error::Device(format!(
                "`{}`'s device function returned {} bytes for {n} rows of {} numbers ({expected} bytes)",
                pn.info.name,
                out.buf.len(),
                out.width
            )));
        }
    }
    Ok(StepOutput {
        buf: Some(out.buf),
        width: out.width,
    })
}

/// Enqueues a call's kernel on the compute queue. A kernel runs over the
/// numbers of its arrays: elementwise over rows of one width (so its result
/// is as wide), a reduction over 1-D arrays.
fn launch_kernel(
    pn: &PlanNode,
    layout: &Layout<'_>,
    device: &dyn Device,
    st: &Step,
    n: usize,
    args: &StepArgs<'_>,
) -> Result<StepOutput> {
    let out_vt = &pn.outputs[0];
    let out_dtype = value_dtype(out_vt.value_id)
        .ok_or_else(|| Error::internal("a result the device can hold"))?;
    let width = args.arrays.iter().map(|a| a.width).max().unwrap_or(1);
    let reduce = out_vt.kind == SplitKind::Reduce;
    if args.arrays.iter().any(|a| a.width != width) || (reduce && width != 1) {
        return Err(Error::Device(format!(
            "`{}`'s kernel cannot take rows of different widths, or reduce rows",
            pn.info.name
        )));
    }
    // A reduction writes one partial per block; an empty batch has none.
    let parts = if reduce { partials_of(n) } else { 1 };
    let out_len = if reduce { parts } else { n * width };
    let out = device.alloc_on(Queue::Compute, out_len * out_dtype.size())?;
    if parts == 0 {
        return Ok(StepOutput { buf: None, width });
    }
    let mut kernel_args: Vec<KernelArg<'_>> =
        args.arrays.iter().map(|a| KernelArg::In(a.buf)).collect();
    kernel_args.extend(args.scalars.iter().copied());
    kernel_args.push(KernelArg::Out(&out));
    let reference = |inputs: &[&[u8]]| -> Result<Vec<Vec<u8>>> {
        // One CPU call per block's share of the elements, as the kernel's blocks do.
        let mut out = Vec::new();
        for j in 0..parts {
            let sub = (n * j / parts)..(n * (j + 1) / parts);
            out.extend(emulate(pn, layout, st, sub, &args.widths, inputs)?.concat());
        }
        Ok(vec![out])
    };
    device.launch_on(
        Queue::Compute,
        &Launch {
            source: pn
                .info
                .gpu_source
                .expect("eligible stages have kernel sources"),
            kernel: kernel_name(pn),
            n: n * width,
            shape: if reduce {
                LaunchShape::Reduction { partials: parts }
            } else {
                LaunchShape::Elementwise
            },
            args: kernel_args,
            reference: &reference,
        },
    )?;
    Ok(StepOutput {
        buf: Some(out),
        width,
    })
}

/// Waits for a batch's downloads and writes them into the stage's outputs:
/// plain-number arrays straight into their merged result, the rest as pieces.
fn finish_batch(
    layout: &Layout<'_>,
    device: &dyn Device,
    batch: InFlight,
    out: &mut Outputs,
) -> Result<()> {
    let range = batch.range;
    let n = range.len();
    let mut finished: Vec<(usize, &'static str, Piece)> = Vec::new();
    for d in batch.downloads {
        let Download {
            slot: s,
            pending,
            op,
            width,
            one_value,
        } = d;
        let vt = layout.analysis.slots[s].split;
        if vt.kind == SplitKind::Partition && is_ndarray_split(vt) {
            if out.assemblers[s].is_none() {
                let empty = from_bytes(&[], vt.value_id, width)?;
                out.assemblers[s] = (vt.assembler)(layout.total, &*empty);
            }
            // SAFETY: batches are disjoint ranges within 0..total, each finished once.
            if let Some(dst) = out.assemblers[s]
                .as_ref()
                .and_then(|a| unsafe { a.pod_bytes(range.clone()) })
            {
                if pending.len() != dst.len() {
                    return Err(Error::PieceLength {
                        op,
                        expected: dst.len(),
                        found: pending.len(),
                    });
                }
                device.finish_download(pending, dst)?;
                continue;
            }
        }
        let mut bytes = vec![0u8; pending.len()];
        device.finish_download(pending, &mut bytes)?;
        if vt.kind == SplitKind::Reduce && !one_value {
            let size = number_bytes(vt.value_id);
            for chunk in bytes.chunks_exact(size) {
                out.partials[s].push(from_bytes(chunk, vt.value_id, 1)?);
            }
            continue;
        }
        if vt.kind == SplitKind::Reduce {
            out.partials[s].push(from_bytes(&bytes, vt.value_id, width)?);
            continue;
        }
        finished.push((s, op, from_bytes(&bytes, vt.value_id, width)?));
    }
    // Every download of the batch has completed: its buffers may go.
    drop(batch.buffers);
    for (s, op, piece) in finished {
        let vt = layout.analysis.slots[s].split;
        if out.assemblers[s].is_none() {
            match (vt.assembler)(layout.total, &*piece) {
                Some(a) => out.assemblers[s] = Some(a),
                // A split type without in-place assembly: keep the piece and
                // merge all of them at the end, as the CPU executor does.
                None => {
                    out.partials[s].push(piece);
                    continue;
                }
            }
        }
        let asm = out.assemblers[s].as_ref().expect("just created");
        // SAFETY: batches are disjoint ranges within 0..total, each written once.
        unsafe { asm.write(range.clone(), &*piece) }.map_err(|found| Error::PieceLength {
            op,
            expected: n,
            found,
        })?;
    }
    Ok(())
}

/// What a call's kernel (or device function) computes, done by its CPU
/// function on host copies: the stand-in for compiled kernels on simulated
/// devices. `inputs` are the array arguments' bytes in declaration order
/// (values passed whole among them, read from the host value instead);
/// `widths` the numbers per row of every argument; `range` the rows to
/// compute, within the buffers.
fn emulate(
    pn: &PlanNode,
    layout: &Layout<'_>,
    st: &Step,
    range: Range<usize>,
    widths: &[usize],
    inputs: &[&[u8]],
) -> Result<Vec<Vec<u8>>> {
    let mut owned: Vec<Piece> = Vec::with_capacity(pn.args.len());
    let mut next_input = inputs.iter();
    for (((src, _), a), &width) in st.args.iter().zip(&pn.args).zip(widths) {
        let whole = match *src {
            Source::Input(k) => match &layout.inputs[k] {
                Bound::Whole(h) => Some(h),
                _ => None,
            },
            Source::Local(_) => None,
        };
        let array = array_dtype(a.split.value_id).is_some();
        let piece: Piece = match whole {
            Some(h) => {
                if array {
                    // Its device copy is among the inputs: skip it.
                    next_input.next();
                }
                (a.split.clone)(h.get())
            }
            None if !array => Box::new(range.len()),
            None => {
                let bytes = next_input
                    .next()
                    .ok_or_else(|| Error::internal("one input buffer per array argument"))?;
                let row = width * number_bytes(a.split.value_id);
                let bytes = bytes
                    .get(range.start * row..range.end * row)
                    .ok_or_else(|| Error::internal("an input buffer covering the launch"))?;
                from_bytes(bytes, a.split.value_id, width)?
            }
        };
        owned.push(piece);
    }
    cpu_result_bytes(pn, &owned)
}

/// The call's CPU function on `args`, its results as device bytes: what the
/// host stand-ins return.
fn cpu_result_bytes(pn: &PlanNode, args: &[Piece]) -> Result<Vec<Vec<u8>>> {
    let mut args = Args::reading(args);
    let outputs = call_cpu(pn.info, pn.cpu, &mut args)?;
    outputs
        .iter()
        .zip(&pn.outputs)
        .map(|(p, vt)| to_bytes(&**p, vt.value_id))
        .collect()
}

//! Device memory of a stage, per element, from its analysis: what sizes the
//! device batches (the schedule predicts with it, the device executor runs
//! with it).

use crate::analysis::{StageAnalysis, StageWidths};
use crate::device::codec::{value_dtype, DType};
use crate::plan::ValueId;
use crate::split::SplitKind;

/// Batches a device stage keeps in flight: one uploading, one computing, one
/// downloading.
pub(crate) const IN_FLIGHT: usize = 3;

/// Most bytes of held buffers (inputs and escaping outputs) one batch has.
const MAX_BATCH_HELD_BYTES: usize = 128 << 20;

/// Elements per reduction partial (one kernel block's share, about).
const PARTIAL_ELEMENTS: usize = 1 << 16;
/// Most partials one reduction launch writes.
const MAX_PARTIALS: usize = 1024;

/// Partials a reduction launch over `n` elements writes (none for no elements).
pub(crate) fn partials_of(n: usize) -> usize {
    n.div_ceil(PARTIAL_ELEMENTS).min(MAX_PARTIALS)
}

/// Device bytes per element a stage needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footprint {
    /// Held for a batch's whole life, from its uploads to the end of its
    /// downloads: split inputs (or pieces of values kept on the device) and
    /// escaping outputs. `IN_FLIGHT` batches hold these at once.
    pub(crate) held: usize,
    /// Intermediates at their peak within a batch: freed after their last
    /// reader, and reused by the next batch's kernels in queue order.
    pub(crate) transient: usize,
    /// Bytes of one partial of every reduction: a batch holds up to
    /// `partials_of(batch)` of them until its downloads finish, whatever its size.
    pub(crate) partial: usize,
}

impl Footprint {
    /// The footprint of the analysed stage with its values `widths` numbers
    /// wide; `kept` says which of its escaping outputs stay on the device
    /// (copied into a stage-long buffer per batch, so transient within the
    /// batch). Values passed whole (models) are not per element: the device
    /// executor holds them for the stage and leaves them out of the memory
    /// it sizes batches in.
    pub(crate) fn of(
        analysis: &StageAnalysis,
        widths: &StageWidths,
        kept: &dyn Fn(ValueId) -> bool,
    ) -> Footprint {
        let held_inputs: usize = (analysis.inputs.iter().zip(&widths.inputs))
            .filter(|(i, _)| i.partitioned())
            .map(|(i, w)| i.number_bytes() * w)
            .sum();
        // A reduction kernel writes partials of one number; a device function
        // one value per batch, estimated as a row of its width.
        let partial = (analysis.slots.iter().zip(&widths.slots))
            .filter(|(s, _)| s.split.kind == SplitKind::Reduce)
            .map(|(s, w)| value_dtype(s.split.value_id).map_or(0, DType::size) * w)
            .sum();
        let mut held = held_inputs;
        let (mut live, mut peak) = (0usize, 0usize);
        let mut frees = vec![0usize; analysis.steps.len()];
        for (k, step) in analysis.steps.iter().enumerate() {
            for &s in &step.out_slots {
                let slot = &analysis.slots[s];
                let bytes = slot.number_bytes() * widths.slots[s];
                if slot.escaping && !kept(slot.value) {
                    held += bytes;
                } else {
                    live += bytes;
                    frees[slot.last_step] += bytes;
                }
            }
            peak = peak.max(live);
            live -= frees[k];
        }
        Footprint {
            held,
            transient: peak,
            partial,
        }
    }

    /// Bytes of the reduction partials `IN_FLIGHT` batches of `batch`
    /// elements hold.
    fn partials(&self, batch: usize) -> usize {
        let parts = partials_of(batch).max(1);
        self.partial * parts * IN_FLIGHT
    }

    /// How many batches of `batch` elements may be in flight within `memory`
    /// bytes (at most `IN_FLIGHT`); `None` when not even one fits.
    pub(crate) fn in_flight(&self, memory: usize, batch: usize) -> Option<usize> {
        let parts = partials_of(batch).max(1);
        let per_batch = (self.held * batch + self.partial * parts).max(1);
        let transient = self.transient.saturating_mul(batch);
        let fits = memory.saturating_sub(transient) / per_batch;
        (fits > 0 && transient <= memory).then_some(fits.min(IN_FLIGHT))
    }

    /// Elements per batch: as many as fit in `memory` bytes with `IN_FLIGHT`
    /// batches holding their buffers (and reduction partials) and the
    /// transient ones counted twice (room for the allocator's rounding); at
    /// least one, at most `total`.
    pub(crate) fn batch(&self, memory: usize, total: usize) -> usize {
        let per_element = (self.held * IN_FLIGHT + self.transient * 2).max(1);
        // The partials grow with the batch: reserve those of the largest batch
        // the memory could hold, so that the smaller one chosen fits too.
        let most = memory / per_element;
        let fits = memory.saturating_sub(self.partials(most)) / per_element;
        // Larger batches would not pipeline better, and their transfers would
        // outgrow the pinned staging memory.
        let useful = MAX_BATCH_HELD_BYTES / self.held.max(1);
        fits.min(useful).clamp(1, total.max(1))
    }
}

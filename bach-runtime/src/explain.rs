//! `explain`: what evaluating some handles would do, without running it.

use std::fmt;

use crate::error::Result;
use crate::eval::Evaluate;
use crate::graph::Graph;
use crate::plan::{Placement, Plan, StageKind};

/// The plan of an evaluation: its stages in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct Explain {
    /// The stages, in execution order.
    pub stages: Vec<StageInfo>,
}

/// One stage of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct StageInfo {
    /// Partitioned (batched) or whole.
    pub kind: StageKind,
    /// Where it runs.
    pub placement: Placement,
    /// Why it runs there.
    pub reason: String,
    /// The annotated functions it calls, in order.
    pub ops: Vec<&'static str>,
    /// Elements it splits, when known before running.
    pub elements: Option<usize>,
    /// Elements per batch (partitioned stages; on the device, the predicted
    /// batch before any out-of-memory retry).
    pub batch_size: Option<usize>,
    /// Outputs materialised whole (read by later stages or returned).
    pub materialised: usize,
    /// Of those, outputs that stay on the device for later device stages
    /// (neither downloaded nor uploaded again).
    pub kept_on_device: usize,
    /// The cost model's prediction.
    pub cost: crate::cost::StageCost,
    /// Seconds the stage took (only in [`Graph::last_run`]).
    pub measured_s: Option<f64>,
}

impl fmt::Display for Explain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.stages.iter().enumerate() {
            write!(f, "stage {i}: {:?} on {:?}", s.kind, s.placement)?;
            if let Some(n) = s.elements {
                write!(f, ", {n} elements")?;
            }
            if let Some(b) = s.batch_size {
                write!(f, " in batches of {b}")?;
            }
            write!(f, ", {} output(s) materialised", s.materialised)?;
            if s.kept_on_device > 0 {
                write!(f, ", {} kept on the device", s.kept_on_device)?;
            }
            writeln!(f, " ({})", s.reason)?;
            write!(f, "  predicted: cpu {:.3} ms", s.cost.cpu_s * 1e3)?;
            if let (Some(total), Some(c), Some(u), Some(d)) = (
                s.cost.device_s(),
                s.cost.device_compute_s,
                s.cost.upload_s,
                s.cost.download_s,
            ) {
                write!(
                    f,
                    ", device {:.3} ms ({:.3} ms up, {:.3} ms compute, {:.3} ms down, overlapped over {} batch(es); {} B up, {} B down)",
                    total * 1e3,
                    u * 1e3,
                    c * 1e3,
                    d * 1e3,
                    s.cost.batches,
                    s.cost.bytes_up,
                    s.cost.bytes_down
                )?;
            }
            if let (Placement::Gpu, Some(floor)) = (s.placement, s.cost.link_floor_s) {
                write!(f, "; link floor {:.3} ms", floor * 1e3)?;
            }
            if let Some(m) = s.measured_s {
                write!(f, "; measured {:.3} ms", m * 1e3)?;
                if let (Placement::Gpu, Some(floor)) = (s.placement, s.cost.link_floor_s) {
                    if floor > 0.0 {
                        write!(f, " ({:.2}x the link floor)", m / floor)?;
                    }
                }
            }
            writeln!(f)?;
            writeln!(f, "  {}", s.ops.join(" -> "))?;
        }
        Ok(())
    }
}

impl Graph {
    /// The plan that [`Graph::evaluate`] would run for `handles`, without running it.
    pub fn explain<E: Evaluate>(&self, handles: &E) -> Result<Explain> {
        let targets = self.targets_of(handles, "explain")?;
        let config = self.config();
        let device = self.device(&config)?;
        let mut plan = Plan::build(&targets, device.is_some())?;
        crate::exec::place(&mut plan, device.as_deref(), &config);
        Ok(Explain::of(&plan, &config, None))
    }

    /// The plan of this graph's last evaluation, with the measured seconds of
    /// each stage beside the predictions (`None` before the first evaluation).
    pub fn last_run(&self) -> Option<Explain> {
        self.last_run_slot()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Explain {
    pub(crate) fn of(
        plan: &Plan,
        config: &crate::config::Config,
        measured: Option<&[f64]>,
    ) -> Explain {
        Explain {
            stages: plan
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| StageInfo {
                    kind: s.kind,
                    placement: s.placement,
                    reason: s.reason.clone(),
                    cost: s.cost,
                    measured_s: measured.and_then(|m| m.get(i).copied()),
                    ops: s.nodes.iter().map(|&n| plan.nodes[n].info.name).collect(),
                    elements: s.count,
                    batch_size: match (s.kind, s.placement) {
                        (StageKind::Partitioned, Placement::Gpu) => s.device_batch,
                        (StageKind::Partitioned, Placement::Cpu) => {
                            Some(crate::exec::cpu::batch_size(plan, s, config))
                        }
                        (StageKind::Whole, _) => None,
                    },
                    materialised: plan
                        .escaping
                        .iter()
                        .filter(|(n, _)| s.nodes.contains(n))
                        .count(),
                    kept_on_device: plan
                        .resident
                        .iter()
                        .filter(|(n, _)| s.nodes.contains(n))
                        .count(),
                })
                .collect(),
        }
    }
}

/// [`Graph::explain`] in the thread's current graph.
pub fn explain<E: Evaluate>(handles: &E) -> Result<Explain> {
    Graph::current().explain(handles)
}

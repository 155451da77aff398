//! Formatting a plan, its schedule and (after a run) its report as an
//! [`Explain`]: what `explain` and `last_run` return. Nothing is decided here.

use std::fmt;

use crate::plan::{Plan, StageKind, ValueId};
use crate::report::RunReport;
use crate::schedule::{Placement, Schedule};

/// The plan of an evaluation: its stages in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct Explain {
    /// The stages, in execution order.
    pub stages: Vec<StageInfo>,
    /// True when the plan and schedule were reused from an earlier evaluation
    /// of the same shape of graph (the plan cache), not made anew.
    pub reused_plan: bool,
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
    /// The predicted crossover: the fewest elements from which the device
    /// would run this stage faster than the CPU (`None`: the stage cannot
    /// run on the device, there is none, or the device is never predicted
    /// faster).
    pub crossover: Option<usize>,
    /// Seconds the stage took (only in [`Graph::last_run`](crate::Graph::last_run)).
    pub measured_s: Option<f64>,
}

impl fmt::Display for Explain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reused_plan {
            writeln!(
                f,
                "(plan reused from an earlier evaluation of the same shape)"
            )?;
        }
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
            if let (Placement::Device, Some(floor)) = (s.placement, s.cost.link_floor_s) {
                write!(f, "; link floor {:.3} ms", floor * 1e3)?;
            }
            match (s.crossover, s.cost.device_s()) {
                (Some(n), _) => write!(f, "; device predicted faster from {n} elements")?,
                (None, Some(_)) => write!(f, "; device never predicted faster")?,
                (None, None) => {}
            }
            if let Some(m) = s.measured_s {
                write!(f, "; measured {:.3} ms", m * 1e3)?;
                if let (Placement::Device, Some(floor)) = (s.placement, s.cost.link_floor_s) {
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

impl Explain {
    /// The stages of `plan` as `schedule` places them, with what happened
    /// when they ran (`report`, after an evaluation).
    pub(crate) fn of(
        plan: &Plan,
        schedule: &Schedule,
        report: Option<&RunReport>,
        reused_plan: bool,
    ) -> Explain {
        let stages = (plan.stages.iter().zip(&schedule.stages))
            .enumerate()
            .map(|(i, (s, placed))| {
                let ran = report.and_then(|r| r.stages.get(i));
                let fallback = ran.and_then(|r| r.fallback.clone());
                let produced = |set: &dyn Fn(&ValueId) -> bool| {
                    s.nodes
                        .iter()
                        .flat_map(|&n| {
                            (0..plan.nodes[n].outputs.len() as u32).map(move |o| ValueId::new(n, o))
                        })
                        .filter(|v| set(v))
                        .count()
                };
                StageInfo {
                    kind: s.kind,
                    placement: match fallback {
                        Some(_) => Placement::Cpu,
                        None => placed.placement,
                    },
                    reason: fallback.unwrap_or_else(|| placed.reason.clone()),
                    cost: placed.cost,
                    crossover: placed.crossover,
                    measured_s: ran.map(|r| r.measured_s),
                    ops: s.nodes.iter().map(|&n| plan.nodes[n].info.name).collect(),
                    elements: s.count,
                    batch_size: match s.kind {
                        StageKind::Partitioned => placed.batch,
                        StageKind::Whole => None,
                    },
                    materialised: produced(&|v| plan.escaping.contains(v)),
                    kept_on_device: produced(&|v| schedule.kept.contains(v)),
                }
            })
            .collect();
        Explain {
            stages,
            reused_plan,
        }
    }
}

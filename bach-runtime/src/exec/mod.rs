//! Execution of a [`Plan`]: stage by stage, each on its placement's backend.
//!
//! Values that escape a stage are kept in a [`Materialized`] map for the
//! stages that read them; everything else lives only as per-batch pieces.

pub(crate) mod cpu;
pub(crate) mod layout;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::op::{Args, OpInfo};
use crate::plan::{Input, Plan, StageKind};
use crate::value::{Held, Piece};

/// Whole values produced by the stages run so far, by (plan node, output).
pub(crate) type Materialized = HashMap<(usize, u32), Held>;

/// Runs every stage of `plan`; returns the targets' values in order.
pub(crate) fn run(plan: &Plan, graph: &Graph) -> Result<Vec<Held>> {
    let config: Config = graph.config();
    let mut done: Materialized = HashMap::new();
    let pool = graph.pool(config.threads)?;
    for stage in &plan.stages {
        let outputs = match (stage.kind, &pool) {
            (StageKind::Partitioned, Some(p)) => p.install(|| cpu::run_partitioned(plan, stage, &done, &config))?,
            (StageKind::Partitioned, None) => cpu::run_partitioned(plan, stage, &done, &config)?,
            (StageKind::Whole, _) => cpu::run_whole(plan, stage, &done)?,
        };
        done.extend(outputs);
    }
    plan.targets
        .iter()
        .map(|t| match t {
            Input::External(h) => Ok(h.clone()),
            Input::Local(i, o) => done.get(&(*i, *o)).cloned().ok_or(Error::TypeMismatch {
                expected: "a materialised target",
            }),
        })
        .collect()
}

/// Calls an annotated function's CPU implementation, turning a panic into
/// [`Error::Panic`] named after the function.
pub(crate) fn call_cpu(info: &OpInfo, cpu: crate::op::CpuFn, args: &mut Args<'_>) -> Result<Vec<Piece>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cpu(args))) {
        Ok(r) => r,
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "non-string panic payload".to_string()
            };
            Err(Error::Panic { op: info.name, message })
        }
    }
}

/// A whole materialised value as a shared [`Held`].
pub(crate) fn share(piece: Piece) -> Held {
    Held::Shared(Arc::from(piece))
}

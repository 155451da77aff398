//! What an evaluation did, stage by stage: measured, never predicted. The
//! executors write it; `explain.rs` only formats it beside the plan and the
//! schedule.

/// One stage as it ran.
#[derive(Debug, Clone)]
pub(crate) struct StageRun {
    /// Seconds the stage took.
    pub(crate) measured_s: f64,
    /// Why a stage scheduled on the device ran on the CPU after all.
    pub(crate) fallback: Option<String>,
}

/// Every stage of one evaluation, in execution order.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunReport {
    pub(crate) stages: Vec<StageRun>,
}

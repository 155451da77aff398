//! Cached plans: programs that evaluate the same shape of graph again and
//! again (a loop over batches of incoming data, a service) pay for planning,
//! analysis, calibration and scheduling once, as a JIT cache does.
//!
//! A shape is what the plan and the schedule depend on: the calls (function,
//! annotation), how their arguments connect, their split types and element
//! counts, the targets, the settings, the device, and the calibrated costs'
//! generation. Entries are found by a hash of the shape and confirmed by
//! comparing it in full, so a hash collision costs a miss, never a wrong plan.
//! The device's free memory is read when a shape is first scheduled; the
//! device executor checks it again on every run.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::analysis::StageAnalysis;
use crate::config::Config;
use crate::device::Device;
use crate::fasthash::{FastMap, FxHasher};
use crate::op::OpInfo;
use crate::plan::{Input, Plan, Snapshot};
use crate::schedule::Schedule;

/// Everything decided before running: the plan, its stage analyses and its
/// schedule.
pub(crate) struct Prepared {
    pub(crate) plan: Plan,
    pub(crate) analyses: Vec<StageAnalysis>,
    pub(crate) schedule: Schedule,
    /// What the schedule was made for besides the plan.
    context: Context,
}

/// The settings, device and cost figures a schedule depends on.
#[derive(Clone, PartialEq)]
struct Context {
    config: Config,
    /// The device's address (its identity within the process), 0 for none.
    device: usize,
    generation: u64,
}

impl Context {
    fn of(config: &Config, device: Option<&Arc<dyn Device>>) -> Context {
        Context {
            config: config.clone(),
            device: device.map_or(0, |d| Arc::as_ptr(d) as *const () as usize),
            generation: crate::calibrate::generation(),
        }
    }
}

impl Prepared {
    pub(crate) fn new(
        plan: Plan,
        analyses: Vec<StageAnalysis>,
        schedule: Schedule,
        config: &Config,
        device: Option<&Arc<dyn Device>>,
    ) -> Prepared {
        Prepared {
            plan,
            analyses,
            schedule,
            context: Context::of(config, device),
        }
    }

    /// True when this was prepared for `snapshot`'s shape under `context`.
    fn fits(&self, snapshot: &Snapshot, context: &Context) -> bool {
        self.context == *context
            && self.plan.targets == snapshot.targets
            && self.plan.nodes.len() == snapshot.nodes.len()
            && (self.plan.nodes.iter())
                .zip(&snapshot.nodes)
                .all(|(a, b)| a.same_shape(b))
    }
}

/// Entries kept before the cache starts over (programs have few shapes; a
/// program with endlessly many pays a plan per shape, as without a cache).
const CAPACITY: usize = 256;

/// Prepared plans by shape.
#[derive(Default)]
pub(crate) struct PlanCache {
    entries: FastMap<u64, Vec<Arc<Prepared>>>,
    len: usize,
}

impl PlanCache {
    /// The plan prepared earlier for `snapshot`'s shape on `device` under
    /// `config`, with its key; `None` (and the key to insert under) on a miss.
    pub(crate) fn find(
        &self,
        snapshot: &Snapshot,
        config: &Config,
        device: Option<&Arc<dyn Device>>,
    ) -> (Option<Arc<Prepared>>, u64) {
        let context = Context::of(config, device);
        let key = shape_hash(snapshot, &context);
        let found = (self.entries.get(&key))
            .and_then(|bucket| bucket.iter().find(|p| p.fits(snapshot, &context)))
            .cloned();
        (found, key)
    }

    /// Keeps `prepared` under `key` (from [`PlanCache::find`]).
    pub(crate) fn insert(&mut self, key: u64, prepared: Arc<Prepared>) {
        if self.len >= CAPACITY {
            self.entries.clear();
            self.len = 0;
        }
        self.entries.entry(key).or_default().push(prepared);
        self.len += 1;
    }

    /// Forgets every entry.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.len = 0;
    }
}

/// A hash of everything [`Prepared::fits`] compares.
fn shape_hash(snapshot: &Snapshot, context: &Context) -> u64 {
    let mut h = FxHasher::default();
    for n in &snapshot.nodes {
        // Addresses only: `fits` compares in full.
        (n.cpu as usize).hash(&mut h);
        (n.info as *const OpInfo as usize).hash(&mut h);
        n.count.hash(&mut h);
        n.element_bytes.hash(&mut h);
        n.width.hash(&mut h);
        for a in &n.args {
            a.input.hash(&mut h);
            a.width.hash(&mut h);
            (a.split as *const _ as usize).hash(&mut h);
            a.mutated.hash(&mut h);
        }
        for o in &n.outputs {
            (*o as *const _ as usize).hash(&mut h);
        }
    }
    for t in &snapshot.targets {
        match t {
            Input::Local(v) => v.hash(&mut h),
            Input::External(k) => (usize::MAX - k).hash(&mut h),
        }
    }
    let c = &context.config;
    (c.batch_size, c.threads, c.cache_bytes, c.device_memory).hash(&mut h);
    (c.device as u8).hash(&mut h);
    (context.device, context.generation).hash(&mut h);
    h.finish()
}

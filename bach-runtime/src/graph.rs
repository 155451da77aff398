//! [`Graph`]: the owner of evaluation. It holds the settings, the device, the
//! worker pool, the cached plans and the last run, and drives the steps for
//! both [`Graph::evaluate`] and [`Graph::explain`]:
//!
//! ```text
//! recorded nodes --snapshot--> Snapshot --group--> Plan --analyse--> StageAnalysis
//!        (record.rs)             (plan.rs)                             (analysis.rs)
//!   --schedule--> Schedule --run--> values + RunReport --format--> Explain
//!   (schedule.rs)             (exec/)                               (explain.rs)
//! ```
//!
//! Everything before running depends only on the graph's shape and is cached
//! per shape (`cache.rs`).

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::analysis::StageAnalysis;
use crate::cache::{PlanCache, Prepared};
use crate::config::{Config, DevicePolicy};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::{Evaluate, Target, Values};
use crate::exec::{self, Context};
use crate::explain::Explain;
use crate::plan::{self, Externals, Input, Plan, PlanNode, ValueId};
use crate::record::{self, Node, State};
use crate::report::RunReport;
use crate::value::Held;

/// What a graph keeps between evaluations.
struct Session {
    id: u64,
    config: RwLock<Config>,
    device: Mutex<Option<Arc<dyn Device>>>,
    pool: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>>,
    plans: Mutex<PlanCache>,
    last_run: Mutex<Option<LastRun>>,
}

/// The last evaluation: what was planned and what happened.
struct LastRun {
    prepared: Arc<Prepared>,
    reused: bool,
    report: RunReport,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks is replaced whole, so a panic while one
    // was held cannot leave it half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A task graph: the identity that handles are checked against, and the
/// settings, device and caches its evaluations use. Each thread has a default
/// graph; stubs record into the thread's current graph ([`Graph::enter`]
/// changes it for a scope).
#[derive(Clone)]
pub struct Graph {
    inner: Arc<Session>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").field("id", &self.inner.id).finish()
    }
}

thread_local! {
    /// The thread's current graph, once asked for (its id may be taken
    /// earlier, by recording).
    static CURRENT: RefCell<Option<Graph>> = const { RefCell::new(None) };
}

impl Default for Graph {
    fn default() -> Self {
        Graph::new()
    }
}

impl Graph {
    /// A new, empty graph with settings from the environment ([`Config::from_env`]).
    pub fn new() -> Graph {
        Graph::with_config(Config::from_env())
    }

    /// A new graph with the given settings.
    pub fn with_config(config: Config) -> Graph {
        Graph::with_id(record::next_id(), config)
    }

    fn with_id(id: u64, config: Config) -> Graph {
        Graph {
            inner: Arc::new(Session {
                id,
                config: RwLock::new(config),
                device: Mutex::new(None),
                pool: Mutex::new(None),
                plans: Mutex::new(PlanCache::default()),
                last_run: Mutex::new(None),
            }),
        }
    }

    /// The thread's current graph (its default graph unless inside [`Graph::enter`]).
    pub fn current() -> Graph {
        CURRENT.with(|c| {
            c.borrow_mut()
                .get_or_insert_with(|| Graph::with_id(record::current_id(), Config::from_env()))
                .clone()
        })
    }

    /// Makes this graph the thread's current graph while `f` runs.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Graph>, u64);
        impl Drop for Restore {
            fn drop(&mut self) {
                record::set_current_id(self.1);
                let prev = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = prev);
            }
        }
        let prev = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let prev_id = record::set_current_id(self.id());
        let _restore = Restore(prev, prev_id);
        f()
    }

    /// This graph's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// A copy of this graph's settings.
    pub fn config(&self) -> Config {
        self.inner
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces this graph's settings.
    pub fn set_config(&self, config: Config) {
        *self.inner.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        lock(&self.inner.plans).clear();
    }

    /// Runs this graph's GPU-eligible stages on `device` (a CUDA device, or a
    /// [`SimulatedDevice`](crate::SimulatedDevice) in tests) instead of the one
    /// discovered automatically; `None` goes back to discovery.
    pub fn set_device(&self, device: Option<Arc<dyn Device>>) {
        *lock(&self.inner.device) = device;
        lock(&self.inner.plans).clear();
    }

    /// The device this graph uses for GPU stages under `config`, or why
    /// there is none.
    fn device(&self, config: &Config) -> Result<Option<Arc<dyn Device>>> {
        if config.device == DevicePolicy::Cpu {
            return Ok(None);
        }
        if let Some(d) = lock(&self.inner.device).clone() {
            return Ok(Some(d));
        }
        match (crate::device::default_device(), config.device) {
            (Ok(d), _) => Ok(Some(d.clone())),
            (Err(reason), DevicePolicy::Device) => Err(Error::DeviceUnavailable(reason.clone())),
            (Err(_), _) => Ok(None),
        }
    }

    /// The rayon pool for `threads` workers (`None`: rayon's global pool).
    fn pool(&self, threads: Option<usize>) -> Result<Option<Arc<rayon::ThreadPool>>> {
        let Some(n) = threads else { return Ok(None) };
        let mut pool = lock(&self.inner.pool);
        if let Some((m, p)) = &*pool {
            if *m == n {
                return Ok(Some(p.clone()));
            }
        }
        let p = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| Error::ThreadPool(format!("{n} threads: {e}")))?;
        let p = Arc::new(p);
        *pool = Some((n, p.clone()));
        Ok(Some(p))
    }

    /// The (node, output) pairs `handles` stand for, all of which must belong
    /// to this graph (`context` names the caller in the error).
    fn targets_of<E: Evaluate>(&self, handles: &E, context: &str) -> Result<Vec<(Arc<Node>, u32)>> {
        let mut wanted = Vec::with_capacity(4);
        handles.targets(&mut wanted);
        let targets: Vec<(Arc<Node>, u32)> =
            wanted.into_iter().map(|Target(n, o)| (n, o)).collect();
        if let Some((n, _)) = targets.iter().find(|(n, _)| n.graph != self.id()) {
            return Err(Error::ForeignGraph {
                context: context.into(),
                handle_graph: n.graph,
                graph: self.id(),
            });
        }
        Ok(targets)
    }

    /// The prepared plan for `targets` (from the cache when this shape was
    /// prepared before) and the values this evaluation reads.
    fn prepare(
        &self,
        targets: &[(Arc<Node>, u32)],
        config: &Config,
        device: Option<&Arc<dyn Device>>,
    ) -> Result<(Arc<Prepared>, Externals, bool)> {
        let snapshot = plan::snapshot(targets)?;
        let (found, key) = lock(&self.inner.plans).find(&snapshot, config, device);
        if let Some(prepared) = found {
            return Ok((prepared, snapshot.externals, true));
        }
        // With a device, calls it can and cannot run never share a stage.
        let capability = device.map(|_| crate::schedule::has_device_impl as fn(&PlanNode) -> bool);
        let plan = Plan::group(snapshot.nodes, snapshot.targets, capability);
        let analyses = StageAnalysis::of_plan(&plan);
        if device.is_some() {
            // Placement compares predicted costs: measure the calls not measured yet.
            crate::calibrate::calibrate(&plan);
        }
        let schedule = crate::schedule::schedule(&plan, &analyses, device.map(|d| &**d), config);
        let prepared = Arc::new(Prepared::new(plan, analyses, schedule, config, device));
        lock(&self.inner.plans).insert(key, prepared.clone());
        Ok((prepared, snapshot.externals, false))
    }

    /// Computes `handles` (a handle, a tuple, a vector or a slice of handles)
    /// and returns their values. Every handle must belong to this graph.
    ///
    /// Computed values are cached in the graph: evaluating the same handle
    /// again, or a handle that reads it, does not recompute it.
    pub fn evaluate<E: Evaluate>(&self, handles: E) -> Result<E::Output> {
        let targets = self.targets_of(&handles, "evaluate")?;
        let config = self.config();
        let device = self.device(&config)?;
        let (prepared, externals, reused) = self.prepare(&targets, &config, device.as_ref())?;
        let pool = self.pool(config.threads)?;
        let ctx = Context {
            config: &config,
            device: device.as_ref(),
            pool: pool.as_deref(),
        };
        let p = &*prepared;
        let outcome = exec::run(&p.plan, &p.analyses, &p.schedule, &externals, &ctx)?;
        // Cache every target call whole (all its outputs were materialised);
        // the node then drops its inputs, which frees upstream nodes nothing
        // else needs.
        for ((node, _), input) in targets.iter().zip(&p.plan.targets) {
            let Input::Local(v) = input else {
                continue;
            };
            let all: Option<smallvec::SmallVec<[Held; 1]>> = (0..node.outputs.len() as u32)
                .map(|o| outcome.done.get(&ValueId::new(v.node, o)).cloned())
                .collect();
            let mut state = node.lock();
            if let (State::Pending(_), Some(all)) = (&*state, all) {
                *state = State::Done(all);
            }
        }
        *lock(&self.inner.last_run) = Some(LastRun {
            prepared: prepared.clone(),
            reused,
            report: outcome.report,
        });
        // Nothing but the nodes may hold the results now, so that `finish`
        // moves them out instead of copying.
        drop(outcome.done);
        drop(externals);
        drop(targets);
        handles.finish(&mut Values(outcome.values.into_iter()))
    }

    /// The plan that [`Graph::evaluate`] would run for `handles`, without running it.
    pub fn explain<E: Evaluate>(&self, handles: &E) -> Result<Explain> {
        let targets = self.targets_of(handles, "explain")?;
        let config = self.config();
        let device = self.device(&config)?;
        let (prepared, _, reused) = self.prepare(&targets, &config, device.as_ref())?;
        Ok(Explain::of(
            &prepared.plan,
            &prepared.schedule,
            None,
            reused,
        ))
    }

    /// The plan of this graph's last evaluation, with the measured seconds of
    /// each stage beside the predictions (`None` before the first evaluation).
    pub fn last_run(&self) -> Option<Explain> {
        let last = lock(&self.inner.last_run);
        let last = last.as_ref()?;
        let p = &last.prepared;
        Some(Explain::of(
            &p.plan,
            &p.schedule,
            Some(&last.report),
            last.reused,
        ))
    }
}

/// Computes `handles` in the thread's current graph. See [`Graph::evaluate`].
///
/// ```
/// use bach_runtime::{evaluate, Lazy};
/// let x = Lazy::new(ndarray::array![1.0, 2.0]);
/// assert_eq!(evaluate(&x).unwrap(), ndarray::array![1.0, 2.0]);
/// ```
pub fn evaluate<E: Evaluate>(handles: E) -> Result<E::Output> {
    Graph::current().evaluate(handles)
}

/// [`Graph::explain`] in the thread's current graph.
pub fn explain<E: Evaluate>(handles: &E) -> Result<Explain> {
    Graph::current().explain(handles)
}

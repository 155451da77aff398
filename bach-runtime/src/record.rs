//! Recording: the nodes of the lazy task graph, handles ([`Lazy`]), and the
//! [`CallBuilder`] that generated stubs use to record calls.
//!
//! The graph is a DAG of reference-counted nodes: a handle owns its node, and a
//! node owns the nodes it reads. Dropping every handle of a computation frees
//! it without running anything. Nodes carry the id of the graph they were
//! recorded in: the thread's current graph id, kept here ([`current_id`]);
//! the [`Graph`](crate::Graph) that owns the id lives above (`graph.rs`).

use smallvec::SmallVec;
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::op::{CpuFn, OpInfo};
use crate::split::{SplitType, SplitVTable};
use crate::value::{Held, Value};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A new graph or node id, unique in the process.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

thread_local! {
    /// The id of the thread's current graph; 0 before the thread records or
    /// evaluates anything.
    static CURRENT_ID: Cell<u64> = const { Cell::new(0) };
}

/// The id of the thread's current graph (the default graph's id is taken on
/// first need).
pub(crate) fn current_id() -> u64 {
    CURRENT_ID.with(|id| {
        if id.get() == 0 {
            id.set(next_id());
        }
        id.get()
    })
}

/// Makes `id` the thread's current graph id; returns the one before.
pub(crate) fn set_current_id(id: u64) -> u64 {
    CURRENT_ID.with(|c| c.replace(id))
}

/// One recorded value: a source (a value the user passed in) or a call.
pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) graph: u64,
    /// Split type of each output of a call: the return value, then mutated arguments.
    pub(crate) outputs: SmallVec<[&'static SplitVTable; 1]>,
    pub(crate) state: Mutex<State>,
}

pub(crate) enum State {
    /// Not yet computed.
    Pending(Call),
    /// Materialised outputs (a source has one).
    Done(SmallVec<[Held; 1]>),
}

#[derive(Clone)]
pub(crate) struct Call {
    pub(crate) info: &'static OpInfo,
    pub(crate) cpu: CpuFn,
    pub(crate) args: SmallVec<[CallArg; 2]>,
    /// A problem found while recording, reported when the call is evaluated.
    /// Boxed: rare, and it would double the size of every node.
    pub(crate) error: Option<Box<Error>>,
}

#[derive(Clone)]
pub(crate) struct CallArg {
    pub(crate) input: ArgInput,
    pub(crate) split: &'static SplitVTable,
    pub(crate) mutated: bool,
}

/// Where a recorded argument comes from.
#[derive(Clone)]
pub(crate) enum ArgInput {
    /// Output `.1` of another node (a call, or the source behind a handle).
    Node(Arc<Node>, u32),
    /// A plain value passed to the stub (owned or borrowed): held by the
    /// call itself, so that it costs no node.
    Value(Held),
}

impl Node {
    fn source(graph: u64, held: Held) -> Arc<Node> {
        Arc::new(Node {
            id: next_id(),
            graph,
            outputs: SmallVec::new(),
            state: Mutex::new(State::Done(smallvec::smallvec![held])),
        })
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written
        // (it is replaced whole), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Node {
    /// Frees a chain of nodes iteratively: a long chain of recorded calls
    /// dropped recursively would overflow the stack.
    fn drop(&mut self) {
        // Inline room for the inputs of a few calls: most drops allocate nothing.
        let mut stack: SmallVec<[Arc<Node>; 8]> = SmallVec::new();
        let take = |state: &mut State, stack: &mut SmallVec<[Arc<Node>; 8]>| {
            if let State::Pending(call) = state {
                for a in call.args.drain(..) {
                    if let ArgInput::Node(n, _) = a.input {
                        // Only a node this drop frees needs a visit.
                        if Arc::strong_count(&n) == 1 {
                            stack.push(n);
                        }
                    }
                }
            }
        };
        take(
            self.state.get_mut().unwrap_or_else(|e| e.into_inner()),
            &mut stack,
        );
        while let Some(node) = stack.pop() {
            if let Ok(mut node) = Arc::try_unwrap(node) {
                take(
                    node.state.get_mut().unwrap_or_else(|e| e.into_inner()),
                    &mut stack,
                );
            }
        }
    }
}

/// A lazy value of type `T`: the result of a recorded call, computed by
/// [`evaluate`](crate::evaluate). `'a` is the lifetime of the borrowed inputs it
/// reads, so a handle can never outlive the data it will compute from.
pub struct Lazy<'a, T> {
    pub(crate) node: Arc<Node>,
    pub(crate) output: u32,
    _marker: Marker<'a, T>,
}

/// `Lazy<'a, T>` produces a `T` and is covariant in `'a`, without owning either.
type Marker<'a, T> = PhantomData<(fn() -> T, &'a ())>;

impl<'a, T> Clone for Lazy<'a, T> {
    fn clone(&self) -> Self {
        Lazy::from_node(self.node.clone(), self.output)
    }
}

impl<'a, T> std::fmt::Debug for Lazy<'a, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &*self.node.lock() {
            State::Pending(call) => call.info.name,
            State::Done(_) => "value",
        };
        write!(
            f,
            "Lazy<{}>(graph {}, node {}: {what})",
            std::any::type_name::<T>(),
            self.node.graph,
            self.node.id
        )
    }
}

impl<'a, T> Lazy<'a, T> {
    pub(crate) fn from_node(node: Arc<Node>, output: u32) -> Self {
        Lazy {
            node,
            output,
            _marker: PhantomData,
        }
    }

    /// The id of the graph this handle was recorded in.
    pub fn graph_id(&self) -> u64 {
        self.node.graph
    }

    /// True once the value has been computed (and is cached in the graph).
    pub fn is_evaluated(&self) -> bool {
        matches!(&*self.node.lock(), State::Done(_))
    }
}

impl<T: Value> Lazy<'static, T> {
    /// A handle to an owned value, recorded in the current graph.
    pub fn new(value: T) -> Self {
        Lazy::from_node(Node::source(current_id(), Held::Shared(Arc::new(value))), 0)
    }
}

impl<'a, T: Value> Lazy<'a, T> {
    /// A handle that reads `value` in place (no copy), recorded in the current graph.
    pub fn borrowed(value: &'a T) -> Self {
        let ptr: &'a (dyn std::any::Any + Send + Sync) = value;
        Lazy::from_node(
            Node::source(current_id(), Held::Borrowed(ptr as *const _)),
            0,
        )
    }
}

/// An argument of a stub: a value, a borrowed value, or a lazy handle.
pub enum Arg<'a, T> {
    /// An owned value, moved into the graph.
    Owned(T),
    /// A borrowed value, read in place when the graph runs.
    Borrowed(&'a T),
    /// The result of an earlier call.
    Lazy(Lazy<'a, T>),
}

/// Conversion into a stub argument. Stubs take `impl IntoArg<'a, T>` where the
/// CPU function takes `&T` or `T`, so the same call site compiles with plain
/// values, references and lazy handles.
pub trait IntoArg<'a, T> {
    /// The argument.
    fn into_arg(self) -> Arg<'a, T>;
}

impl<'a, T: Value> IntoArg<'a, T> for T {
    fn into_arg(self) -> Arg<'a, T> {
        Arg::Owned(self)
    }
}

impl<'a, T: Value> IntoArg<'a, T> for &'a T {
    fn into_arg(self) -> Arg<'a, T> {
        Arg::Borrowed(self)
    }
}

impl<'a, T> IntoArg<'a, T> for Lazy<'a, T> {
    fn into_arg(self) -> Arg<'a, T> {
        Arg::Lazy(self)
    }
}

impl<'a, T> IntoArg<'a, T> for &Lazy<'a, T> {
    fn into_arg(self) -> Arg<'a, T> {
        Arg::Lazy(self.clone())
    }
}

impl<'a, T: Value> IntoArg<'a, T> for &mut Lazy<'a, T> {
    fn into_arg(self) -> Arg<'a, T> {
        Arg::Lazy(self.clone())
    }
}

/// Records one call. Used by the code `#[offload]` generates; not a stable API.
pub struct CallBuilder<'a> {
    graph: u64,
    info: &'static OpInfo,
    args: SmallVec<[CallArg; 2]>,
    outputs: SmallVec<[&'static SplitVTable; 1]>,
    error: Option<Box<Error>>,
    _marker: PhantomData<&'a ()>,
}

impl<'a> CallBuilder<'a> {
    /// Starts recording a call of `info` in the current graph.
    pub fn new(info: &'static OpInfo) -> Self {
        CallBuilder {
            graph: current_id(),
            info,
            args: SmallVec::new(),
            outputs: SmallVec::new(),
            error: None,
            _marker: PhantomData,
        }
    }

    fn input<T>(&mut self, handle: &Lazy<'a, T>) -> ArgInput {
        if handle.node.graph != self.graph && self.error.is_none() {
            self.error = Some(Box::new(Error::ForeignGraph {
                context: format!("argument {} of `{}`", self.args.len(), self.info.name),
                handle_graph: handle.node.graph,
                graph: self.graph,
            }));
        }
        ArgInput::Node(handle.node.clone(), handle.output)
    }

    /// Records the next argument, split by `S`.
    pub fn arg<S: SplitType<T>, T: Value>(&mut self, arg: Arg<'a, T>) {
        let input = match arg {
            Arg::Owned(v) => ArgInput::Value(Held::owned(v)),
            Arg::Borrowed(r) => {
                let ptr: &'a (dyn std::any::Any + Send + Sync) = r;
                ArgInput::Value(Held::Borrowed(ptr as *const _))
            }
            Arg::Lazy(h) => self.input(&h),
        };
        let mut split = SplitVTable::of::<S, T>();
        if split.is_inherit() {
            // Generic split type: take the producer's output split type.
            if let ArgInput::Node(n, o) = &input {
                if let Some(vt) = n.outputs.get(*o as usize) {
                    split = *vt;
                }
            }
        }
        self.args.push(CallArg {
            input,
            split,
            mutated: false,
        });
    }

    /// Records the next argument as mutated: the call reads `current` and
    /// produces its new version (fetch it with [`Recorded::output`]).
    pub fn arg_mut<S: SplitType<T>, T: Value>(&mut self, current: &Lazy<'a, T>) {
        let input = self.input(current);
        let split = SplitVTable::of::<S, T>();
        self.args.push(CallArg {
            input,
            split,
            mutated: true,
        });
        self.outputs.push(split);
    }

    /// Finishes the call: `R` is the return type, split by `S`.
    pub fn finish<S: SplitType<R>, R: Value>(mut self, cpu: CpuFn) -> Recorded<'a> {
        let mut ret = SplitVTable::of::<S, R>();
        if ret.is_inherit() {
            if let Some(a) = self
                .args
                .iter()
                .find(|a| a.split.value_id == ret.value_id && !a.split.is_inherit())
            {
                ret = a.split;
            }
        }
        self.outputs.insert(0, ret);
        let node = Arc::new(Node {
            id: next_id(),
            graph: self.graph,
            outputs: self.outputs,
            state: Mutex::new(State::Pending(Call {
                info: self.info,
                cpu,
                args: self.args,
                error: self.error,
            })),
        });
        Recorded {
            node,
            _marker: PhantomData,
        }
    }
}

/// A recorded call; hands out its outputs. Used by generated code.
pub struct Recorded<'a> {
    node: Arc<Node>,
    _marker: PhantomData<&'a ()>,
}

impl<'a> Recorded<'a> {
    /// Output `i`: 0 is the return value, `1 + k` the new version of the
    /// `k`-th mutated argument.
    pub fn output<T: Value>(&self, i: usize) -> Lazy<'a, T> {
        let vt = self
            .node
            .outputs
            .get(i)
            .expect("output index within the call's outputs");
        debug_assert_eq!(vt.value_id, std::any::TypeId::of::<T>(), "output type");
        Lazy::from_node(self.node.clone(), i as u32)
    }
}

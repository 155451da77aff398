//! `evaluate`: materialising lazy handles.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::exec;
use crate::graph::{Graph, Lazy, Node, State};
use crate::plan::Plan;
use crate::value::{Held, Value};

/// One handle to evaluate (opaque; used by [`Evaluate`] implementations).
#[doc(hidden)]
pub struct Target(pub(crate) Arc<Node>, pub(crate) u32);

/// Evaluated values, in target order (opaque; used by [`Evaluate`] implementations).
#[doc(hidden)]
pub struct Values(std::vec::IntoIter<Held>);

/// Something [`evaluate`] can materialise: a handle (taken or borrowed), a
/// tuple of handles, or a vector or slice of handles.
pub trait Evaluate {
    /// What evaluation returns.
    type Output;
    #[doc(hidden)]
    fn targets(&self, out: &mut Vec<Target>);
    #[doc(hidden)]
    fn finish(self, values: &mut Values) -> Result<Self::Output>;
}

fn into_value<T: Value>(held: Held) -> Result<T> {
    let mismatch = || Error::TypeMismatch {
        expected: std::any::type_name::<T>(),
    };
    match held {
        Held::Borrowed(_) => held.get().downcast_ref::<T>().cloned().ok_or_else(mismatch),
        Held::Shared(arc) => {
            let arc = arc.downcast::<T>().map_err(|_| mismatch())?;
            // Moved out when nothing else holds it (the common case for a
            // taken handle); copied otherwise.
            Ok(Arc::try_unwrap(arc).unwrap_or_else(|a| (*a).clone()))
        }
    }
}

impl<'a, T: Value> Evaluate for Lazy<'a, T> {
    type Output = T;
    fn targets(&self, out: &mut Vec<Target>) {
        out.push(Target(self.node.clone(), self.output));
    }
    fn finish(self, values: &mut Values) -> Result<T> {
        let held = values.0.next().expect("one value per target");
        // Release the handle (and with it, usually, the cached copy) first.
        drop(self);
        into_value(held)
    }
}

impl<'a, 'r, T: Value> Evaluate for &'r Lazy<'a, T> {
    type Output = T;
    fn targets(&self, out: &mut Vec<Target>) {
        out.push(Target(self.node.clone(), self.output));
    }
    fn finish(self, values: &mut Values) -> Result<T> {
        into_value(values.0.next().expect("one value per target"))
    }
}

impl<E: Evaluate> Evaluate for Vec<E> {
    type Output = Vec<E::Output>;
    fn targets(&self, out: &mut Vec<Target>) {
        self.iter().for_each(|e| e.targets(out));
    }
    fn finish(self, values: &mut Values) -> Result<Self::Output> {
        self.into_iter().map(|e| e.finish(values)).collect()
    }
}

impl<'r, 'a, T: Value> Evaluate for &'r [Lazy<'a, T>] {
    type Output = Vec<T>;
    fn targets(&self, out: &mut Vec<Target>) {
        self.iter().for_each(|e| e.targets(out));
    }
    fn finish(self, values: &mut Values) -> Result<Self::Output> {
        self.iter().map(|e| e.finish(values)).collect()
    }
}

macro_rules! tuple_evaluate {
    ($($name:ident),+) => {
        impl<$($name: Evaluate),+> Evaluate for ($($name,)+) {
            type Output = ($($name::Output,)+);
            #[allow(non_snake_case)]
            fn targets(&self, out: &mut Vec<Target>) {
                let ($($name,)+) = self;
                $($name.targets(out);)+
            }
            #[allow(non_snake_case)]
            fn finish(self, values: &mut Values) -> Result<Self::Output> {
                let ($($name,)+) = self;
                Ok(($($name.finish(values)?,)+))
            }
        }
    };
}
tuple_evaluate!(A);
tuple_evaluate!(A, B);
tuple_evaluate!(A, B, C);
tuple_evaluate!(A, B, C, D);
tuple_evaluate!(A, B, C, D, E);
tuple_evaluate!(A, B, C, D, E, F);

impl Graph {
    /// The (node, output) pairs `handles` stand for, all of which must belong
    /// to this graph (`context` names the caller in the error).
    pub(crate) fn targets_of<E: Evaluate>(
        &self,
        handles: &E,
        context: &str,
    ) -> Result<Vec<(Arc<Node>, u32)>> {
        let mut wanted = Vec::new();
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

    /// Computes `handles` (a handle, a tuple, a vector or a slice of handles)
    /// and returns their values. Every handle must belong to this graph.
    ///
    /// Computed values are cached in the graph: evaluating the same handle
    /// again, or a handle that reads it, does not recompute it.
    pub fn evaluate<E: Evaluate>(&self, handles: E) -> Result<E::Output> {
        let targets = self.targets_of(&handles, "evaluate")?;
        let config = self.config();
        let device = self.device(&config)?;
        let mut plan = Plan::build(&targets, device.is_some())?;
        let (values, seconds, done) = exec::run(&mut plan, self, &config, device)?;
        *self
            .last_run_slot()
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(crate::explain::Explain::of(
            &plan,
            &self.config(),
            Some(&seconds),
        ));
        // Cache every target call whole (all its outputs were materialised);
        // the node then drops its inputs, which frees upstream nodes nothing
        // else needs.
        for ((node, _), input) in targets.iter().zip(&plan.targets) {
            let crate::plan::Input::Local(i, _) = input else {
                continue;
            };
            let all: Option<Vec<Held>> = (0..node.outputs.len() as u32)
                .map(|o| done.get(&(*i, o)).cloned())
                .collect();
            let mut state = node.lock();
            if let (State::Pending(_), Some(all)) = (&*state, all) {
                *state = State::Done(all);
            }
        }
        // Nothing but the nodes may hold the results now, so that `finish`
        // moves them out instead of copying.
        drop(done);
        drop(plan);
        drop(targets);
        handles.finish(&mut Values(values.into_iter()))
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

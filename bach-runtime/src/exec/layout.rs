//! Binding a stage's analysis to this evaluation's values: where each of its
//! inputs is (a host value split per batch, a host value passed whole, or a
//! value kept on the device), and the element count the stage splits.

use super::Materialized;
use crate::analysis::StageAnalysis;
use crate::error::{Error, Result};
use crate::plan::{Externals, Input, Plan};
use crate::value::Held;

/// Where one stage input is in this evaluation.
pub(crate) enum Bound {
    /// A host value split once per batch.
    Split(Held),
    /// A host value passed whole (broadcast).
    Whole(Held),
    /// A value an earlier device stage left on the device (only device
    /// stages read these).
    OnDevice,
}

/// A stage's inputs bound to values, and the elements the stage splits.
pub(crate) struct Binding {
    pub(crate) inputs: Vec<Bound>,
    pub(crate) total: usize,
}

/// The host value of `input`, materialised before the stage.
pub(crate) fn host_value(
    externals: &Externals,
    done: &Materialized,
    input: &Input,
) -> Result<Held> {
    match input {
        Input::External(k) => Ok(externals.get(*k).clone()),
        Input::Local(v) => done
            .get(v)
            .cloned()
            .ok_or_else(|| Error::internal("an input materialised by an earlier stage")),
    }
}

impl Binding {
    /// Binds the analysed stage's inputs: host values from `externals` and
    /// `done`, device values through `on_device` (the element count of a
    /// value kept on the device). Checks that every split input has the same
    /// element count.
    pub(crate) fn of(
        plan: &Plan,
        analysis: &StageAnalysis,
        externals: &Externals,
        done: &Materialized,
        on_device: &dyn Fn(&Input) -> Option<usize>,
    ) -> Result<Binding> {
        let mut count: Option<usize> = None;
        let mut inputs = Vec::with_capacity(analysis.inputs.len());
        for input in &analysis.inputs {
            let (elements, bound) = match on_device(&input.input) {
                Some(c) => (Some(c), Bound::OnDevice),
                None => {
                    let held = host_value(externals, done, &input.input)?;
                    match input.split.elements_of(held.get()) {
                        Some(c) => (Some(c), Bound::Split(held)),
                        None => (None, Bound::Whole(held)),
                    }
                }
            };
            if let Some(c) = elements {
                match count {
                    Some(expected) if expected != c => {
                        let (node, arg) = input.first_reader;
                        return Err(Error::LengthMismatch {
                            op: plan.nodes[node].info.name,
                            arg,
                            expected,
                            found: c,
                        });
                    }
                    _ => count = Some(c),
                }
            }
            inputs.push(bound);
        }
        Ok(Binding {
            inputs,
            total: count.unwrap_or(0),
        })
    }
}

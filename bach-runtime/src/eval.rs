//! What [`evaluate`](crate::evaluate) accepts and returns: the [`Evaluate`]
//! trait over handles, tuples and vectors of handles.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::record::{Lazy, Node};
use crate::value::{Held, Value};

/// One handle to evaluate (opaque; used by [`Evaluate`] implementations).
#[doc(hidden)]
pub struct Target(pub(crate) Arc<Node>, pub(crate) u32);

/// Evaluated values, in target order (opaque; used by [`Evaluate`] implementations).
#[doc(hidden)]
pub struct Values(pub(crate) std::vec::IntoIter<Held>);

/// Something [`evaluate`](crate::evaluate) can materialise: a handle (taken or borrowed), a
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
    let mismatch = || Error::internal(format!("a result of type `{}`", std::any::type_name::<T>()));
    match held {
        Held::Borrowed(_) | Held::F64(_) | Held::F32(_) | Held::Usize(_) => {
            held.get().downcast_ref::<T>().cloned().ok_or_else(mismatch)
        }
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

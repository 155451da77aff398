//! Values that flow through the graph, type-erased.

use std::any::Any;

/// What a graph value must be: owned, shareable across the worker threads, and
/// clonable (a value read by several calls may be copied for a call that
/// mutates it).
pub trait Value: Any + Send + Sync + Clone {}
impl<T: Any + Send + Sync + Clone> Value for T {}

/// A type-erased piece (or whole value) owned by the executor.
pub type Piece = Box<dyn Any + Send + Sync>;

/// A materialised value, shared or borrowed from the user.
#[derive(Clone)]
pub(crate) enum Held {
    /// Borrowed from the caller for the lifetime of the handles that use it.
    Borrowed(*const (dyn Any + Send + Sync)),
    /// Owned by the graph.
    Shared(std::sync::Arc<dyn Any + Send + Sync>),
    /// A scalar passed by value (most stubs take some), held inline: no
    /// allocation for it.
    F64(f64),
    /// See [`Held::F64`].
    F32(f32),
    /// See [`Held::F64`].
    Usize(usize),
}

// SAFETY: `Borrowed` points at a `Send + Sync` value that outlives every handle
// that can reach it (the `'a` of `Lazy<'a, T>`), and is only read.
unsafe impl Send for Held {}
unsafe impl Sync for Held {}

impl Held {
    pub(crate) fn get(&self) -> &(dyn Any + Send + Sync) {
        match self {
            // SAFETY: see the `Send` impl: the pointee outlives the handles that
            // can reach this `Held`, and evaluation runs while a handle is borrowed.
            Held::Borrowed(p) => unsafe { &**p },
            Held::Shared(a) => &**a,
            Held::F64(x) => x,
            Held::F32(x) => x,
            Held::Usize(x) => x,
        }
    }

    /// An owned value: inline when it is one of the scalars [`Held`] holds
    /// inline, shared otherwise.
    pub(crate) fn owned<T: Any + Send + Sync>(value: T) -> Held {
        let any: &dyn Any = &value;
        if let Some(x) = any.downcast_ref::<f64>() {
            Held::F64(*x)
        } else if let Some(x) = any.downcast_ref::<f32>() {
            Held::F32(*x)
        } else if let Some(x) = any.downcast_ref::<usize>() {
            Held::Usize(*x)
        } else {
            Held::Shared(std::sync::Arc::new(value))
        }
    }
}

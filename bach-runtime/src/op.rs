//! What the generated stubs record about an annotated function: its [`OpInfo`]
//! and its type-erased CPU implementation ([`CpuFn`]), which receives pieces
//! through [`Args`].

use std::any::Any;

use crate::error::{Error, Result};
use crate::value::Piece;

/// Static facts about an annotated function, written by `#[offload]`.
#[derive(Debug, Clone, Copy)]
pub struct OpInfo {
    /// The function's name.
    pub name: &'static str,
    /// The CUDA kernel family implementing it (`gpu = "..."`), if any.
    pub gpu_kernel: Option<&'static str>,
    /// False for functions that must see whole values (a pipeline break).
    pub splittable: bool,
    /// An allocation function (zeros, ones, full): it reads no data.
    pub alloc: bool,
    /// The CUDA source that holds `gpu_kernel` (`gpu_source = ...`, by default
    /// the `BACH_KERNELS` constant in scope where the function is annotated).
    pub gpu_source: Option<crate::device::KernelSource>,
    /// A Rust function implementing the call on device values (`gpu_fn = path`),
    /// for what one elementwise kernel cannot do.
    pub gpu_fn: Option<crate::device::DeviceFn>,
    /// The annotator's estimate of the CPU cost, nanoseconds per element on
    /// one core (`cost = ...`); `None`: measured by calibration.
    pub cpu_ns_per_element: Option<f64>,
}

impl OpInfo {
    /// True when both describe the same annotation (every field equal; the
    /// kernel source by name and text address).
    pub(crate) fn same_as(&self, other: &OpInfo) -> bool {
        if std::ptr::eq(self, other) {
            return true;
        }
        let source =
            |s: &Option<crate::device::KernelSource>| s.map(|s| (s.name, s.code.as_ptr() as usize));
        // Names compare by address first: the same annotation's name is one
        // static string.
        (std::ptr::eq(self.name, other.name) || self.name == other.name)
            && self.gpu_kernel == other.gpu_kernel
            && self.splittable == other.splittable
            && self.alloc == other.alloc
            && source(&self.gpu_source) == source(&other.gpu_source)
            && self.gpu_fn.map(|f| f as usize) == other.gpu_fn.map(|f| f as usize)
            && self.cpu_ns_per_element.map(f64::to_bits)
                == other.cpu_ns_per_element.map(f64::to_bits)
    }

    /// Defaults for fields an annotation does not set.
    pub const DEFAULT: OpInfo = OpInfo {
        name: "",
        gpu_kernel: None,
        splittable: true,
        alloc: false,
        gpu_source: None,
        gpu_fn: None,
        cpu_ns_per_element: None,
    };
}

/// The CPU implementation of a call, over type-erased pieces: returns the
/// return value's piece first, then the pieces of mutated arguments in
/// declaration order.
pub type CpuFn = fn(&mut Args<'_>) -> Result<Pieces>;

/// The pieces a [`CpuFn`] returns: inline for a return value and one mutated
/// argument, so that most calls allocate no list.
pub type Pieces = smallvec::SmallVec<[Piece; 2]>;

/// The pieces of one call, in order (used by generated code).
pub fn pieces<const N: usize>(pieces: [Piece; N]) -> Pieces {
    pieces.into_iter().collect()
}

/// The pieces one call of a [`CpuFn`] works on, indexed by parameter position.
pub struct Args<'x> {
    pub(crate) refs: smallvec::SmallVec<[&'x (dyn Any + Send + Sync); 4]>,
    pub(crate) owned: Vec<Option<Piece>>,
}

impl<'x> Args<'x> {
    /// Arguments that read `pieces` (one per parameter, none mutated).
    pub(crate) fn reading(pieces: &'x [Piece]) -> Args<'x> {
        Args {
            refs: pieces
                .iter()
                .map(|p| &**p as &(dyn Any + Send + Sync))
                .collect(),
            owned: (0..pieces.len()).map(|_| None).collect(),
        }
    }

    /// The (shared) piece of parameter `i`.
    pub fn get<T: 'static>(&self, i: usize) -> Result<&'x T> {
        self.refs
            .get(i)
            .and_then(|v| v.downcast_ref::<T>())
            .ok_or_else(|| {
                Error::internal(format!(
                    "an argument of type `{}`",
                    std::any::type_name::<T>()
                ))
            })
    }

    /// The piece of mutated parameter `i`, owned by the call.
    pub fn take<T: 'static>(&mut self, i: usize) -> Result<Box<T>> {
        self.owned
            .get_mut(i)
            .and_then(Option::take)
            .and_then(|p| p.downcast::<T>().ok())
            .ok_or_else(|| {
                Error::internal(format!(
                    "an argument of type `{}`",
                    std::any::type_name::<T>()
                ))
            })
    }
}

/// Erases a return value.
pub fn piece<T: Any + Send + Sync>(value: T) -> Piece {
    Box::new(value)
}

/// Erases a boxed mutated argument.
pub fn piece_box<T: Any + Send + Sync>(value: Box<T>) -> Piece {
    value
}

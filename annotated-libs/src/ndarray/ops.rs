//! The annotations: one `#[offload]` declaration per CPU function of the
//! module (`cpu.rs`), generated from the op table. Each stub records a call and
//! returns a [`Lazy`](bach_runtime::Lazy) handle; the lazy array type
//! ([`LazyArray`](super::LazyArray)) calls these for its operators and methods.
//! The kernel named by `gpu` is `{gpu}_{f32|f64|bool}` in [`BACH_KERNELS`].

use bach_runtime::{offload, Broadcast, NdArraySplit, SumSplit};
use ndarray::{Array, Array1, Array2};

use super::reduce::{self, ReductionError, StateSplit, SumCount, Welford, WelfordAxis0};
use super::{cpu, Dim, Float, BACH_KERNELS};

macro_rules! unary {
    ($($name:ident $kernel:literal $dev:literal $doc:literal;)*) => {$(
        #[doc = $doc]
        #[offload(split = NdArraySplit, gpu = $kernel, wraps = cpu::$name)]
        pub fn $name<T: Float, D: Dim>(a: &Array<T, D>) -> Array<T, D>;
    )*};
}
super::table::ndarray_unary_ops!(unary);
super::table::mapped_unary_ops!(unary);

macro_rules! with_params {
    ($($name:ident ($p:ident : $pt:ty) $kernel:literal [$c32:ident, $c64:ident] $dev:literal $doc:literal;)*) => {$(
        #[doc = $doc]
        #[offload(split = NdArraySplit, gpu = $kernel, wraps = cpu::$name)]
        pub fn $name<T: Float, D: Dim>(a: &Array<T, D>, $p: $pt) -> Array<T, D>;
    )*};
}
super::table::ndarray_param_ops!(with_params);

/// Each element limited to `[min, max]` (ndarray's `clamp`).
#[offload(split = NdArraySplit, gpu = "clamp", wraps = cpu::clamp)]
pub fn clamp<T: Float, D: Dim>(a: &Array<T, D>, min: T, max: T) -> Array<T, D>;

/// `-a`.
#[offload(split = NdArraySplit, gpu = "neg", wraps = cpu::neg)]
pub fn neg<T: Float, D: Dim>(a: &Array<T, D>) -> Array<T, D>;

macro_rules! arithmetic {
    ($($name:ident $op:tt $Trait:ident $method:ident $Assign:ident $assign:ident [$k:literal, $ks:literal, $sk:literal] $dev:literal;)*) => {
        $(
            #[doc = concat!("`a ", stringify!($op), " b` for arrays of one shape.")]
            #[offload(split = NdArraySplit, gpu = $k, wraps = cpu::$name)]
            pub fn $name<T: Float, D: Dim>(a: &Array<T, D>, b: &Array<T, D>) -> Array<T, D>;
        )*
        /// Array-scalar forms: `a op s`.
        pub mod array_scalar {
            use super::*;
            $(
                #[doc = concat!("`a ", stringify!($op), " s`.")]
                #[offload(split = NdArraySplit, gpu = $ks, wraps = cpu::array_scalar::$name)]
                pub fn $name<T: Float, D: Dim>(a: &Array<T, D>, s: T) -> Array<T, D>;
            )*
        }
        /// Scalar-array forms: `s op a`.
        pub mod scalar_array {
            use super::*;
            $(
                #[doc = concat!("`s ", stringify!($op), " a`.")]
                #[offload(split = NdArraySplit, gpu = $sk, wraps = cpu::scalar_array::$name)]
                pub fn $name<T: Float, D: Dim>(s: T, a: &Array<T, D>) -> Array<T, D>;
            )*
        }
        /// Row broadcasting: a 2-D array split by rows, the row whole in every batch.
        pub mod rows {
            use super::*;
            $(
                #[doc = concat!("`m ", stringify!($op), " row`, the row broadcast over the rows of `m`.")]
                #[offload(split = NdArraySplit, split(row = Broadcast), wraps = cpu::rows::$name)]
                pub fn $name<T: Float>(m: &Array2<T>, row: &Array1<T>) -> Array2<T>;
            )*
        }
    };
}
super::table::arithmetic_ops!(arithmetic);

macro_rules! comparisons {
    ($($name:ident $op:tt [$k:literal, $ks:literal] $dev:literal;)*) => {
        $(
            #[doc = concat!("The mask of `a ", stringify!($op), " b`.")]
            #[offload(split = NdArraySplit, gpu = $k, wraps = cpu::$name)]
            pub fn $name<T: Float, D: Dim>(a: &Array<T, D>, b: &Array<T, D>) -> Array<bool, D>;
        )*
        /// Comparisons with a scalar.
        pub mod compare_scalar {
            use super::*;
            $(
                #[doc = concat!("The mask of `a ", stringify!($op), " s`.")]
                #[offload(split = NdArraySplit, gpu = $ks, wraps = cpu::compare_scalar::$name)]
                pub fn $name<T: Float, D: Dim>(a: &Array<T, D>, s: T) -> Array<bool, D>;
            )*
        }
    };
}
super::table::comparison_ops!(comparisons);

macro_rules! logical {
    ($($name:ident $op:tt $Trait:ident $method:ident $Assign:ident $assign:ident $kernel:literal $dev:literal;)*) => {$(
        #[doc = concat!("`a ", stringify!($op), " b` of two masks.")]
        #[offload(split = NdArraySplit, gpu = $kernel, wraps = cpu::$name)]
        pub fn $name<D: Dim>(a: &Array<bool, D>, b: &Array<bool, D>) -> Array<bool, D>;
    )*};
}
super::table::logical_ops!(logical);

/// `!a` of a mask.
#[offload(split = NdArraySplit, gpu = "not", wraps = cpu::not)]
pub fn not<D: Dim>(a: &Array<bool, D>) -> Array<bool, D>;

/// `on_true` where `cond` holds, else `on_false`.
#[offload(split = NdArraySplit, gpu = "select", wraps = cpu::select)]
pub fn select<T: Float, D: Dim>(
    cond: &Array<bool, D>,
    on_true: &Array<T, D>,
    on_false: &Array<T, D>,
) -> Array<T, D>;

/// `on_true` where `cond` holds, else the scalar `on_false`.
#[offload(split = NdArraySplit, gpu = "select_scalar", wraps = cpu::select_scalar)]
pub fn select_scalar<T: Float, D: Dim>(
    cond: &Array<bool, D>,
    on_true: &Array<T, D>,
    on_false: T,
) -> Array<T, D>;

/// The scalar `on_true` where `cond` holds, else `on_false`.
#[offload(split = NdArraySplit, gpu = "scalar_select", wraps = cpu::scalar_select)]
pub fn scalar_select<T: Float, D: Dim>(
    cond: &Array<bool, D>,
    on_true: T,
    on_false: &Array<T, D>,
) -> Array<T, D>;

/// The scalar `on_true` where `cond` holds, else the scalar `on_false`.
#[offload(split = NdArraySplit, gpu = "select_scalars", wraps = cpu::select_scalars)]
pub fn select_scalars<T: Float, D: Dim>(
    cond: &Array<bool, D>,
    on_true: T,
    on_false: T,
) -> Array<T, D>;

// ---- reductions -------------------------------------------------------------------------

/// The sum of the elements (per-batch sums merged in element order).
#[offload(split = NdArraySplit, ret = SumSplit, gpu = "sum", wraps = cpu::sum)]
pub fn sum<T: Float, D: Dim>(a: &Array<T, D>) -> T;

/// The state of `mean`.
#[offload(split = NdArraySplit, ret = StateSplit, wraps = cpu::sum_count)]
pub fn sum_count<T: Float, D: Dim>(a: &Array<T, D>) -> SumCount<T>;

/// The state of `var` and `std`.
#[offload(split = NdArraySplit, ret = StateSplit, wraps = cpu::welford)]
pub fn welford<T: Float, D: Dim>(a: &Array<T, D>) -> Welford<T>;

/// `mean` from its state.
#[offload(wraps = reduce::mean_of)]
pub fn mean_of<T: Float>(s: SumCount<T>) -> Option<T>;

/// `var(ddof)` from its state.
#[offload(wraps = reduce::var_of)]
pub fn var_of<T: Float>(w: Welford<T>, ddof: T) -> Result<T, ReductionError>;

/// `std(ddof)` from its state.
#[offload(wraps = reduce::std_of)]
pub fn std_of<T: Float>(w: Welford<T>, ddof: T) -> Result<T, ReductionError>;

/// Column sums (`sum_axis(Axis(0))`), merged across row batches.
#[offload(split = NdArraySplit, ret = SumSplit, wraps = cpu::sum_axis0)]
pub fn sum_axis0<T: Float>(a: &Array2<T>) -> Array1<T>;

/// Row sums (`sum_axis(Axis(1))`), one per row of each batch.
#[offload(split = NdArraySplit, wraps = cpu::sum_axis1)]
pub fn sum_axis1<T: Float>(a: &Array2<T>) -> Array1<T>;

/// The state of `mean_axis(Axis(0))`.
#[offload(split = NdArraySplit, ret = StateSplit, wraps = cpu::sum_count_axis0)]
pub fn sum_count_axis0<T: Float>(a: &Array2<T>) -> SumCount<Array1<T>>;

/// `mean_axis(Axis(0))` from its state.
#[offload(split(s = Broadcast), wraps = reduce::mean_axis0_of)]
pub fn mean_axis0_of<T: Float>(s: &SumCount<Array1<T>>) -> Option<Array1<T>>;

/// Row means (`mean_axis(Axis(1))`): whole, because the result is `None` for an
/// array without columns.
#[offload(split(a = Broadcast), wraps = cpu::mean_axis1)]
pub fn mean_axis1<T: Float>(a: &Array2<T>) -> Option<Array1<T>>;

/// The state of `var_axis(Axis(0), ddof)` and `std_axis(Axis(0), ddof)`.
#[offload(split = NdArraySplit, ret = StateSplit, wraps = cpu::welford_axis0)]
pub fn welford_axis0<T: Float>(a: &Array2<T>) -> WelfordAxis0<T>;

/// `var_axis(Axis(0), ddof)` from its state.
#[offload(split(w = Broadcast), wraps = reduce::var_axis0_of)]
pub fn var_axis0_of<T: Float>(w: &WelfordAxis0<T>, ddof: T) -> Result<Array1<T>, ReductionError>;

/// `std_axis(Axis(0), ddof)` from its state.
#[offload(split(w = Broadcast), wraps = reduce::std_axis0_of)]
pub fn std_axis0_of<T: Float>(w: &WelfordAxis0<T>, ddof: T) -> Result<Array1<T>, ReductionError>;

/// Row variances (`var_axis(Axis(1), ddof)`).
#[offload(split = NdArraySplit, wraps = cpu::var_axis1)]
pub fn var_axis1<T: Float>(a: &Array2<T>, ddof: T) -> Result<Array1<T>, ReductionError>;

/// Row standard deviations (`std_axis(Axis(1), ddof)`).
#[offload(split = NdArraySplit, wraps = cpu::std_axis1)]
pub fn std_axis1<T: Float>(a: &Array2<T>, ddof: T) -> Result<Array1<T>, ReductionError>;

/// The value of a lazy `Some` (an error at evaluation for `None`).
#[offload(split(o = Broadcast), wraps = reduce::unwrap)]
pub fn unwrap_scalar<T: Float>(o: &Option<T>) -> Result<T, ReductionError>;

/// The array of a lazy `Some` (an error at evaluation for `None`).
#[offload(split(o = Broadcast), wraps = reduce::unwrap)]
pub fn unwrap_array<T: Float, D: Dim>(
    o: &Option<Array<T, D>>,
) -> Result<Array<T, D>, ReductionError>;

//! Every kernel of the op table with the CPU function it implements, for the
//! tests that run [`BACH_KERNELS`](super::BACH_KERNELS) as host C++ and compare
//! (`annotated-libs/tests/kernels_host.rs`). Generated from the same table as
//! the kernels, so no operation escapes the check.

use ndarray::Array1;

use super::{cpu, Float};

/// The array-scalar (`a op s`) and scalar-array (`s op a`) CPU functions of an operator.
pub type ScalarForms<T> = (
    fn(&Array1<T>, T) -> Array1<T>,
    fn(T, &Array1<T>) -> Array1<T>,
);

/// The CPU functions of `select` with two arrays, an array and a scalar, a
/// scalar and an array, and two scalars.
pub type SelectForms<T> = (
    fn(&Array1<bool>, &Array1<T>, &Array1<T>) -> Array1<T>,
    fn(&Array1<bool>, &Array1<T>, T) -> Array1<T>,
    fn(&Array1<bool>, T, &Array1<T>) -> Array1<T>,
    fn(&Array1<bool>, T, T) -> Array1<T>,
);

/// A kernel family with its CPU functions for `f32` and `f64`.
pub enum HostCheck {
    /// `{kernel}_T(n, a, out)`.
    Unary {
        kernel: &'static str,
        f32: fn(&Array1<f32>) -> Array1<f32>,
        f64: fn(&Array1<f64>) -> Array1<f64>,
    },
    /// `{kernel}_T(n, a, p, out)`; `integer`: `p` is an `int` (given here as f64).
    Param {
        kernel: &'static str,
        integer: bool,
        f32: fn(&Array1<f32>, f64) -> Array1<f32>,
        f64: fn(&Array1<f64>, f64) -> Array1<f64>,
    },
    /// `{kernel}_T(n, a, p, q, out)`.
    Param2 {
        kernel: &'static str,
        f32: fn(&Array1<f32>, f32, f32) -> Array1<f32>,
        f64: fn(&Array1<f64>, f64, f64) -> Array1<f64>,
    },
    /// `{kernels.0}_T(n, a, b, out)`, `{kernels.1}_T(n, a, s, out)`, `{kernels.2}_T(n, a, s, out)`
    /// (scalar first).
    Arithmetic {
        kernels: [&'static str; 3],
        f32: fn(&Array1<f32>, &Array1<f32>) -> Array1<f32>,
        f32_scalar: ScalarForms<f32>,
        f64: fn(&Array1<f64>, &Array1<f64>) -> Array1<f64>,
        f64_scalar: ScalarForms<f64>,
    },
    /// `{kernels.0}_T(n, a, b, out)`, `{kernels.1}_T(n, a, s, out)` writing bool.
    Compare {
        kernels: [&'static str; 2],
        f32: fn(&Array1<f32>, &Array1<f32>) -> Array1<bool>,
        f32_scalar: fn(&Array1<f32>, f32) -> Array1<bool>,
        f64: fn(&Array1<f64>, &Array1<f64>) -> Array1<bool>,
        f64_scalar: fn(&Array1<f64>, f64) -> Array1<bool>,
    },
    /// `select_T(n, cond, x, y, out)`, `select_scalar_T(n, cond, x, s, out)`,
    /// `scalar_select_T(n, cond, y, s, out)` and `select_scalars_T(n, cond, s, t, out)`
    /// (hand-written in `ndarray.cuh`, not table lines).
    Select {
        f32: SelectForms<f32>,
        f64: SelectForms<f64>,
    },
    /// `{kernel}_bool(n, a, b, out)`.
    Logical {
        kernel: &'static str,
        f: fn(&Array1<bool>, &Array1<bool>) -> Array1<bool>,
    },
}

/// A parameter given as `f64` to the host checks, converted to its type.
trait FromF64 {
    fn from_f64(x: f64) -> Self;
}

impl FromF64 for i32 {
    fn from_f64(x: f64) -> Self {
        x as i32
    }
}

impl FromF64 for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl FromF64 for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
}

macro_rules! unary_checks {
    ($($name:ident $kernel:literal $dev:literal $doc:literal;)*) => {
        [$(HostCheck::Unary { kernel: $kernel, f32: cpu::$name::<f32, ndarray::Ix1>, f64: cpu::$name::<f64, ndarray::Ix1> },)*]
    };
}

macro_rules! param_checks {
    ($($name:ident ($p:ident : $pt:ty) $kernel:literal [$c32:ident, $c64:ident] $dev:literal $doc:literal;)*) => {
        [$({
            fn f<T: Float + FromF64>(a: &Array1<T>, p: f64) -> Array1<T> {
                cpu::$name(a, <$pt as FromF64>::from_f64(p))
            }
            HostCheck::Param { kernel: $kernel, integer: stringify!($c32) == "int", f32: f::<f32>, f64: f::<f64> }
        },)*]
    };
}

macro_rules! arithmetic_checks {
    ($($name:ident $op:tt $Trait:ident $method:ident $Assign:ident $assign:ident [$k:literal, $ks:literal, $sk:literal] $dev:literal;)*) => {
        [$(HostCheck::Arithmetic {
            kernels: [$k, $ks, $sk],
            f32: cpu::$name::<f32, ndarray::Ix1>,
            f32_scalar: (cpu::array_scalar::$name::<f32, ndarray::Ix1>, cpu::scalar_array::$name::<f32, ndarray::Ix1>),
            f64: cpu::$name::<f64, ndarray::Ix1>,
            f64_scalar: (cpu::array_scalar::$name::<f64, ndarray::Ix1>, cpu::scalar_array::$name::<f64, ndarray::Ix1>),
        },)*]
    };
}

macro_rules! comparison_checks {
    ($($name:ident $op:tt [$k:literal, $ks:literal] $dev:literal;)*) => {
        [$(HostCheck::Compare {
            kernels: [$k, $ks],
            f32: cpu::$name::<f32, ndarray::Ix1>,
            f32_scalar: cpu::compare_scalar::$name::<f32, ndarray::Ix1>,
            f64: cpu::$name::<f64, ndarray::Ix1>,
            f64_scalar: cpu::compare_scalar::$name::<f64, ndarray::Ix1>,
        },)*]
    };
}

macro_rules! logical_checks {
    ($($name:ident $op:tt $Trait:ident $method:ident $Assign:ident $assign:ident $kernel:literal $dev:literal;)*) => {
        [$(HostCheck::Logical { kernel: $kernel, f: cpu::$name::<ndarray::Ix1> },)*]
    };
}

/// Every elementwise kernel of the table (and the hand-written rows beside it),
/// with its CPU function.
pub fn host_checks() -> Vec<HostCheck> {
    let mut checks = Vec::new();
    checks.extend(super::table::ndarray_unary_ops!(unary_checks));
    checks.extend(super::table::mapped_unary_ops!(unary_checks));
    checks.push(HostCheck::Unary {
        kernel: "neg",
        f32: cpu::neg::<f32, ndarray::Ix1>,
        f64: cpu::neg::<f64, ndarray::Ix1>,
    });
    checks.extend(super::table::ndarray_param_ops!(param_checks));
    checks.push(HostCheck::Param2 {
        kernel: "clamp",
        f32: cpu::clamp::<f32, ndarray::Ix1>,
        f64: cpu::clamp::<f64, ndarray::Ix1>,
    });
    checks.extend(super::table::arithmetic_ops!(arithmetic_checks));
    checks.extend(super::table::comparison_ops!(comparison_checks));
    checks.extend(super::table::logical_ops!(logical_checks));
    checks.push(HostCheck::Select {
        f32: (
            cpu::select,
            cpu::select_scalar,
            cpu::scalar_select,
            cpu::select_scalars,
        ),
        f64: (
            cpu::select,
            cpu::select_scalar,
            cpu::scalar_select,
            cpu::select_scalars,
        ),
    });
    checks
}

//! The CUDA source of the ndarray module: `common.cuh`, the kernel families of
//! `ndarray.cuh`, and one line per row of the op table.

use bach_runtime::KernelSource;

macro_rules! unary_lines {
    ($($name:ident $kernel:literal $dev:literal $doc:literal;)*) => {
        concat!($("BACH_ND_UNARY(", $kernel, ", ", $dev, ")\n",)*)
    };
}

macro_rules! param_lines {
    ($($name:ident ($p:ident : $pt:ty) $kernel:literal [$c32:ident, $c64:ident] $dev:literal $doc:literal;)*) => {
        concat!($("BACH_ND_PARAM(", $kernel, ", ", stringify!($c32), ", ", stringify!($c64), ", ", $dev, ")\n",)*)
    };
}

macro_rules! arithmetic_lines {
    ($($name:ident $op:tt $Trait:ident $method:ident $Assign:ident $assign:ident [$k:literal, $ks:literal, $sk:literal] $dev:literal;)*) => {
        concat!($("BACH_ND_BINARY(", $k, ", ", $dev, ")\n",)*)
    };
}

macro_rules! comparison_lines {
    ($($name:ident $op:tt [$k:literal, $ks:literal] $dev:literal;)*) => {
        concat!($("BACH_ND_COMPARE(", $k, ", ", $dev, ")\n",)*)
    };
}

macro_rules! logical_lines {
    ($($name:ident $op:tt $Trait:ident $method:ident $Assign:ident $assign:ident $kernel:literal $dev:literal;)*) => {
        concat!($("BACH_ND_LOGICAL(", $kernel, ", ", $dev, ")\n",)*)
    };
}

/// The CUDA source of this module's `gpu` kernels, found by `#[offload(gpu = "...")]`
/// under this name and compiled for the device at first use.
pub const BACH_KERNELS: KernelSource = KernelSource {
    name: "ndarray.cu",
    code: concat!(
        include_str!("../../kernels/common.cuh"),
        include_str!("../../kernels/ndarray.cuh"),
        super::table::ndarray_unary_ops!(unary_lines),
        super::table::mapped_unary_ops!(unary_lines),
        super::table::ndarray_param_ops!(param_lines),
        "BACH_ND_PARAM2(clamp, (x < p ? p : (x > q ? q : x)))\n",
        "BACH_ND_UNARY(neg, (-x))\n",
        super::table::arithmetic_ops!(arithmetic_lines),
        super::table::comparison_ops!(comparison_lines),
        super::table::logical_ops!(logical_lines),
    ),
};

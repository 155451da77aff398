//! The paper's elementwise workloads, each written once and compiled twice.
//!
//! - [`ndarray_cpu`] / [`ndarray_bach`]: idiomatic ndarray code (operators and
//!   float methods) compiled against ndarray itself (through
//!   [`crate::ndarray::eager`]: plain, eager ndarray) and against the lazy
//!   [`crate::ndarray`] module. The two differ only in their `use` line; the
//!   sources are `ndarray/blackscholes.rs`, `ndarray/haversine.rs` and
//!   `ndarray/standardize.rs` (the DBSCAN workload's column standardization).
//! - [`polars_cpu`] / [`polars_bach`]: the crime index in polars style,
//!   compiled against plain polars ([`crate::polars::eager`]) and the lazy
//!   [`crate::polars`] module; the source is `polars/crime_index.rs`.
//! - [`cpu`] / [`bach`]: the same workloads against the NumPy-style function
//!   module ([`crate::cpu::numpy`] and the annotated [`crate::numpy`]).

/// The workloads in ndarray style on plain ndarray (eager, op at a time).
pub mod ndarray_cpu {
    use crate::ndarray::eager::*;
    include!("ndarray/blackscholes.rs");
    include!("ndarray/haversine.rs");
    include!("ndarray/standardize.rs");
}

/// The workloads in ndarray style on lazy arrays (call [`bach_runtime::evaluate`]).
pub mod ndarray_bach {
    use crate::ndarray::*;
    include!("ndarray/blackscholes.rs");
    include!("ndarray/haversine.rs");
    include!("ndarray/standardize.rs");
}

/// The workloads on the plain NumPy-style library (eager, op at a time).
pub mod cpu {
    use crate::cpu::numpy as np;
    include!("blackscholes.rs");
    include!("haversine.rs");
}

/// The workloads on the annotated NumPy-style module (lazy: call [`bach_runtime::evaluate`]).
// The shared source borrows its arguments (`&x`) because the CPU library takes
// references; the lazy stubs would also take the handles by value.
#[allow(clippy::needless_borrows_for_generic_args)]
pub mod bach {
    use crate::numpy as np;
    include!("blackscholes.rs");
    include!("haversine.rs");
}

/// The crime index on plain polars (eager, op at a time).
pub mod polars_cpu {
    use crate::polars::eager::*;
    include!("polars/crime_index.rs");
}

/// The crime index on lazy polars columns (call [`bach_runtime::evaluate`]).
pub mod polars_bach {
    use crate::polars::*;
    include!("polars/crime_index.rs");
}

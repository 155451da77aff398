//! The paper's elementwise workloads, written once against `np` and compiled
//! twice: [`cpu`] against the plain CPU library and [`bach`] against the
//! annotated module. The two modules differ only in their `use ... as np` line;
//! the source in `blackscholes.rs` and `haversine.rs` is shared with `include!`.

/// The workloads on the plain CPU library (eager, op at a time).
pub mod cpu {
    use crate::cpu::numpy as np;
    include!("blackscholes.rs");
    include!("haversine.rs");
}

/// The workloads on the annotated module (lazy: call [`bach_runtime::evaluate`]).
// The shared source borrows its arguments (`&x`) because the CPU library takes
// references; the lazy stubs would also take the handles by value.
#[allow(clippy::needless_borrows_for_generic_args)]
pub mod bach {
    use crate::numpy as np;
    include!("blackscholes.rs");
    include!("haversine.rs");
}

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
pub mod bach {
    use crate::numpy as np;
    include!("blackscholes.rs");
    include!("haversine.rs");
}

//! Visibilities, attributes and module nesting: `f::cpu` is visible wherever `f` is.
#![deny(warnings)]

use bach_runtime::{evaluate, offload};

mod outer {
    pub mod inner {
        use bach_runtime::offload;

        /// Private to `inner`, used there.
        #[offload]
        fn private(n: u64) -> u64 {
            n + 1
        }

        /// Visible in `outer`.
        #[offload]
        pub(super) fn for_outer(n: u64) -> u64 {
            n * 2
        }

        /// Visible in the crate.
        #[offload]
        #[inline]
        #[must_use]
        pub(crate) fn for_crate(n: u64) -> u64 {
            n * 3
        }

        /// Visible in `outer`, spelled out.
        #[offload]
        pub(in crate::outer) fn in_path(n: u64) -> u64 {
            n * 4
        }

        #[cfg(any())]
        #[offload]
        pub fn configured_out(n: u64) -> u64 {
            n
        }

        pub fn uses_private() -> u64 {
            bach_runtime::evaluate(private(1)).unwrap() + private::cpu(1)
        }
    }

    pub fn uses_outer() -> u64 {
        let a = bach_runtime::evaluate(inner::for_outer(1)).unwrap();
        a + inner::for_outer::cpu(1)
            + inner::in_path::cpu(1)
            + bach_runtime::evaluate(inner::in_path(1)).unwrap()
    }
}

/// Deprecated: warns its callers, not its definition.
#[offload]
#[deprecated = "use `r#type`"]
pub fn old(n: u64) -> u64 {
    n
}

/// A keyword as a name.
#[offload]
pub fn r#type(n: u64) -> u64 {
    n
}

#[allow(deprecated)]
fn call_old() -> u64 {
    evaluate(old(1)).unwrap() + old::cpu(1)
}

fn main() {
    assert_eq!(call_old(), 2);
    assert_eq!(outer::inner::uses_private(), 4);
    assert_eq!(outer::uses_outer(), 12);
    assert_eq!(outer::inner::for_crate::cpu(1), 3);
    assert_eq!(evaluate(outer::inner::for_crate(1)).unwrap(), 3);
    assert_eq!(evaluate(r#type(5)).unwrap(), r#type::cpu(5));
    assert_eq!(evaluate(offload_is_in_scope(2)).unwrap(), 2);
}

#[offload]
fn offload_is_in_scope(n: u64) -> u64 {
    n
}

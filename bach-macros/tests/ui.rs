//! Compile tests of `#[offload]`: expansions that must compile (and run), and
//! misuses that must fail with the errors in `ui/fail/*.stderr`.
//!
//! After a deliberate change of a message, regenerate with
//! `TRYBUILD=overwrite cargo test -p bach-macros --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}

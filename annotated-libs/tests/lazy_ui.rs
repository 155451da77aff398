//! Compile-fail tests: the mistakes a user makes with lazy ndarray arrays, and
//! the messages that say what to do (`tests/ui/*.stderr`).

#[test]
fn lazy_array_misuse_fails_to_compile_with_clear_messages() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

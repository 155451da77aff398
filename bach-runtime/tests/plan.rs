//! Stage grouping, observed through `explain`.
// Calls borrow their arguments as the CPU functions' callers do.
#![allow(clippy::needless_borrows_for_generic_args)]

use bach_runtime::{explain, offload, Broadcast, NdArraySplit, StageKind, SumSplit};
use ndarray::{array, Array1};

#[offload(split = NdArraySplit)]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

#[offload(split = NdArraySplit)]
pub fn scale(a: &Array1<f64>, s: f64) -> Array1<f64> {
    a * s
}

#[offload(split = NdArraySplit, ret = SumSplit)]
pub fn sum(a: &Array1<f64>) -> f64 {
    a.sum()
}

#[offload(split = NdArraySplit, unsplittable)]
pub fn cumsum(a: &Array1<f64>) -> Array1<f64> {
    let mut acc = 0.0;
    a.mapv(|x| {
        acc += x;
        acc
    })
}

#[offload(ret = Broadcast)]
pub fn half(x: f64) -> f64 {
    x / 2.0
}

#[test]
fn elementwise_chains_and_their_reduction_form_one_stage() {
    let x = array![1.0, 2.0, 3.0];
    let s = sum(&scale(&add(&x, &x), 2.0));
    let e = explain(&s).unwrap();
    assert_eq!(e.stages.len(), 1, "{e}");
    assert_eq!(e.stages[0].ops, ["add", "scale", "sum"]);
    assert_eq!(e.stages[0].kind, StageKind::Partitioned);
    assert_eq!(e.stages[0].elements, Some(3));
    assert_eq!(e.stages[0].materialised, 1, "only the sum is materialised");
}

#[test]
fn reading_a_reduction_whole_breaks_the_stage() {
    let x = array![1.0, 2.0, 3.0];
    let total = sum(&x);
    let h = half(&total);
    let y = scale(&x, &h);
    let e = explain(&y).unwrap();
    let kinds: Vec<_> = e.stages.iter().map(|s| (s.kind, s.ops.clone())).collect();
    assert_eq!(
        kinds,
        [
            (StageKind::Partitioned, vec!["sum"]),
            (StageKind::Whole, vec!["half"]),
            (StageKind::Partitioned, vec!["scale"]),
        ]
    );
}

#[test]
fn unsplittable_functions_run_whole_between_stages() {
    let x = array![1.0, 2.0, 3.0];
    let y = add(&cumsum(&add(&x, &x)), &x);
    let e = explain(&y).unwrap();
    let ops: Vec<_> = e.stages.iter().map(|s| (s.kind, s.ops.clone())).collect();
    assert_eq!(
        ops,
        [
            (StageKind::Partitioned, vec!["add"]),
            (StageKind::Whole, vec!["cumsum"]),
            (StageKind::Partitioned, vec!["add"]),
        ]
    );
    assert_eq!(bach_runtime::evaluate(y).unwrap(), array![3.0, 8.0, 15.0]);
}

#[test]
fn independent_chains_of_equal_length_share_a_stage_and_unequal_ones_do_not() {
    let (a, b, c) = (array![1.0, 2.0], array![3.0, 4.0], array![1.0, 2.0, 3.0]);
    let same = explain(&(add(&a, &a), add(&b, &b))).unwrap();
    assert_eq!(same.stages.len(), 1, "{same}");
    let different = explain(&(add(&a, &a), add(&c, &c))).unwrap();
    assert_eq!(different.stages.len(), 2, "{different}");
}

#[test]
fn a_reduction_read_as_a_scalar_evaluates_across_stages() {
    let x = array![1.0, 2.0, 3.0];
    let y = array![10.0, 20.0, 30.0];
    let t = scale(&add(&x, &y), 2.0);
    let total = sum(&t);
    let u = scale(&x, &total);
    let (t, total, u) = bach_runtime::evaluate((&t, total, u)).unwrap();
    assert_eq!(t, array![22.0, 44.0, 66.0]);
    assert_eq!(total, 132.0);
    assert_eq!(u, array![132.0, 264.0, 396.0]);
}

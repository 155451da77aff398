//! Graph semantics: laziness, caching, mutation, errors, dropping.
// Calls borrow their arguments as the CPU functions' callers do.
#![allow(clippy::needless_borrows_for_generic_args)]

use std::sync::atomic::{AtomicUsize, Ordering};

use bach_runtime::{
    evaluate, offload, Config, Error, Graph, Inherit, Lazy, NdArraySplit, SumSplit,
};
use ndarray::{array, Array1};

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Counts its calls (all tests share the counter; only `lazy_*` reads it).
#[offload(split = NdArraySplit)]
pub fn counted_double(a: &Array1<f64>) -> Array1<f64> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    a * 2.0
}

#[offload(split = NdArraySplit)]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    assert_eq!(
        a.len(),
        b.len(),
        "add: operands have lengths {} and {}",
        a.len(),
        b.len()
    );
    a + b
}

#[offload(split = NdArraySplit, ret = SumSplit)]
pub fn sum(a: &Array1<f64>) -> f64 {
    a.sum()
}

/// Writes `a * s` into `out`.
#[offload(split = NdArraySplit)]
pub fn scale_into(a: &Array1<f64>, s: f64, out: &mut Array1<f64>) {
    out.zip_mut_with(a, |o, x| *o = x * s);
}

/// Adds `s` to `out` in place.
#[offload(split = NdArraySplit)]
pub fn add_in_place(out: &mut Array1<f64>, s: f64) {
    out.mapv_inplace(|x| x + s);
}

#[offload(split = NdArraySplit, alloc)]
pub fn zeros(n: usize) -> Array1<f64> {
    Array1::zeros(n)
}

#[offload(split = NdArraySplit)]
pub fn fails_on_negative(a: &Array1<f64>) -> Array1<f64> {
    if a.iter().any(|&x| x < 0.0) {
        panic!("negative input");
    }
    a.clone()
}

#[offload(split = NdArraySplit)]
pub fn drops_one(a: &Array1<f64>) -> Array1<f64> {
    a.iter().skip(1).copied().collect()
}

#[test]
fn lazy_calls_run_only_on_evaluate_and_once() {
    let g = Graph::new();
    g.enter(|| {
        let x = array![1.0, 2.0, 3.0];
        let before = CALLS.load(Ordering::SeqCst);
        let d = counted_double(&x);
        let dropped = counted_double(&x);
        drop(dropped);
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            before,
            "recording runs nothing"
        );
        assert_eq!(evaluate(&d).unwrap(), array![2.0, 4.0, 6.0]);
        let after_first = CALLS.load(Ordering::SeqCst);
        assert!(after_first > before);
        // Cached: evaluating again, or a reader of it, does not recompute it.
        assert!(d.is_evaluated());
        assert_eq!(evaluate(&d).unwrap(), array![2.0, 4.0, 6.0]);
        assert_eq!(evaluate(add(&d, &d)).unwrap(), array![4.0, 8.0, 12.0]);
        assert_eq!(CALLS.load(Ordering::SeqCst), after_first);
    });
}

#[test]
fn mutation_orders_reads_after_writes() {
    let a = array![1.0, 2.0, 3.0, 4.0];
    let mut out = zeros(4);
    let before = out.clone(); // a handle to the old version keeps it
    scale_into(&a, 10.0, &mut out);
    add_in_place(&mut out, 1.0);
    let total = sum(&out);
    let (out, before, total) = evaluate((out, before, total)).unwrap();
    assert_eq!(out, array![11.0, 21.0, 31.0, 41.0]);
    assert_eq!(before, array![0.0, 0.0, 0.0, 0.0]);
    assert_eq!(total, 104.0);
}

#[test]
fn mutation_across_batches_and_threads() {
    let n = 10_007;
    let a = Array1::from_shape_fn(n, |i| i as f64);
    let g = Graph::with_config(Config {
        batch_size: Some(100),
        threads: Some(3),
        ..Config::default()
    });
    let out = g
        .enter(|| {
            let mut out = zeros(n);
            scale_into(&a, 2.0, &mut out);
            add_in_place(&mut out, 1.0);
            evaluate(out)
        })
        .unwrap();
    assert_eq!(out, a.mapv(|x| x * 2.0 + 1.0));
}

#[test]
fn mismatched_lengths_are_a_typed_error() {
    let (a, b) = (array![1.0, 2.0, 3.0], array![1.0, 2.0]);
    match evaluate(add(&a, &b)) {
        Err(Error::LengthMismatch {
            op: "add",
            expected: 3,
            found: 2,
            arg: 1,
        }) => {}
        other => panic!("expected a length mismatch, got {other:?}"),
    }
    // Also when one side is lazy.
    let d = add(&a, &a);
    assert!(matches!(
        evaluate(add(&d, &b)),
        Err(Error::LengthMismatch { op: "add", .. })
    ));
}

#[test]
fn handles_from_another_graph_are_rejected() {
    let a = array![1.0, 2.0];
    let other = Graph::new();
    let foreign = other.enter(|| add(&a, &a));
    // Evaluated in the default graph.
    assert!(matches!(
        evaluate(&foreign),
        Err(Error::ForeignGraph { .. })
    ));
    // Used as an argument in the default graph.
    let mixed = add(&foreign, &a);
    match evaluate(&mixed) {
        Err(Error::ForeignGraph { context, .. }) => assert!(context.contains("`add`"), "{context}"),
        other => panic!("expected a foreign-graph error, got {other:?}"),
    }
    // Still fine in its own graph.
    assert_eq!(other.evaluate(&foreign).unwrap(), array![2.0, 4.0]);
}

#[test]
fn a_panic_inside_an_annotated_function_names_it() {
    let a = Array1::from_shape_fn(5000, |i| if i == 4321 { -1.0 } else { i as f64 });
    let g = Graph::with_config(Config {
        batch_size: Some(64),
        ..Config::default()
    });
    match g.enter(|| evaluate(fails_on_negative(&a))) {
        Err(Error::Panic { op, message }) => {
            assert_eq!(op, "fails_on_negative");
            assert_eq!(message, "negative input");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
}

#[test]
fn a_function_breaking_its_split_contract_is_an_error() {
    let a = array![1.0, 2.0, 3.0];
    assert!(matches!(
        evaluate(drops_one(&a)),
        Err(Error::PieceLength {
            op: "drops_one",
            ..
        })
    ));
}

#[test]
fn empty_inputs_give_empty_results() {
    let e = Array1::<f64>::zeros(0);
    assert_eq!(evaluate(add(&e, &e)).unwrap().len(), 0);
    assert_eq!(evaluate(sum(&add(&e, &e))).unwrap(), 0.0);
}

#[test]
fn long_chains_drop_without_running_or_overflowing() {
    let a = array![1.0];
    let mut h: Lazy<'_, Array1<f64>> = add(&a, &a);
    for _ in 0..200_000 {
        h = add(&h, &a);
    }
    drop(h);
}

#[test]
fn long_chains_evaluate() {
    let a = array![1.0, 2.0];
    let mut h = add(&a, &a);
    for _ in 0..20_000 {
        h = add(&h, &a);
    }
    assert_eq!(evaluate(h).unwrap(), array![20_002.0, 40_004.0]);
}

#[test]
fn owned_and_borrowed_and_lazy_arguments_mix() {
    let a = array![1.0, 2.0];
    let owned = add(array![10.0, 20.0], &a);
    let l = Lazy::new(array![100.0, 200.0]);
    assert_eq!(evaluate(add(&owned, l)).unwrap(), array![111.0, 222.0]);
}

#[test]
fn threads_evaluate_their_own_default_graphs() {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let a = Array1::from_elem(1000, t as f64);
                evaluate(sum(&add(&a, &a))).unwrap()
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), 2000.0 * t as f64);
    }
}

/// Works on any value: its split type is inherited from what flows in.
#[offload(split = Inherit)]
pub fn identity<T: Clone + Send + Sync + 'static>(a: &T) -> T {
    a.clone()
}

#[test]
fn generic_split_types_inherit_from_their_producer() {
    let a = Array1::from_shape_fn(10_000, |i| i as f64);
    let g = Graph::with_config(Config {
        batch_size: Some(128),
        ..Config::default()
    });
    let (same, s) = g
        .enter(|| {
            let twice = add(&a, &a);
            let same = identity::<Array1<f64>>(&twice);
            // `identity` inherited NdArraySplit, so this sum fuses with it.
            let s = sum(&add(&same, &a));
            evaluate((same, s))
        })
        .unwrap();
    assert_eq!(same, a.mapv(|x| 2.0 * x));
    assert_eq!(s, 3.0 * a.sum());
    // A scalar from outside the graph has nothing to inherit: broadcast.
    assert_eq!(evaluate(identity::<f64>(&2.5)).unwrap(), 2.5);
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Counts its drops.
#[derive(Clone)]
pub struct Tracked;
impl Drop for Tracked {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

#[offload(unsplittable)]
pub fn touch(_t: Tracked) -> f64 {
    1.0
}

#[test]
fn dropping_unevaluated_handles_frees_their_values() {
    let before = DROPPED.load(Ordering::SeqCst);
    let h = touch(Tracked);
    let h2 = touch(Tracked);
    drop(h);
    drop(h2);
    assert_eq!(
        DROPPED.load(Ordering::SeqCst) - before,
        2,
        "both recorded values freed"
    );
}

/// Appends the piece's length to `acc`: a `&mut` argument that is not split.
#[offload(split = NdArraySplit, split(acc = bach_runtime::Broadcast))]
pub fn count_into(a: &Array1<f64>, acc: &mut Vec<usize>) {
    acc.push(a.len());
}

#[test]
fn an_unsplit_mutated_argument_makes_the_call_run_whole() {
    let x = Array1::from_elem(10_000, 1.0);
    let g = Graph::with_config(Config {
        batch_size: Some(1000),
        ..Config::default()
    });
    let acc = g
        .enter(|| {
            let mut acc = Lazy::new(Vec::new());
            count_into(&x, &mut acc);
            evaluate(acc)
        })
        .unwrap();
    assert_eq!(
        acc,
        vec![10_000],
        "one call over the whole array, as eagerly"
    );
}

/// A histogram whose length depends on the data: partial sums of different
/// shapes cannot be merged.
#[offload(split = NdArraySplit, ret = SumSplit)]
pub fn bincount(a: &Array1<f64>) -> Array1<f64> {
    let n = a.iter().fold(0.0f64, |m, &x| m.max(x)) as usize + 1;
    let mut out = Array1::zeros(n);
    for &x in a {
        out[x as usize] += 1.0;
    }
    out
}

#[test]
fn a_failing_merge_is_an_error_not_a_panic() {
    let x = Array1::from_shape_fn(4000, |i| if i < 2000 { 1.0 } else { 9.0 });
    let g = Graph::with_config(Config {
        batch_size: Some(1000),
        ..Config::default()
    });
    match g.enter(|| evaluate(bincount(&x))) {
        Err(Error::Panic { op, .. }) => assert_eq!(op, "SumSplit"),
        other => panic!("expected a merge error, got {other:?}"),
    }
}

#[test]
fn a_zero_batch_size_in_code_is_treated_as_one() {
    let x = array![1.0, 2.0, 3.0];
    let g = Graph::with_config(Config {
        batch_size: Some(0),
        ..Config::default()
    });
    assert_eq!(
        g.enter(|| evaluate(add(&x, &x))).unwrap(),
        array![2.0, 4.0, 6.0]
    );
}

static INCS: AtomicUsize = AtomicUsize::new(0);

/// Adds one in place, counting its calls.
#[offload(split = NdArraySplit)]
pub fn inc(out: &mut Array1<f64>) {
    INCS.fetch_add(1, Ordering::SeqCst);
    out.mapv_inplace(|x| x + 1.0);
}

#[test]
fn evaluated_mutations_are_cached_not_recomputed() {
    let g = Graph::new();
    g.enter(|| {
        let mut h = Lazy::new(Array1::<f64>::zeros(4));
        let before = INCS.load(Ordering::SeqCst);
        for k in 1..=10 {
            inc(&mut h);
            assert_eq!(evaluate(&h).unwrap(), Array1::from_elem(4, k as f64));
        }
        assert!(h.is_evaluated());
        assert_eq!(
            INCS.load(Ordering::SeqCst) - before,
            10,
            "each increment ran once"
        );
    });
}

static CLONES: AtomicUsize = AtomicUsize::new(0);

/// Counts its clones.
pub struct Counted(pub Vec<f64>);

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::SeqCst);
        Counted(self.0.clone())
    }
}

#[offload(unsplittable)]
pub fn make_counted(n: usize) -> Counted {
    Counted(vec![1.0; n])
}

#[test]
fn evaluated_results_are_moved_out_not_copied() {
    let before = CLONES.load(Ordering::SeqCst);
    let v = evaluate(make_counted(1000)).unwrap();
    assert_eq!(v.0.len(), 1000);
    assert_eq!(
        CLONES.load(Ordering::SeqCst),
        before,
        "a taken handle's result is moved"
    );
    // Evaluating by reference keeps the cached value in the graph: one copy.
    let h = make_counted(10);
    let _ = evaluate(&h).unwrap();
    assert_eq!(CLONES.load(Ordering::SeqCst), before + 1);
}

//! Tests of the plain CPU NumPy-style library `annotated_libs::cpu::numpy`:
//! NumPy edge behaviour, hand-computed values, and mergeable moments.

use annotated_libs::cpu::numpy as np;
use annotated_libs::cpu::numpy::{Float, Moments, MomentsAxis0};
use ndarray::{array, s, Array1, Array2};
use proptest::prelude::*;

const INF: f64 = f64::INFINITY;
const NAN: f64 = f64::NAN;

/// Elementwise equality that treats NaN == NaN and distinguishes nothing else.
fn same<T: Float>(a: &Array1<T>, b: &Array1<T>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|(&x, &y)| (x.is_nan() && y.is_nan()) || x == y)
}

#[track_caller]
fn assert_same<T: Float>(a: &Array1<T>, b: &Array1<T>) {
    assert!(same(a, b), "expected {b}, got {a}");
}

#[track_caller]
fn assert_close<T: Float>(got: T, want: T, rel: f64) {
    let g = got.to_f64().unwrap();
    let w = want.to_f64().unwrap();
    let tol = rel * w.abs().max(1e-300);
    assert!((g - w).abs() <= tol, "got {g}, want {w} (rel tol {rel})");
}

#[track_caller]
fn assert_close_arr<T: Float>(got: &Array1<T>, want: &Array1<T>, rel: f64) {
    assert_eq!(got.len(), want.len());
    for (&g, &w) in got.iter().zip(want.iter()) {
        if w.is_nan() {
            assert!(g.is_nan(), "got {got}, want {want}");
        } else {
            assert_close(g, w, rel);
        }
    }
}

// ---------------------------------------------------------------------------
// Trait, aliases, allocation
// ---------------------------------------------------------------------------

#[test]
fn dtype_names() {
    assert_eq!(<f32 as Float>::DTYPE, "f32");
    assert_eq!(<f64 as Float>::DTYPE, "f64");
}

#[test]
fn type_aliases_are_plain_ndarray() {
    fn takes<'a>(a: &np::Array<'a, f64>, m: &np::Mask<'a>) -> np::Array<'a, f64> {
        np::where_scalar(m, a, 0.0)
    }
    let a: Array1<f64> = array![1.0, 2.0];
    let m: Array1<bool> = array![true, false];
    assert_eq!(takes(&a, &m), array![1.0, 0.0]);
}

#[test]
fn allocation() {
    assert_eq!(np::zeros::<f64>(3), array![0.0, 0.0, 0.0]);
    assert_eq!(np::ones::<f32>(2), array![1.0f32, 1.0]);
    assert_eq!(np::full(2, 2.5f64), array![2.5, 2.5]);
    assert_eq!(np::empty::<f64>(4), Array1::<f64>::zeros(4));
    assert_eq!(np::zeros::<f64>(0).len(), 0);
    let z = np::zeros_2d::<f32>(2, 3);
    assert_eq!(z.dim(), (2, 3));
    assert!(z.is_standard_layout());
    assert!(z.iter().all(|&x| x == 0.0));
}

#[test]
fn copy_is_standard_layout_even_from_reversed_input() {
    let mut a: Array1<f64> = array![1.0, 2.0, 3.0];
    a.invert_axis(ndarray::Axis(0));
    assert_eq!(a.strides(), &[-1]);
    let c = np::copy(&a);
    assert_eq!(c, array![3.0, 2.0, 1.0]);
    assert!(c.is_standard_layout());
    let e = np::exp(&a);
    assert!(e.is_standard_layout());
    let s = np::add(&a, &a);
    assert_eq!(s, array![6.0, 4.0, 2.0]);
    assert!(s.is_standard_layout());
    assert_eq!(np::sum(&a), 6.0);
}

// ---------------------------------------------------------------------------
// Arithmetic
// ---------------------------------------------------------------------------

#[test]
fn binary_arithmetic_f64() {
    let a = array![1.0, -2.0, 3.0, 0.0];
    let b = array![4.0, 5.0, -6.0, 0.0];
    assert_eq!(np::add(&a, &b), array![5.0, 3.0, -3.0, 0.0]);
    assert_eq!(np::subtract(&a, &b), array![-3.0, -7.0, 9.0, 0.0]);
    assert_eq!(np::multiply(&a, &b), array![4.0, -10.0, -18.0, 0.0]);
    let d = np::divide(&a, &b);
    assert_same(&d, &array![0.25, -0.4, -0.5, NAN]);
    // x / 0 -> +/-inf
    let z = np::divide(&array![1.0, -1.0], &array![0.0, 0.0]);
    assert_eq!(z, array![INF, -INF]);
}

#[test]
fn binary_arithmetic_f32() {
    let a = array![1.0f32, -2.0, 3.0];
    let b = array![4.0f32, 5.0, -6.0];
    assert_eq!(np::add(&a, &b), array![5.0f32, 3.0, -3.0]);
    assert_eq!(np::subtract(&a, &b), array![-3.0f32, -7.0, 9.0]);
    assert_eq!(np::multiply(&a, &b), array![4.0f32, -10.0, -18.0]);
    assert_eq!(np::divide(&a, &b), array![0.25f32, -0.4, -0.5]);
}

#[test]
fn scalar_arithmetic_order() {
    let a = array![1.0, 2.0, 4.0];
    assert_eq!(np::add_scalar(&a, 1.0), array![2.0, 3.0, 5.0]);
    assert_eq!(np::subtract_scalar(&a, 1.0), array![0.0, 1.0, 3.0]);
    assert_eq!(np::multiply_scalar(&a, 2.0), array![2.0, 4.0, 8.0]);
    assert_eq!(np::divide_scalar(&a, 2.0), array![0.5, 1.0, 2.0]);
    assert_eq!(np::scalar_add(1.0, &a), array![2.0, 3.0, 5.0]);
    assert_eq!(np::scalar_subtract(1.0, &a), array![0.0, -1.0, -3.0]);
    assert_eq!(np::scalar_multiply(2.0, &a), array![2.0, 4.0, 8.0]);
    assert_eq!(np::scalar_divide(8.0, &a), array![8.0, 4.0, 2.0]);
    assert_eq!(
        np::scalar_divide(1.0f32, &array![0.0f32, -0.0]),
        array![f32::INFINITY, f32::NEG_INFINITY]
    );
    assert_eq!(
        np::subtract_scalar(&array![INF], INF).map(|x| x.is_nan()),
        array![true]
    );
}

#[test]
fn empty_elementwise() {
    let e: Array1<f64> = array![];
    assert_eq!(np::add(&e, &e).len(), 0);
    assert_eq!(np::sqrt(&e).len(), 0);
    assert_eq!(np::greater_scalar(&e, 0.0).len(), 0);
}

#[test]
fn power_and_minmax() {
    let a = array![2.0, 9.0, -8.0, 0.0];
    assert_eq!(
        np::power(&a, &array![3.0, 0.5, 2.0, 0.0]),
        array![8.0, 3.0, 64.0, 1.0]
    );
    assert_same(&np::power_scalar(&a, 2.0), &array![4.0, 81.0, 64.0, 0.0]);
    // negative base, fractional exponent -> NaN (NumPy too)
    assert!(np::power_scalar(&array![-8.0f64], 1.0 / 3.0)[0].is_nan());
    assert_eq!(np::power_scalar(&array![0.0], -1.0), array![INF]);

    let x = array![1.0, NAN, 3.0, -INF, 5.0];
    let y = array![2.0, 0.0, NAN, 0.0, 5.0];
    assert_same(&np::minimum(&x, &y), &array![1.0, NAN, NAN, -INF, 5.0]);
    assert_same(&np::maximum(&x, &y), &array![2.0, NAN, NAN, 0.0, 5.0]);
    assert_same(
        &np::minimum_scalar(&x, 2.0),
        &array![1.0, NAN, 2.0, -INF, 2.0],
    );
    assert_same(
        &np::maximum_scalar(&x, 2.0),
        &array![2.0, NAN, 3.0, 2.0, 5.0],
    );
    assert!(np::minimum_scalar(&array![1.0], NAN)[0].is_nan());
    assert!(np::maximum_scalar(&array![1.0f32], f32::NAN)[0].is_nan());
}

// ---------------------------------------------------------------------------
// Length mismatches
// ---------------------------------------------------------------------------

#[test]
#[should_panic(expected = "add: operands have lengths 3 and 4")]
fn add_length_mismatch() {
    np::add(&array![1.0, 2.0, 3.0], &array![1.0, 2.0, 3.0, 4.0]);
}

#[test]
#[should_panic(expected = "multiply: operands have lengths 2 and 1")]
fn multiply_length_mismatch_f32() {
    np::multiply(&array![1.0f32, 2.0], &array![1.0f32]);
}

#[test]
#[should_panic(expected = "greater: operands have lengths 1 and 0")]
fn compare_length_mismatch() {
    np::greater(&array![1.0], &array![]);
}

#[test]
#[should_panic(expected = "logical_and: operands have lengths 2 and 3")]
fn logical_length_mismatch() {
    np::logical_and(&array![true, false], &array![true, false, true]);
}

#[test]
#[should_panic(expected = "where_: operands have lengths")]
fn where_length_mismatch() {
    np::where_(&array![true, false], &array![1.0, 2.0], &array![1.0]);
}

#[test]
#[should_panic(expected = "mask: operands have lengths 2 and 1")]
fn mask_length_mismatch() {
    np::mask(&array![1.0, 2.0], &array![true], 0.0);
}

// ---------------------------------------------------------------------------
// Unary
// ---------------------------------------------------------------------------

#[test]
fn unary_edge_cases_f64() {
    let a = array![-1.0, 0.0, 1.0, INF, -INF, NAN];
    assert_same(&np::sqrt(&a), &array![NAN, 0.0, 1.0, INF, NAN, NAN]);
    assert_same(&np::log(&a), &array![NAN, -INF, 0.0, INF, NAN, NAN]);
    assert_same(&np::log2(&a), &array![NAN, -INF, 0.0, INF, NAN, NAN]);
    assert_same(&np::log10(&a), &array![NAN, -INF, 0.0, INF, NAN, NAN]);
    assert_same(
        &np::exp(&a),
        &array![(-1.0f64).exp(), 1.0, std::f64::consts::E, INF, 0.0, NAN],
    );
    assert_same(&np::negative(&a), &array![1.0, -0.0, -1.0, -INF, INF, NAN]);
    assert_same(&np::abs(&a), &array![1.0, 0.0, 1.0, INF, INF, NAN]);
    assert_same(&np::square(&a), &array![1.0, 0.0, 1.0, INF, INF, NAN]);
    assert_same(
        &np::arcsin(&array![2.0, 1.0, 0.0]),
        &array![NAN, std::f64::consts::FRAC_PI_2, 0.0],
    );
    assert_same(&np::arccos(&array![-2.0, 1.0]), &array![NAN, 0.0]);
    assert_same(
        &np::arctan(&array![INF, -INF, 0.0]),
        &array![
            std::f64::consts::FRAC_PI_2,
            -std::f64::consts::FRAC_PI_2,
            0.0
        ],
    );
    assert_same(&np::sin(&array![0.0, INF]), &array![0.0, NAN]);
    assert_same(&np::cos(&array![0.0, -INF]), &array![1.0, NAN]);
    assert_same(&np::tan(&array![0.0, NAN]), &array![0.0, NAN]);
    assert_eq!(np::log2(&array![8.0, 0.5]), array![3.0, -1.0]);
    assert_eq!(np::log10(&array![1000.0, 0.01]), array![3.0, -2.0]);
    // log(-0.0) is -inf as well
    assert_eq!(np::log(&array![-0.0]), array![-INF]);
}

#[test]
fn unary_edge_cases_f32() {
    let a = array![-4.0f32, 0.0, 4.0];
    let s = np::sqrt(&a);
    assert!(s[0].is_nan());
    assert_eq!(s.slice(s![1..]), array![0.0f32, 2.0]);
    let l = np::log(&a);
    assert!(l[0].is_nan());
    assert_eq!(l[1], f32::NEG_INFINITY);
    assert_close(l[2], 4.0f32.ln(), 1e-7);
}

#[test]
fn erf_values() {
    // Reference values: scipy.special.erf / Abramowitz & Stegun.
    let x = array![0.0, 0.5, 1.0, -1.0, 2.0, INF, -INF, NAN];
    let e = np::erf(&x);
    let want = [
        0.0,
        0.520_499_877_813_046_5,
        0.842_700_792_949_714_9,
        -0.842_700_792_949_714_9,
        0.995_322_265_018_952_7,
        1.0,
        -1.0,
    ];
    for (i, &w) in want.iter().enumerate() {
        assert_close(e[i], w, 1e-15);
    }
    assert!(e[7].is_nan());
    let e32 = np::erf(&array![0.5f32, 1.0]);
    assert_close(e32[0], 0.520_499_9f32, 1e-6);
    assert_close(e32[1], 0.842_700_8f32, 1e-6);
    assert_eq!(Float::erf(0.0f32), 0.0);
}

// ---------------------------------------------------------------------------
// Comparisons and masks
// ---------------------------------------------------------------------------

#[test]
fn comparisons_with_nan_and_inf() {
    let a = array![1.0, 2.0, NAN, INF, -INF];
    let b = array![2.0, 2.0, NAN, INF, 0.0];
    assert_eq!(
        np::greater(&a, &b),
        array![false, false, false, false, false]
    );
    assert_eq!(np::less(&a, &b), array![true, false, false, false, true]);
    assert_eq!(
        np::greater_equal(&a, &b),
        array![false, true, false, true, false]
    );
    assert_eq!(
        np::less_equal(&a, &b),
        array![true, true, false, true, true]
    );
    assert_eq!(np::equal(&a, &b), array![false, true, false, true, false]);
    assert_eq!(
        np::not_equal(&a, &b),
        array![true, false, true, false, true]
    );

    assert_eq!(
        np::greater_scalar(&a, 1.5),
        array![false, true, false, true, false]
    );
    assert_eq!(
        np::less_scalar(&a, 1.5),
        array![true, false, false, false, true]
    );
    assert_eq!(
        np::greater_equal_scalar(&a, 2.0),
        array![false, true, false, true, false]
    );
    assert_eq!(
        np::less_equal_scalar(&a, 2.0),
        array![true, true, false, false, true]
    );
    assert_eq!(
        np::equal_scalar(&a, 2.0),
        array![false, true, false, false, false]
    );
    assert_eq!(np::equal_scalar(&a, NAN), Array1::from_elem(5, false));
    assert_eq!(
        np::greater_scalar(&array![1.0f32, 3.0], 2.0),
        array![false, true]
    );
}

#[test]
fn logical_and_where() {
    let p = array![true, true, false, false];
    let q = array![true, false, true, false];
    assert_eq!(np::logical_and(&p, &q), array![true, false, false, false]);
    assert_eq!(np::logical_or(&p, &q), array![true, true, true, false]);
    assert_eq!(np::logical_not(&p), array![false, false, true, true]);
    assert_eq!(np::count_nonzero(&p), 2);
    assert_eq!(np::count_nonzero(&array![]), 0);

    let x = array![1.0, 2.0, 3.0, 4.0];
    let y = array![-1.0, -2.0, -3.0, -4.0];
    assert_eq!(np::where_(&p, &x, &y), array![1.0, 2.0, -3.0, -4.0]);
    assert_eq!(np::where_scalar(&q, &x, 0.0), array![1.0, 0.0, 3.0, 0.0]);
    assert_eq!(np::mask(&x, &q, 0.0), array![0.0, 2.0, 0.0, 4.0]);
    // NaN handling: where passes NaN through unchanged.
    let xn = array![NAN, 1.0f64];
    assert_same(
        &np::where_scalar(&array![true, false], &xn, 7.0),
        &array![NAN, 7.0],
    );
    // a typical pandas idiom: replace NaN with 0 via mask(isnan)
    let isnan = np::not_equal(&xn, &xn);
    assert_eq!(np::mask(&xn, &isnan, 0.0), array![0.0, 1.0]);
    assert_eq!(
        np::where_(&array![true], &array![1.0f32], &array![2.0f32]),
        array![1.0f32]
    );
}

// ---------------------------------------------------------------------------
// 1-D reductions
// ---------------------------------------------------------------------------

#[test]
fn reductions_values() {
    let a = array![2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
    assert_eq!(np::sum(&a), 40.0);
    assert_eq!(np::mean(&a), 5.0);
    assert_eq!(np::std(&a), 2.0);
    assert_eq!(np::min(&a), 2.0);
    assert_eq!(np::max(&a), 9.0);

    let f = array![2.0f32, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
    assert_eq!(np::sum(&f), 40.0);
    assert_eq!(np::mean(&f), 5.0);
    assert_eq!(np::std(&f), 2.0);
    assert_eq!(np::min(&f), 2.0);
    assert_eq!(np::max(&f), 9.0);

    let single = array![3.5];
    assert_eq!(np::std(&single), 0.0);
    assert_eq!(np::mean(&single), 3.5);
}

#[test]
fn reductions_empty() {
    let e: Array1<f64> = array![];
    assert_eq!(np::sum(&e), 0.0);
    assert!(np::mean(&e).is_nan());
    assert!(np::std(&e).is_nan());
    let e32: Array1<f32> = array![];
    assert_eq!(np::sum(&e32), 0.0);
    assert!(np::mean(&e32).is_nan());
    assert!(np::std(&e32).is_nan());
}

#[test]
#[should_panic(expected = "min: zero-size array to reduction operation which has no identity")]
fn min_empty_panics() {
    np::min::<f64>(&array![]);
}

#[test]
#[should_panic(expected = "max: zero-size array to reduction operation which has no identity")]
fn max_empty_panics() {
    np::max::<f32>(&array![]);
}

#[test]
#[should_panic(expected = "min: zero-size array to reduction operation which has no identity")]
fn min_axis0_no_rows_panics() {
    np::min_axis0::<f64>(&Array2::zeros((0, 3)));
}

#[test]
#[should_panic(expected = "max: zero-size array to reduction operation which has no identity")]
fn max_axis0_no_rows_panics() {
    np::max_axis0::<f32>(&Array2::zeros((0, 0)));
}

#[test]
fn reductions_nan_and_inf() {
    // NaN anywhere propagates through min/max, wherever it sits.
    for pos in 0..4 {
        let mut a = array![1.0, -2.0, 3.0, 0.5];
        a[pos] = NAN;
        assert!(np::min(&a).is_nan(), "min with NaN at {pos}");
        assert!(np::max(&a).is_nan(), "max with NaN at {pos}");
        assert!(np::sum(&a).is_nan());
        assert!(np::mean(&a).is_nan());
        assert!(np::std(&a).is_nan());
    }
    let a = array![1.0, INF, -INF];
    assert_eq!(np::min(&a), -INF);
    assert_eq!(np::max(&a), INF);
    assert!(np::sum(&a).is_nan()); // inf + -inf
    assert_eq!(np::sum(&array![1.0, INF]), INF);
    assert!(np::std(&array![1.0, INF]).is_nan()); // NumPy: nan
    assert!(np::min(&array![f32::NAN, 1.0f32]).is_nan());
}

#[test]
fn sum_is_pairwise_and_accurate() {
    // 1 + 1e-16 * many: naive left-to-right summation in f32 loses the small
    // terms; pairwise summation keeps the error small. Compare to f64.
    let n = 100_000;
    let a32: Array1<f32> = Array1::from_iter((0..n).map(|i| 0.1f32 + (i % 7) as f32 * 1e-3));
    let a64 = a32.mapv(|x| x as f64);
    let exact: f64 = a64.iter().sum();
    let got = np::sum(&a32) as f64;
    assert!(
        (got - exact).abs() / exact < 1e-6,
        "pairwise f32 sum {got} vs {exact}"
    );
    // different block-structure sizes all agree with the exact sum of small integers
    for n in [
        0usize, 1, 7, 8, 9, 15, 16, 17, 127, 128, 129, 255, 256, 257, 1000, 4097,
    ] {
        let a: Array1<f64> = Array1::from_iter((0..n).map(|i| i as f64));
        assert_eq!(np::sum(&a), (n * n.saturating_sub(1) / 2) as f64, "n = {n}");
    }
}

#[test]
fn std_is_numerically_stable() {
    // Large offset: the naive E[x^2] - E[x]^2 formula would be wildly wrong.
    let a = array![1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0];
    assert_eq!(np::mean(&a), 1e9 + 10.0);
    assert_close(np::std(&a), 22.5f64.sqrt(), 1e-12);
}

// ---------------------------------------------------------------------------
// Axis-0 reductions
// ---------------------------------------------------------------------------

#[test]
fn axis0_reductions() {
    let a = array![[1.0, 2.0, -1.0], [3.0, 6.0, -1.0], [5.0, 10.0, -1.0]];
    assert_eq!(np::sum_axis0(&a), array![9.0, 18.0, -3.0]);
    assert_eq!(np::mean_axis0(&a), array![3.0, 6.0, -1.0]);
    assert_eq!(np::min_axis0(&a), array![1.0, 2.0, -1.0]);
    assert_eq!(np::max_axis0(&a), array![5.0, 10.0, -1.0]);
    let sd = np::std_axis0(&a);
    assert_close_arr(
        &sd,
        &array![(8.0f64 / 3.0).sqrt(), (32.0f64 / 3.0).sqrt(), 0.0],
        1e-15,
    );

    // f32, and a transposed (Fortran-order) view materialised as an owned array
    let b: Array2<f32> = array![[1.0f32, 4.0], [2.0, 5.0], [3.0, 6.0]]
        .reversed_axes()
        .reversed_axes();
    assert_eq!(np::sum_axis0(&b), array![6.0f32, 15.0]);
    assert_eq!(np::mean_axis0(&b), array![2.0f32, 5.0]);
    let t: Array2<f64> = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].reversed_axes(); // 3x2, F-order
    assert!(!t.is_standard_layout());
    assert_eq!(np::sum_axis0(&t), array![6.0, 15.0]);
    assert_eq!(np::min_axis0(&t), array![1.0, 4.0]);
    assert!(np::max_axis0(&t).is_standard_layout());
}

#[test]
fn axis0_edge_cases() {
    let no_rows: Array2<f64> = Array2::zeros((0, 2));
    assert_eq!(np::sum_axis0(&no_rows), array![0.0, 0.0]);
    assert_same(&np::mean_axis0(&no_rows), &array![NAN, NAN]);
    assert_same(&np::std_axis0(&no_rows), &array![NAN, NAN]);
    // zero columns, some rows: empty outputs, no panic (NumPy agrees).
    let no_cols: Array2<f64> = Array2::zeros((3, 0));
    assert_eq!(np::min_axis0(&no_cols).len(), 0);
    assert_eq!(np::sum_axis0(&no_cols).len(), 0);

    let a = array![[1.0, NAN, 2.0], [NAN, 3.0, -INF], [0.0, 1.0, 5.0]];
    assert_same(&np::min_axis0(&a), &array![NAN, NAN, -INF]);
    assert_same(&np::max_axis0(&a), &array![NAN, NAN, 5.0]);
    assert_same(&np::sum_axis0(&a), &array![NAN, NAN, -INF]);
    assert_same(&np::std_axis0(&a), &array![NAN, NAN, NAN]);
}

// ---------------------------------------------------------------------------
// Moments
// ---------------------------------------------------------------------------

#[test]
fn moments_basic() {
    let a = array![2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
    let m = np::moments(&a);
    assert_eq!(
        m,
        Moments {
            count: 8,
            mean: 5.0,
            m2: 32.0
        }
    );
    assert_eq!(m.mean(), 5.0);
    assert_eq!(m.variance(), 4.0);
    assert_eq!(m.std(), 2.0);
    assert_eq!(np::moments_mean(m), 5.0);
    assert_eq!(np::moments_std(m), 2.0);
    // agrees bit-for-bit with mean/std
    let r = array![0.1, 0.7, 1.3, -2.9, 1e3, 3.3];
    assert_eq!(np::moments(&r).mean(), np::mean(&r));
    assert_eq!(np::moments(&r).std(), np::std(&r));

    let e = Moments::<f64>::empty();
    assert_eq!(e.count, 0);
    assert!(e.mean().is_nan());
    assert!(e.std().is_nan());
    assert!(e.variance().is_nan());
    assert!(np::moments_mean(e).is_nan());
    assert!(np::moments_std(e).is_nan());
    assert_eq!(np::moments::<f64>(&array![]), e);

    // merging with empty returns the other side exactly
    assert_eq!(m.merge(e), m);
    assert_eq!(e.merge(m), m);
    assert_eq!(e.merge(e), e);

    // two halves
    let left = np::moments(&a.slice(s![..3]).to_owned());
    let right = np::moments(&a.slice(s![3..]).to_owned());
    let merged = left.merge(right);
    assert_eq!(merged.count, 8);
    assert_close(merged.mean, 5.0, 1e-15);
    assert_close(merged.m2, 32.0, 1e-15);

    let f = np::moments(&array![1.0f32, 2.0, 3.0, 4.0]);
    assert_eq!(f.mean(), 2.5);
    assert_eq!(f.variance(), 1.25);
    let fm = np::moments(&array![1.0f32, 2.0]).merge(np::moments(&array![3.0f32, 4.0]));
    assert_eq!(fm, f);
}

#[test]
fn moments_axis0_basic() {
    let a = array![
        [1.0, 2.0, -1.0],
        [3.0, 6.0, -1.0],
        [5.0, 10.0, -1.0],
        [7.0, 0.0, 4.0]
    ];
    let whole = np::moments_axis0(&a);
    assert_eq!(whole.count, 4);
    assert_eq!(whole.mean(), np::mean_axis0(&a));
    assert_eq!(whole.std(), np::std_axis0(&a));
    let top = np::moments_axis0(&a.slice(s![..1, ..]).to_owned());
    let bottom = np::moments_axis0(&a.slice(s![1.., ..]).to_owned());
    let merged = top.merge(bottom);
    assert_eq!(merged.count, 4);
    assert_close_arr(&merged.mean, &whole.mean, 1e-15);
    assert_close_arr(&merged.m2, &whole.m2, 1e-14);
    assert_close_arr(&merged.variance(), &whole.variance(), 1e-14);

    let empty = MomentsAxis0::<f64>::empty();
    assert_eq!(empty.clone().merge(whole.clone()), whole);
    assert_eq!(whole.clone().merge(empty.clone()), whole);
    let no_rows = np::moments_axis0(&Array2::<f64>::zeros((0, 3)));
    assert_eq!(no_rows.count, 0);
    assert_same(&no_rows.mean(), &array![NAN, NAN, NAN]);
    assert_same(&no_rows.std(), &array![NAN, NAN, NAN]);
    assert_eq!(no_rows.clone().merge(whole.clone()), whole);
    assert_eq!(whole.clone().merge(no_rows), whole);
    assert_eq!(empty.mean().len(), 0);
}

#[test]
#[should_panic(expected = "MomentsAxis0::merge: operands have lengths 2 and 3")]
fn moments_axis0_merge_mismatch() {
    let a = np::moments_axis0(&Array2::<f64>::ones((2, 2)));
    let b = np::moments_axis0(&Array2::<f64>::ones((2, 3)));
    a.merge(b);
}

/// Splits `data` at the sorted cut points and returns the pieces.
fn split_at_cuts<T: Clone>(data: &[T], cuts: &[usize]) -> Vec<Vec<T>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for c in cuts {
        pieces.push(data[start..c].to_vec());
        start = c;
    }
    pieces.push(data[start..].to_vec());
    pieces
}

/// Merges per-piece moments left to right, or as a balanced tree.
fn merge_all<T: Float>(parts: &[Moments<T>], tree: bool) -> Moments<T> {
    if !tree || parts.len() <= 1 {
        return parts.iter().fold(Moments::empty(), |acc, &m| acc.merge(m));
    }
    let mid = parts.len() / 2;
    merge_all(&parts[..mid], true).merge(merge_all(&parts[mid..], true))
}

/// `|got - want| <= rel * max(|want|, floor)`.
fn close_to(got: f64, want: f64, rel: f64, floor: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(floor)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn moments_merge_matches_whole_f64(
        data in prop::collection::vec(-1e3f64..1e3, 0..300),
        offset in prop::sample::select(vec![0.0f64, 1.0, 1e3, 1e6]),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        tree in any::<bool>(),
    ) {
        let data: Vec<f64> = data.iter().map(|x| x + offset).collect();
        let whole = np::moments(&Array1::from(data.clone()));
        let parts: Vec<Moments<f64>> = split_at_cuts(&data, &cuts)
            .into_iter()
            .map(|p| np::moments(&Array1::from(p)))
            .collect();
        let merged = merge_all(&parts, tree);
        prop_assert_eq!(merged.count, whole.count);
        if whole.count == 0 {
            prop_assert_eq!(merged, Moments::empty());
        } else {
            // Relative to the data's scale: the mean can be near 0 after cancellation.
            let scale = data.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            prop_assert!(close_to(merged.mean, whole.mean, 1e-12, scale),
                "mean {} vs {}", merged.mean, whole.mean);
            // m2 relative to itself, with a floor of n * (eps-sized deviations)^2 for
            // (nearly) constant data.
            let floor = whole.count as f64 * (scale * 1e-6).powi(2);
            prop_assert!(close_to(merged.m2, whole.m2, 1e-12, floor),
                "m2 {} vs {}", merged.m2, whole.m2);
            prop_assert!(close_to(merged.std(), whole.std(), 1e-12, scale * 1e-6));
        }
    }

    #[test]
    fn moments_merge_matches_whole_f32(
        data in prop::collection::vec(-1e3f32..1e3, 0..300),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        tree in any::<bool>(),
    ) {
        let whole = np::moments(&Array1::from(data.clone()));
        let parts: Vec<Moments<f32>> = split_at_cuts(&data, &cuts)
            .into_iter()
            .map(|p| np::moments(&Array1::from(p)))
            .collect();
        let merged = merge_all(&parts, tree);
        prop_assert_eq!(merged.count, whole.count);
        if whole.count > 0 {
            let scale = data.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64));
            prop_assert!(close_to(merged.mean as f64, whole.mean as f64, 1e-4, scale));
            let floor = whole.count as f64 * (scale * 1e-3).powi(2);
            prop_assert!(close_to(merged.m2 as f64, whole.m2 as f64, 1e-4, floor),
                "m2 {} vs {}", merged.m2, whole.m2);
        }
    }

    #[test]
    fn moments_axis0_merge_matches_whole(
        rows in 0usize..40,
        cols in 0usize..5,
        seed in prop::collection::vec(-1e3f64..1e3, 200),
        cut in any::<usize>(),
    ) {
        let a = Array2::from_shape_fn((rows, cols), |(i, j)| seed[(i * 5 + j) % 200] + j as f64 * 100.0);
        let whole = np::moments_axis0(&a);
        let c = cut % (rows + 1);
        let merged = np::moments_axis0(&a.slice(s![..c, ..]).to_owned())
            .merge(np::moments_axis0(&a.slice(s![c.., ..]).to_owned()));
        prop_assert_eq!(merged.count, rows);
        if rows > 0 {
            for j in 0..cols {
                prop_assert!(close_to(merged.mean[j], whole.mean[j], 1e-12, 1e3));
                prop_assert!(close_to(merged.m2[j], whole.m2[j], 1e-12, rows as f64 * 1e-6));
            }
        }
    }

    #[test]
    fn std_matches_naive_two_pass(data in prop::collection::vec(-1e6f64..1e6, 1..200)) {
        let n = data.len() as f64;
        let mean = data.iter().sum::<f64>() / n;
        let var = data.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let a = Array1::from(data);
        prop_assert!(close_to(np::std(&a), var.sqrt(), 1e-9, 1e-3));
        prop_assert!(close_to(np::mean(&a), mean, 1e-12, 1e6));
    }
}

#[test]
fn ties_of_signed_zeros_go_to_the_second_operand_as_in_numpy() {
    use annotated_libs::cpu::numpy as np;
    use ndarray::array;
    // np.minimum(-0.0, 0.0) is 0.0; np.minimum(0.0, -0.0) is -0.0 (NumPy 2).
    let m = np::minimum(&array![-0.0f64, 0.0], &array![0.0, -0.0]);
    assert_eq!(
        (m[0].to_bits(), m[1].to_bits()),
        (0.0f64.to_bits(), (-0.0f64).to_bits())
    );
    let m = np::maximum(&array![-0.0f64, 0.0], &array![0.0, -0.0]);
    assert_eq!(
        (m[0].to_bits(), m[1].to_bits()),
        (0.0f64.to_bits(), (-0.0f64).to_bits())
    );
    // np.array([0.0, -0.0]).min() is -0.0.
    assert_eq!(
        np::min(&array![0.0f64, -0.0]).to_bits(),
        (-0.0f64).to_bits()
    );
}

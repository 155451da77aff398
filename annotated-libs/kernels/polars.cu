// polars.cu: the kernels of `annotated_libs::polars` that numpy.cu lacks.
//
// Compiled after common.cuh and numpy.cu (the polars module's `BACH_KERNELS`): its
// column arithmetic, masks and sums are numpy.cu's (the same IEEE operations as polars'),
// and two things differ (below). polars compares floats in a TOTAL order: NaN is greater
// than every number and equal to itself (`TotalOrd` in polars-utils, the
// `tot_gt_kernel_broadcast` of polars-compute), where C's `>` makes every comparison with
// NaN false. Launch convention as numpy.cu's array-scalar comparisons:
//
//     tot_gt_scalar_T (unsigned long long n, const T* a, T s, bool* out)  out = a >  s (total order)
//     tot_lt_scalar_T (unsigned long long n, const T* a, T s, bool* out)  out = a <  s (total order)
//
// The expressions are polars-compute's: gt(x, s) = !(isnan(s) || s >= x),
// lt(x, s) = !(isnan(x) || x >= s).

//
// Arithmetic with a scalar follows polars-compute's float kernels too (arithmetic/float.rs),
// which differ from plain IEEE operations at the edges: adding or subtracting a zero returns
// the column unchanged (-0.0 + 0.0 stays -0.0), subtracting s adds -s, multiplying by 1 or
// -1 is a copy or a negation, and dividing by s multiplies by 1 / s (so `a / 100000` is
// `a * 1e-5`, which rounds differently from a division):
//
//     pl_add_scalar_T, pl_sub_scalar_T, pl_mul_scalar_T, pl_div_scalar_T
//         (unsigned long long n, const T* a, T s, T* out)

#define BACH_PL_MUL(T, x, s) ((s) == (T)1 ? (x) : ((s) == (T)-1 ? -(x) : (x) * (s)))

#define BACH_POLARS_KERNELS(T, SFX)                                                        \
    BACH_WITH_SCALAR(tot_gt_scalar_##SFX, T, bool, !(isnan(y) || y >= x))                 \
    BACH_WITH_SCALAR(tot_lt_scalar_##SFX, T, bool, !(isnan(x) || x >= y))                 \
    BACH_WITH_SCALAR(pl_add_scalar_##SFX, T, T, y == (T)0 ? x : x + y)                    \
    BACH_WITH_SCALAR(pl_sub_scalar_##SFX, T, T, y == (T)0 ? x : x + (-y))                 \
    BACH_WITH_SCALAR(pl_mul_scalar_##SFX, T, T, BACH_PL_MUL(T, x, y))                     \
    BACH_WITH_SCALAR(pl_div_scalar_##SFX, T, T, BACH_PL_MUL(T, x, (T)1 / y))

BACH_POLARS_KERNELS(float, f32)
BACH_POLARS_KERNELS(double, f64)

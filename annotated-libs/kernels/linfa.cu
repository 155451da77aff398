// linfa.cu: the column statistics and the scaling of linfa's models on a device
// (annotated_libs::linfa::device drives them; the matrix products are cuBLAS's).
//
// Matrices are row-major (`cols` doubles per row). The arithmetic is ndarray's and linfa's,
// bit for bit, so that a model fitted or applied here equals the CPU's:
//
// - `column_moments_f64`: per column, the mean as ndarray's `mean_axis(Axis(0))` computes
//   it (the rows summed in order from 0, divided by the row count) and the variance as
//   `var_axis(Axis(0), ddof)` does (Welford's update in row order, with ndarray's fused
//   multiply-add `(x - mean).mul_add(delta, sum_sq)`, divided by `rows - ddof`);
// - `center_scale_f64`: `(x - offset) * scale` per column (linfa's `LinearScaler`
//   transform); `center_f64`: `x - offset` (the centring of linfa's PCA transform).
//
// Every sum and product is written with `__dadd_rn`/`__dsub_rn`/`__dmul_rn`/`__ddiv_rn`
// (and the fused `fma` where ndarray fuses), so the compiler cannot contract them into
// fused multiply-adds that the CPU does not perform.
//
// Contract: device pointers as the Rust side lists them; `n` counts what the grid-stride loop
// walks (columns for the moments, elements for the scaling).

#ifdef BACH_HOST_EMULATION
#ifndef BACH_ROUNDED_OPS
#define BACH_ROUNDED_OPS
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
#endif
#endif

// means[j] = sum_i x[i][j] / rows; vars[j] = Welford's sum of squares / (rows - ddof).
extern "C" __global__ void column_moments_f64(unsigned long long n, const double* x, int rows,
                                              int cols, double ddof, double* means,
                                              double* vars) {
    BACH_FOR_EACH(j, n) {
        double sum = 0.0, mean = 0.0, sum_sq = 0.0;
        for (int i = 0; i < rows; ++i) {
            double v = x[(unsigned long long)i * cols + j];
            sum = __dadd_rn(sum, v);
            double count = (double)(i + 1);
            double delta = __dsub_rn(v, mean);
            mean = __dadd_rn(mean, __ddiv_rn(delta, count));
            sum_sq = fma(__dsub_rn(v, mean), delta, sum_sq);
        }
        means[j] = __ddiv_rn(sum, (double)rows);
        vars[j] = __ddiv_rn(sum_sq, __dsub_rn((double)rows, ddof));
    }
}

// out[i][j] = (x[i][j] - offsets[j]) * scales[j] over the n = rows * cols elements.
extern "C" __global__ void center_scale_f64(unsigned long long n, const double* x, int cols,
                                            const double* offsets, const double* scales,
                                            double* out) {
    BACH_FOR_EACH(e, n) {
        int j = (int)(e % (unsigned long long)cols);
        out[e] = __dmul_rn(__dsub_rn(x[e], offsets[j]), scales[j]);
    }
}

// out[i][j] = x[i][j] - offsets[j] over the n = rows * cols elements.
extern "C" __global__ void center_f64(unsigned long long n, const double* x, int cols,
                                      const double* offsets, double* out) {
    BACH_FOR_EACH(e, n) {
        int j = (int)(e % (unsigned long long)cols);
        out[e] = __dsub_rn(x[e], offsets[j]);
    }
}

// flag[0] = 1 when one of the n doubles of x is NaN or infinite (left as it was otherwise;
// every thread that finds one writes the same 1). The input check of the models' device
// functions: the CPU models refuse such data.
extern "C" __global__ void nonfinite_flag_f64(unsigned long long n, const double* x, int* flag) {
    BACH_FOR_EACH(e, n) {
        // x - x is 0 for every finite x and NaN for NaN and infinities.
        if (!(__dsub_rn(x[e], x[e]) == 0.0)) flag[0] = 1;
    }
}

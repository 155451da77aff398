// ndarray.cuh: the kernel families of the ndarray module's op table
// (`annotated-libs/src/ndarray/table.rs`). The table generates one line per operation,
// e.g. `BACH_ND_UNARY(sqrt, (sqrt(x)))`, after `common.cuh` and this file; that line is the
// only place the operation's device arithmetic is written. It defines
//   - the op's ELEMENT FUNCTION `bach_el_{op}<T>(...)`: the arithmetic on one element, a
//     __device__ function that a fused kernel can call for each op of a stage, and
//   - the op's ENTRY POINTS, `{op}_f32` and `{op}_f64` (plus the scalar forms below), which
//     the runtime launches one call at a time, with the launch convention of numpy.cu:
//     `n` first, then the array arguments' device pointers in declaration order, then the
//     scalar arguments, then the output.
//
// Families (x: the element of the first array, y: of the second or the scalar):
//   BACH_ND_UNARY(op, EXPR(x))           {op}_T          (n, const T* a, T* out)
//   BACH_ND_BINARY(op, EXPR(x, y))       {op}_T          (n, const T* a, const T* b, T* out)
//                                        {op}_scalar_T   (n, const T* a, T s, T* out)   a op s
//                                        scalar_{op}_T   (n, const T* a, T s, T* out)   s op a
//   BACH_ND_COMPARE(op, EXPR(x, y))      {op}_T, {op}_scalar_T, writing bool
//   BACH_ND_PARAM(op, P32, P64, EXPR(x, p))   {op}_T (n, const T* a, P p, T* out), P the
//                                        parameter's type for f32 / f64 (powi: int)
//   BACH_ND_PARAM2(op, EXPR(x, p, q))    {op}_T (n, const T* a, T p, T q, T* out)
//   BACH_ND_LOGICAL(op, EXPR(x, y))      {op}_bool (n, const bool* a, const bool* b, bool* out)
// Every EXPR is written in parentheses in the generated line, so commas inside it are safe.

// Rust's `f32::signum` / `f64::signum`: NaN for NaN, else 1 with the sign of x (so -0 -> -1).
template <typename T> __device__ __forceinline__ T bach_signum(T x) {
    return isnan(x) ? x : copysign((T)1, x);
}

// Rust's `powi` (compiler-builtins `__powidf2` / `__powisf2`): square-and-multiply in T, then
// the reciprocal for a negative exponent. Not `pow`, whose rounding differs.
template <typename T> __device__ __forceinline__ T bach_powi(T a, int b) {
    bool recip = b < 0;
    unsigned int e = recip ? 0u - (unsigned int)b : (unsigned int)b;
    T mul = (T)1;
    for (;;) {
        if (e & 1u) mul *= a;
        e >>= 1;
        if (e == 0) break;
        a *= a;
    }
    return recip ? (T)1 / mul : mul;
}

#define BACH_ND_UNARY(NAME, EXPR)                                                          \
    template <typename T> __device__ __forceinline__ T bach_el_##NAME(T x) { return EXPR; } \
    BACH_UNARY(NAME##_f32, float, bach_el_##NAME(x))                                       \
    BACH_UNARY(NAME##_f64, double, bach_el_##NAME(x))

#define BACH_ND_BINARY(NAME, EXPR)                                                         \
    template <typename T> __device__ __forceinline__ T bach_el_##NAME(T x, T y) {          \
        return EXPR;                                                                       \
    }                                                                                      \
    BACH_BINARY(NAME##_f32, float, float, bach_el_##NAME(x, y))                            \
    BACH_BINARY(NAME##_f64, double, double, bach_el_##NAME(x, y))                          \
    BACH_WITH_SCALAR(NAME##_scalar_f32, float, float, bach_el_##NAME(x, y))                \
    BACH_WITH_SCALAR(NAME##_scalar_f64, double, double, bach_el_##NAME(x, y))              \
    BACH_SCALAR_FIRST(scalar_##NAME##_f32, float, bach_el_##NAME(x, y))                    \
    BACH_SCALAR_FIRST(scalar_##NAME##_f64, double, bach_el_##NAME(x, y))

#define BACH_ND_COMPARE(NAME, EXPR)                                                        \
    template <typename T> __device__ __forceinline__ bool bach_el_##NAME(T x, T y) {       \
        return EXPR;                                                                       \
    }                                                                                      \
    BACH_BINARY(NAME##_f32, float, bool, bach_el_##NAME(x, y))                             \
    BACH_BINARY(NAME##_f64, double, bool, bach_el_##NAME(x, y))                            \
    BACH_WITH_SCALAR(NAME##_scalar_f32, float, bool, bach_el_##NAME(x, y))                 \
    BACH_WITH_SCALAR(NAME##_scalar_f64, double, bool, bach_el_##NAME(x, y))

#define BACH_ND_PARAM(NAME, P32, P64, EXPR)                                                \
    template <typename T, typename P> __device__ __forceinline__ T bach_el_##NAME(T x, P p) { \
        return EXPR;                                                                       \
    }                                                                                      \
    extern "C" __global__ void NAME##_f32(unsigned long long n, const float* a, P32 p,     \
                                          float* out) {                                    \
        BACH_FOR_EACH(i, n) { out[i] = bach_el_##NAME(a[i], p); }                          \
    }                                                                                      \
    extern "C" __global__ void NAME##_f64(unsigned long long n, const double* a, P64 p,    \
                                          double* out) {                                   \
        BACH_FOR_EACH(i, n) { out[i] = bach_el_##NAME(a[i], p); }                          \
    }

#define BACH_ND_PARAM2(NAME, EXPR)                                                         \
    template <typename T> __device__ __forceinline__ T bach_el_##NAME(T x, T p, T q) {     \
        return EXPR;                                                                       \
    }                                                                                      \
    extern "C" __global__ void NAME##_f32(unsigned long long n, const float* a, float p,   \
                                          float q, float* out) {                           \
        BACH_FOR_EACH(i, n) { out[i] = bach_el_##NAME(a[i], p, q); }                       \
    }                                                                                      \
    extern "C" __global__ void NAME##_f64(unsigned long long n, const double* a, double p, \
                                          double q, double* out) {                         \
        BACH_FOR_EACH(i, n) { out[i] = bach_el_##NAME(a[i], p, q); }                       \
    }

#define BACH_ND_LOGICAL(NAME, EXPR)                                                        \
    __device__ __forceinline__ bool bach_el_##NAME(bool x, bool y) { return EXPR; }        \
    BACH_BINARY(NAME##_bool, bool, bool, bach_el_##NAME(x, y))

// `select(cond, x, y)`: cond ? x : y, with either branch (or both) an array or a scalar.
// Arrays come first in the launch convention, so the scalar-first form takes (cond, y, s).
#define BACH_ND_SELECT(T, SFX)                                                              \
    BACH_SELECT(select, T, SFX)                                                             \
    extern "C" __global__ void scalar_select_##SFX(unsigned long long n, const bool* cond,  \
                                                   const T* y, T s, T* out) {               \
        BACH_FOR_EACH(i, n) { out[i] = cond[i] ? s : y[i]; }                                \
    }                                                                                       \
    extern "C" __global__ void select_scalars_##SFX(unsigned long long n, const bool* cond, \
                                                    T s, T t, T* out) {                     \
        BACH_FOR_EACH(i, n) { out[i] = cond[i] ? s : t; }                                   \
    }

BACH_ND_SELECT(float, f32)
BACH_ND_SELECT(double, f64)
BACH_UNARY(not_bool, bool, !x)
BACH_REDUCE(sum_f32, float, 0.0f, x + y)
BACH_REDUCE(sum_f64, double, 0.0, x + y)

// ---- the op table's lines follow --------------------------------------------------------

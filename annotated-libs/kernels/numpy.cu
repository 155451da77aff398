// numpy.cu: CUDA kernels for the NumPy-style operations of `annotated_libs::cpu::numpy`.
//
// Compiled at run time with NVRTC (see `bach-runtime/src/device/cuda/nvrtc.rs`). The same file
// also compiles as plain host C++ when `host_emulation.h` is force-included
// (`g++ -include host_emulation.h -include common.cuh -x c++ numpy.cu`); the kernel tests in
// `annotated-libs/tests/kernels_host.rs` use that to check the arithmetic without a GPU.
// This file includes no headers: NVRTC provides the math builtins (sqrt, exp, erf, pow,
// isnan, ...) and their float overloads itself. It is compiled with `common.cuh` in front
// (the grid-stride loop and the kernel generators used below).
//
// NAMING
//   Every kernel is `extern "C" __global__` and named `{op}_{dtype}`, dtype `f32` (float) or
//   `f64` (double); kernels over booleans only are named `{op}_bool`.
//
// LAUNCH CONVENTION
//   Any 1-D grid and any 1-D block work: every kernel walks its elements with a
//   grid-stride loop and 64-bit indices, so `n` may exceed the number of threads.
//   `bool` is one byte (0 or 1). Arrays are contiguous; `out` may not alias the inputs of
//   the reductions, but may alias the inputs of elementwise kernels (each element is read
//   before it is written, by the same thread).
//
//   Elementwise, arrays `a`, `b`, scalar `s`:
//     unary           {op}_T          (unsigned long long n, const T* a,              T* out)
//     binary          {op}_T          (unsigned long long n, const T* a, const T* b,  T* out)
//     array-scalar    {op}_scalar_T   (unsigned long long n, const T* a, T s,         T* out)   out = a op s
//     scalar-array    scalar_{op}_T   (unsigned long long n, const T* a, T s,         T* out)   out = s op a
//     comparisons     {cmp}_T / {cmp}_scalar_T: as binary / array-scalar, with `bool* out`
//     logical         logical_and_bool, logical_or_bool (n, const bool* a, const bool* b, bool* out)
//                     logical_not_bool (n, const bool* a, bool* out)
//     where_T         (n, const bool* cond, const T* x, const T* y, T* out)  out = cond ? x : y
//     where_scalar_T  (n, const bool* cond, const T* x, T s,        T* out)  out = cond ? x : s
//     mask_T          (n, const T* a, const bool* cond, T value,    T* out)  out = cond ? value : a
//     copy_T          (n, const T* a, T* out)
//     full_T          (n, T value, T* out);  zeros_T, ones_T (n, T* out)
//
//   The runtime passes device pointers of a function's array parameters first, in
//   declaration order, then its scalar parameters, then the output; so `scalar_{op}(s, a)`
//   is launched as (n, a, s, out). Size parameters of allocation functions are `n` itself.
//
//   minimum / maximum propagate NaN like NumPy (NaN if either operand is NaN; note that
//   C's fmin/fmax do NOT); of two equal operands (-0 and +0) they return the second, as NumPy.
//
//   Reductions sum_T, min_T, max_T: (unsigned long long n, const T* a, T* partials)
//     Block-level partial reductions: block b writes partials[b], the reduction of the
//     elements its threads visit; `partials` has gridDim.x entries. The HOST then sums /
//     min / maxes the gridDim.x partials (min/max propagating NaN, as here). A block that
//     sees no element writes the identity: 0 for sum, +inf for min, -inf for max (so an
//     empty array gives 0 / +inf / -inf; the host must reject empty min/max like NumPy).
//     blockDim.x may be anything from 1 to BACH_MAX_BLOCK (1024), not only powers of two.
//     Results depend on the launch shape: the rounding of sums (the order of additions),
//     and, for min/max, which of -0 / +0 or of several NaNs is returned.


// Every op for one floating-point dtype T, kernel suffix SFX.
#define BACH_FLOAT_KERNELS(T, SFX)                                                         \
    BACH_ARITH(add, T, SFX, x + y)                                                         \
    BACH_ARITH(subtract, T, SFX, x - y)                                                    \
    BACH_ARITH(multiply, T, SFX, x * y)                                                    \
    BACH_ARITH(divide, T, SFX, x / y)                                                      \
    BACH_ARITH(power, T, SFX, pow(x, y))                                                   \
    BACH_BINARY(minimum_##SFX, T, T, bach_minimum(x, y))                                   \
    BACH_BINARY(maximum_##SFX, T, T, bach_maximum(x, y))                                   \
    BACH_WITH_SCALAR(minimum_scalar_##SFX, T, T, bach_minimum(x, y))                       \
    BACH_WITH_SCALAR(maximum_scalar_##SFX, T, T, bach_maximum(x, y))                       \
    BACH_UNARY(negative_##SFX, T, -x)                                                      \
    BACH_UNARY(abs_##SFX, T, fabs(x))                                                      \
    BACH_UNARY(sqrt_##SFX, T, sqrt(x))                                                     \
    BACH_UNARY(exp_##SFX, T, exp(x))                                                       \
    BACH_UNARY(log_##SFX, T, log(x))                                                       \
    BACH_UNARY(log2_##SFX, T, log2(x))                                                     \
    BACH_UNARY(log10_##SFX, T, log10(x))                                                   \
    BACH_UNARY(sin_##SFX, T, sin(x))                                                       \
    BACH_UNARY(cos_##SFX, T, cos(x))                                                       \
    BACH_UNARY(tan_##SFX, T, tan(x))                                                       \
    BACH_UNARY(arcsin_##SFX, T, asin(x))                                                   \
    BACH_UNARY(arccos_##SFX, T, acos(x))                                                   \
    BACH_UNARY(arctan_##SFX, T, atan(x))                                                   \
    BACH_UNARY(erf_##SFX, T, erf(x))                                                       \
    BACH_UNARY(square_##SFX, T, x * x)                                                     \
    BACH_COMPARE(greater, T, SFX, x > y)                                                   \
    BACH_COMPARE(less, T, SFX, x < y)                                                      \
    BACH_COMPARE(greater_equal, T, SFX, x >= y)                                            \
    BACH_COMPARE(less_equal, T, SFX, x <= y)                                               \
    BACH_COMPARE(equal, T, SFX, x == y)                                                    \
    BACH_COMPARE(not_equal, T, SFX, x != y)                                                \
    BACH_SELECT(where, T, SFX)                                                             \
    extern "C" __global__ void mask_##SFX(unsigned long long n, const T* a,                \
                                          const bool* cond, T value, T* out) {             \
        BACH_FOR_EACH(i, n) { out[i] = cond[i] ? value : a[i]; }                           \
    }                                                                                      \
    BACH_UNARY(copy_##SFX, T, x)                                                           \
    extern "C" __global__ void full_##SFX(unsigned long long n, T value, T* out) {         \
        BACH_FOR_EACH(i, n) { out[i] = value; }                                            \
    }                                                                                      \
    extern "C" __global__ void zeros_##SFX(unsigned long long n, T* out) {                 \
        BACH_FOR_EACH(i, n) { out[i] = (T)0; }                                             \
    }                                                                                      \
    extern "C" __global__ void ones_##SFX(unsigned long long n, T* out) {                  \
        BACH_FOR_EACH(i, n) { out[i] = (T)1; }                                             \
    }                                                                                      \
    BACH_REDUCE(sum_##SFX, T, (T)0, x + y)                                                 \
    BACH_REDUCE(min_##SFX, T, bach_inf<T>(), bach_minimum(x, y))                           \
    BACH_REDUCE(max_##SFX, T, -bach_inf<T>(), bach_maximum(x, y))

BACH_FLOAT_KERNELS(float, f32)
BACH_FLOAT_KERNELS(double, f64)

// ---- booleans --------------------------------------------------------------------------

BACH_BINARY(logical_and_bool, bool, bool, x && y)
BACH_BINARY(logical_or_bool, bool, bool, x || y)
BACH_UNARY(logical_not_bool, bool, !x)

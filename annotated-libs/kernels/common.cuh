// common.cuh: what every kernel source of annotated-libs shares: the grid-stride loop,
// NumPy's NaN-propagating minimum / maximum, and the generators of elementwise and
// block-reduction kernels. The runtime sources (`numpy.cu`, the ndarray module's generated
// source) are compiled with this file in front of them (`concat!` in Rust); the host kernel
// tests force-include it after `host_emulation.h`. No headers: NVRTC provides the math
// builtins itself.
#ifndef BACH_MAX_BLOCK
#define BACH_MAX_BLOCK 1024
#endif

#define BACH_FOR_EACH(i, n)                                                                \
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;  \
         i < (n); i += (unsigned long long)blockDim.x * gridDim.x)

// ---- scalar helpers ------------------------------------------------------------------

// NumPy's scalar minimum / maximum (and `annotated_libs::cpu::numpy`'s): NaN if either
// operand is NaN (the NaN operand itself; the first if both are), otherwise the smaller /
// larger, and the SECOND operand when they compare equal (so minimum(-0, +0) is +0 and
// minimum(+0, -0) is -0).
template <typename T> __device__ __forceinline__ T bach_minimum(T x, T y) {
    return (isnan(x) || x < y) ? x : y;
}

template <typename T> __device__ __forceinline__ T bach_maximum(T x, T y) {
    return (isnan(x) || x > y) ? x : y;
}

template <typename T> __device__ __forceinline__ T bach_inf() { return (T)(1.0 / 0.0); }

// ---- generators: one line per op and dtype ---------------------------------------------

// out[i] = EXPR(x) with x = a[i]
#define BACH_UNARY(NAME, T, EXPR)                                                          \
    extern "C" __global__ void NAME(unsigned long long n, const T* a, T* out) {            \
        BACH_FOR_EACH(i, n) { T x = a[i]; out[i] = (EXPR); }                               \
    }

// out[i] = EXPR(x, y) with x = a[i], y = b[i]; OUT is the output element type
#define BACH_BINARY(NAME, T, OUT, EXPR)                                                    \
    extern "C" __global__ void NAME(unsigned long long n, const T* a, const T* b, OUT* out) { \
        BACH_FOR_EACH(i, n) { T x = a[i]; T y = b[i]; out[i] = (EXPR); }                   \
    }

// out[i] = EXPR(x, y) with x = a[i], y = s (for scalar_{op}, EXPR swaps x and y)
#define BACH_WITH_SCALAR(NAME, T, OUT, EXPR)                                               \
    extern "C" __global__ void NAME(unsigned long long n, const T* a, T s, OUT* out) {     \
        BACH_FOR_EACH(i, n) { T x = a[i]; T y = s; out[i] = (EXPR); }                      \
    }

// An op over two operands, in its three forms: {op}_T, {op}_scalar_T, scalar_{op}_T.
#define BACH_ARITH(OP, T, SFX, EXPR)                                                       \
    BACH_BINARY(OP##_##SFX, T, T, EXPR)                                                    \
    BACH_WITH_SCALAR(OP##_scalar_##SFX, T, T, EXPR)                                        \
    BACH_SCALAR_FIRST(scalar_##OP##_##SFX, T, EXPR)

#define BACH_SCALAR_FIRST(NAME, T, EXPR)                                                   \
    extern "C" __global__ void NAME(unsigned long long n, const T* a, T s, T* out) {       \
        BACH_FOR_EACH(i, n) { T x = s; T y = a[i]; out[i] = (EXPR); }                      \
    }

// A comparison in two forms: {cmp}_T and {cmp}_scalar_T, writing bool.
#define BACH_COMPARE(OP, T, SFX, EXPR)                                                     \
    BACH_BINARY(OP##_##SFX, T, bool, EXPR)                                                 \
    BACH_WITH_SCALAR(OP##_scalar_##SFX, T, bool, EXPR)

// Block-level partial reduction; see the reductions in numpy.cu's LAUNCH CONVENTION. Correct for any blockDim.x in
// [1, BACH_MAX_BLOCK]: the tree step pairs thread t with t + s only where t + s exists.
#define BACH_REDUCE(NAME, T, IDENTITY, COMBINE)                                            \
    extern "C" __global__ void NAME(unsigned long long n, const T* a, T* partials) {       \
        __shared__ T acc[BACH_MAX_BLOCK];                                                  \
        T x = (IDENTITY);                                                                  \
        BACH_FOR_EACH(i, n) { T y = a[i]; x = (COMBINE); }                                 \
        const unsigned int t = threadIdx.x;                                                \
        acc[t] = x;                                                                        \
        __syncthreads();                                                                   \
        for (unsigned int s = 1; s < blockDim.x; s *= 2) {                                 \
            if (t % (2 * s) == 0 && t + s < blockDim.x) {                                  \
                x = acc[t]; T y = acc[t + s]; acc[t] = (COMBINE);                          \
            }                                                                              \
            __syncthreads();                                                               \
        }                                                                                  \
        if (t == 0) partials[blockIdx.x] = acc[0];                                         \
    }

// Selection between an array and an array or a scalar, by a mask, in two forms:
//   {NAME}_T        (n, const bool* cond, const T* x, const T* y, T* out)  out = cond ? x : y
//   {NAME}_scalar_T (n, const bool* cond, const T* x, T s,        T* out)  out = cond ? x : s
#define BACH_SELECT(NAME, T, SFX)                                                          \
    extern "C" __global__ void NAME##_##SFX(unsigned long long n, const bool* cond,        \
                                            const T* x, const T* y, T* out) {              \
        BACH_FOR_EACH(i, n) { out[i] = cond[i] ? x[i] : y[i]; }                            \
    }                                                                                      \
    extern "C" __global__ void NAME##_scalar_##SFX(unsigned long long n, const bool* cond, \
                                                   const T* x, T s, T* out) {              \
        BACH_FOR_EACH(i, n) { out[i] = cond[i] ? x[i] : s; }                               \
    }

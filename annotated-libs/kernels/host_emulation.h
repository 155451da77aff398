// host_emulation.h: lets `numpy.cu` compile as plain host C++, to test the kernels'
// arithmetic on a machine without a GPU.
//
//   g++ -O2 -shared -fPIC -pthread -include host_emulation.h -include common.cuh -x c++ numpy.cu -o libkernels.so
//
// What it provides:
//   - `__global__`, `__device__`, `__forceinline__` expand to (almost) nothing, so every
//     kernel becomes an exported `extern "C"` host function with the same parameters.
//   - `blockIdx`, `blockDim`, `threadIdx`, `gridDim` are thread-local `dim3`s.
//   - `bach_host_launch(grid, block, body, ctx)` runs a grid: blocks one after another, and
//     the threads of a block as real OS threads, so `__syncthreads()` is a barrier across
//     the block's threads and `__shared__` (a function-local `static`) is shared by them
//     exactly as block shared memory is (blocks run one at a time, so reuse is safe).
//     `body(ctx)` is called once per emulated thread, with the indices set; it calls the
//     kernel. A block of one thread runs on a single OS thread and needs no barrier.
//   - The CUDA math builtins map to <cmath> (float and double overloads, like CUDA's).
#ifndef BACH_HOST_EMULATION_H
#define BACH_HOST_EMULATION_H

#define BACH_HOST_EMULATION 1

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned int x, y, z;
};

thread_local dim3 threadIdx = {0, 0, 0};
thread_local dim3 blockIdx = {0, 0, 0};
thread_local dim3 blockDim = {1, 1, 1};
thread_local dim3 gridDim = {1, 1, 1};

using std::acos;
using std::asin;
using std::atan;
using std::cbrt;
using std::ceil;
using std::copysign;
using std::cos;
using std::cosh;
using std::erf;
using std::exp;
using std::exp2;
using std::expm1;
using std::fabs;
using std::floor;
using std::fmod;
using std::isnan;
using std::log;
using std::log10;
using std::log1p;
using std::log2;
using std::pow;
using std::round;
using std::signbit;
using std::sin;
using std::sinh;
using std::sqrt;
using std::tan;
using std::tanh;
using std::trunc;

namespace bach_host {

// A reusable barrier for the threads of one block (C++11; <barrier> needs C++20).
class Barrier {
  public:
    explicit Barrier(unsigned int count) : count_(count) {}
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        unsigned long long gen = generation_;
        if (++arrived_ == count_) {
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return gen != generation_; });
        }
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    unsigned int count_;
    unsigned int arrived_ = 0;
    unsigned long long generation_ = 0;
};

thread_local Barrier* block_barrier = nullptr;

inline void run_thread(unsigned int grid, unsigned int block, unsigned int b, unsigned int t,
                       Barrier* barrier, void (*body)(void*), void* ctx) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    blockIdx = {b, 0, 0};
    threadIdx = {t, 0, 0};
    block_barrier = barrier;
    body(ctx);
}

} // namespace bach_host

inline void __syncthreads() {
    if (bach_host::block_barrier != nullptr) bach_host::block_barrier->wait();
}

// Runs `body(ctx)` once per thread of a `grid` x `block` launch (1-D), with blockIdx,
// threadIdx, blockDim and gridDim set. Blocks run one after another.
extern "C" void bach_host_launch(unsigned int grid, unsigned int block, void (*body)(void*),
                                 void* ctx) {
    for (unsigned int b = 0; b < grid; ++b) {
        if (block == 1) {
            bach_host::run_thread(grid, block, b, 0, nullptr, body, ctx);
            continue;
        }
        bach_host::Barrier barrier(block);
        std::vector<std::thread> threads;
        threads.reserve(block);
        for (unsigned int t = 0; t < block; ++t)
            threads.emplace_back(bach_host::run_thread, grid, block, b, t, &barrier, body, ctx);
        for (auto& th : threads) th.join();
    }
}

#endif // BACH_HOST_EMULATION_H

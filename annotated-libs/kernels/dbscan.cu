// dbscan.cu: DBSCAN's kernels (annotated_libs::linfa::clustering::device drives them).
//
// The points live in row blocks (row-major, `d` doubles per row). Every pair kernel runs
// over one tile grid of a query block (`nq` rows, the first numbered `q0`) against a
// candidate block (`nc` rows, the first `c0`): a block of 256 threads takes one 32 x 32
// tile of pairs at a time (grid-stride over the tiles; the launch's element count is
// `tiles * 256`), loads the tile's rows 32 features at a time into shared memory and
// sums each pair's squared differences in feature order with `__dadd_rn`/`__dmul_rn`, so
// the sum is rounded exactly as linfa's `L2Dist::rdistance` (a sequential sum of
// `diff * diff`, never contracted to a fused multiply-add). Pairs closer than
// `eps2` (squared) are neighbours, as linfa's `rdistance < eps^2`.
//
// Contract: blocks of exactly 256 threads (the runtime's launch of every kernel), device
// pointers as the Rust side lists them, and `*_in` parameters the same buffer as the
// output that follows them (the host stand-ins read the old contents from there).
//
// Clusters are a union-find over the core points: `parent[i]` points to a smaller index, so
// a component's root is its smallest core point, the point linfa's scan seeds the
// cluster from. Hooking goes through atomicCAS (a root becomes a child only while it is
// still a root); path halving writes only ancestors, so concurrent finds stay correct.

#define BACH_DBSCAN_TILE 32
#define BACH_DBSCAN_CHUNK 32
#define BACH_DBSCAN_THREADS 256
// Pairs per thread: a tile's 1024 pairs over 256 threads.
#define BACH_DBSCAN_PAIRS 4

#ifdef BACH_HOST_EMULATION
// Host C++ (kernels run as OS threads): the CUDA atomics and rounding intrinsics.
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline int atomicCAS(int* p, int expected, int desired) {
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    return expected;
}
inline int atomicMin(int* p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST)) {
    }
    return old;
}
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
#endif

// The squared distances of this thread's pairs in `tile`: query row `*qi` (local to the
// query block) against candidate rows `cj[m]`; `ok[m]` is false for pairs past the blocks'
// ends. Every thread of the block must call it (it synchronises the block).
__device__ void bach_dbscan_tile(const double* xq, const double* xc, int nq, int nc, int d,
                                 unsigned long long tile, int* qi, int* cj, bool* ok,
                                 double* d2) {
    __shared__ double qs[BACH_DBSCAN_TILE][BACH_DBSCAN_CHUNK + 1];
    __shared__ double cs[BACH_DBSCAN_TILE][BACH_DBSCAN_CHUNK + 1];
    unsigned long long tiles_c = ((unsigned long long)nc + BACH_DBSCAN_TILE - 1) / BACH_DBSCAN_TILE;
    int q_first = (int)(tile / tiles_c) * BACH_DBSCAN_TILE;
    int c_first = (int)(tile % tiles_c) * BACH_DBSCAN_TILE;
    int t = threadIdx.x;
    *qi = q_first + t % BACH_DBSCAN_TILE;
    for (int m = 0; m < BACH_DBSCAN_PAIRS; ++m) {
        cj[m] = c_first + t / BACH_DBSCAN_TILE + m * (BACH_DBSCAN_THREADS / BACH_DBSCAN_TILE);
        ok[m] = *qi < nq && cj[m] < nc;
        d2[m] = 0.0;
    }
    for (int k0 = 0; k0 < d; k0 += BACH_DBSCAN_CHUNK) {
        // 32 rows x 32 features of each block, 4 elements per thread, consecutive threads
        // reading consecutive features (coalesced).
        for (int e = t; e < BACH_DBSCAN_TILE * BACH_DBSCAN_CHUNK; e += BACH_DBSCAN_THREADS) {
            int r = e / BACH_DBSCAN_CHUNK, k = e % BACH_DBSCAN_CHUNK;
            bool in_d = k0 + k < d;
            qs[r][k] = (q_first + r < nq && in_d) ? xq[(unsigned long long)(q_first + r) * d + k0 + k] : 0.0;
            cs[r][k] = (c_first + r < nc && in_d) ? xc[(unsigned long long)(c_first + r) * d + k0 + k] : 0.0;
        }
        __syncthreads();
        int kn = d - k0 < BACH_DBSCAN_CHUNK ? d - k0 : BACH_DBSCAN_CHUNK;
        int qr = *qi - q_first;
        for (int m = 0; m < BACH_DBSCAN_PAIRS; ++m) {
            int cr = cj[m] - c_first;
            double acc = d2[m];
            for (int k = 0; k < kn; ++k) {
                double diff = qs[qr][k] - cs[cr][k];
                acc = __dadd_rn(acc, __dmul_rn(diff, diff));
            }
            d2[m] = acc;
        }
        __syncthreads();
    }
}

#define BACH_DBSCAN_FOR_EACH_TILE(tile, n)                                                   \
    for (unsigned long long tile = blockIdx.x; tile < (n) / BACH_DBSCAN_THREADS;             \
         tile += gridDim.x)

// counts[i] += the candidates closer than eps to query row i.
extern "C" __global__ void dbscan_count_f64(unsigned long long n, const double* xq,
                                            const double* xc, int nq, int nc, int d,
                                            double eps2, const int* counts_in, int* counts) {
    (void)counts_in;
    __shared__ int tile_counts[BACH_DBSCAN_TILE];
    BACH_DBSCAN_FOR_EACH_TILE(tile, n) {
        if (threadIdx.x < BACH_DBSCAN_TILE) tile_counts[threadIdx.x] = 0;
        int qi, cj[BACH_DBSCAN_PAIRS];
        bool ok[BACH_DBSCAN_PAIRS];
        double d2[BACH_DBSCAN_PAIRS];
        bach_dbscan_tile(xq, xc, nq, nc, d, tile, &qi, cj, ok, d2);
        int near = 0;
        for (int m = 0; m < BACH_DBSCAN_PAIRS; ++m) near += (ok[m] && d2[m] < eps2) ? 1 : 0;
        if (near > 0) atomicAdd(&tile_counts[qi % BACH_DBSCAN_TILE], near);
        __syncthreads();
        unsigned long long tiles_c = ((unsigned long long)nc + BACH_DBSCAN_TILE - 1) / BACH_DBSCAN_TILE;
        int row = (int)(tile / tiles_c) * BACH_DBSCAN_TILE + threadIdx.x;
        if (threadIdx.x < BACH_DBSCAN_TILE && row < nq && tile_counts[threadIdx.x] > 0)
            atomicAdd(&counts[row], tile_counts[threadIdx.x]);
        __syncthreads();
    }
}

// The root of x's tree, halving the path on the way.
__device__ int bach_dbscan_find(int* parent, int x) {
    volatile int* p = parent;
    int px = p[x];
    while (px != x) {
        int gp = p[px];
        if (gp != px) p[x] = gp; // gp is an ancestor of x: still a valid parent
        x = px;
        px = p[x];
    }
    return x;
}

// Joins the trees of a and b: the larger root becomes a child of the smaller.
__device__ void bach_dbscan_unite(int* parent, int a, int b) {
    while (true) {
        a = bach_dbscan_find(parent, a);
        b = bach_dbscan_find(parent, b);
        if (a == b) return;
        if (a > b) {
            int t = a;
            a = b;
            b = t;
        }
        if (atomicCAS(&parent[b], b, a) == b) return;
    }
}

// Unites every pair of core points closer than eps (query rows q0.., candidates c0..;
// `core` and `parent` indexed by row number). Each unordered pair once is enough: pairs
// with the candidate not after the query are skipped.
extern "C" __global__ void dbscan_union_f64(unsigned long long n, const double* xq,
                                            const double* xc, int nq, int nc, int d,
                                            double eps2, int q0, int c0, const int* core,
                                            const int* parent_in, int* parent) {
    (void)parent_in;
    BACH_DBSCAN_FOR_EACH_TILE(tile, n) {
        int qi, cj[BACH_DBSCAN_PAIRS];
        bool ok[BACH_DBSCAN_PAIRS];
        double d2[BACH_DBSCAN_PAIRS];
        bach_dbscan_tile(xq, xc, nq, nc, d, tile, &qi, cj, ok, d2);
        for (int m = 0; m < BACH_DBSCAN_PAIRS; ++m) {
            int a = q0 + qi, b = c0 + cj[m];
            if (ok[m] && b > a && d2[m] < eps2 && core[a] && core[b]) bach_dbscan_unite(parent, a, b);
        }
    }
}

// parent[i] = the root of i (after the unions: each tree flattened).
extern "C" __global__ void dbscan_compress(unsigned long long n, const int* parent_in,
                                           int* parent) {
    (void)parent_in;
    BACH_FOR_EACH(i, n) { parent[i] = bach_dbscan_find(parent, (int)i); }
}

// For each non-core query row, owner = the smallest root among its core neighbours
// (`root` flattened by dbscan_compress): the cluster linfa's scan reaches it from first.
extern "C" __global__ void dbscan_border_f64(unsigned long long n, const double* xq,
                                             const double* xc, int nq, int nc, int d,
                                             double eps2, int q0, int c0, const int* core,
                                             const int* root, const int* owner_in,
                                             int* owner) {
    (void)owner_in;
    BACH_DBSCAN_FOR_EACH_TILE(tile, n) {
        int qi, cj[BACH_DBSCAN_PAIRS];
        bool ok[BACH_DBSCAN_PAIRS];
        double d2[BACH_DBSCAN_PAIRS];
        bach_dbscan_tile(xq, xc, nq, nc, d, tile, &qi, cj, ok, d2);
        for (int m = 0; m < BACH_DBSCAN_PAIRS; ++m) {
            int a = q0 + qi, b = c0 + cj[m];
            if (ok[m] && d2[m] < eps2 && !core[a] && core[b]) atomicMin(&owner[qi], root[b]);
        }
    }
}

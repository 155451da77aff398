// knn.cu: brute-force k-nearest-neighbour classification (annotated_libs::linfa::device
// drives it), the vote of annotated_libs::linfa::nn::KNeighborsClassifier::predict.
//
// One thread per query row (grid-stride over the `n` queries). For each training row, in
// order, the squared Euclidean distance is summed over the features in order as linfa-nn's
// `L2Dist::rdistance` does (ndarray-stats' `sq_l2_dist`: `diff * diff` added to a running
// sum from 0), with `__dadd_rn`/`__dmul_rn` so no fused multiply-add changes the rounding.
// The thread keeps the `k` nearest sorted by (distance, training row): of two rows at the
// same distance the earlier one is nearer. linfa's k-d tree returns the same `k` rows except
// when rows tie exactly at the k-th distance, where its choice depends on the tree's shape.
// The vote counts the classes of the `k` rows; the first largest count wins, so a tie goes
// to the smallest class (classes are numbered by ascending label), as linfa's adapter votes.
//
// Contract: `k` between 1 and BACH_KNN_MAX_K and at most `n_train`; `class_of[t]` in
// [0, classes); device pointers as the Rust side lists them.

#define BACH_KNN_MAX_K 64

#ifdef BACH_HOST_EMULATION
#ifndef BACH_ROUNDED_OPS
#define BACH_ROUNDED_OPS
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
#endif
#endif

// predicted[q] = the majority class among query row q's k nearest training rows.
extern "C" __global__ void knn_predict_f64(unsigned long long n, const double* queries,
                                           const double* train, int n_train, int d, int k,
                                           const int* class_of, int* predicted) {
    BACH_FOR_EACH(q, n) {
        double best_d[BACH_KNN_MAX_K];
        int best_i[BACH_KNN_MAX_K];
        int found = 0;
        const double* row = queries + q * (unsigned long long)d;
        for (int t = 0; t < n_train; ++t) {
            const double* other = train + (unsigned long long)t * d;
            double acc = 0.0;
            for (int f = 0; f < d; ++f) {
                double diff = __dsub_rn(row[f], other[f]);
                acc = __dadd_rn(acc, __dmul_rn(diff, diff));
            }
            // Rows come in order, so an equal distance ranks after the rows kept already.
            if (found == k && !(acc < best_d[k - 1])) continue;
            int p = found < k ? found++ : k - 1;
            while (p > 0 && acc < best_d[p - 1]) {
                best_d[p] = best_d[p - 1];
                best_i[p] = best_i[p - 1];
                --p;
            }
            best_d[p] = acc;
            best_i[p] = t;
        }
        int best_class = 0, best_count = 0;
        for (int a = 0; a < found; ++a) {
            int c = class_of[best_i[a]], count = 0;
            for (int b = 0; b < found; ++b) count += class_of[best_i[b]] == c ? 1 : 0;
            if (count > best_count || (count == best_count && c < best_class)) {
                best_class = c;
                best_count = count;
            }
        }
        predicted[q] = best_class;
    }
}

// out[i] = labels[classes[i]]: the vote's class indices as training labels (`labels`: the
// distinct labels in increasing order, as 64-bit integers).
extern "C" __global__ void class_labels_u64(unsigned long long n, const int* classes,
                                            const unsigned long long* labels,
                                            unsigned long long* out) {
    BACH_FOR_EACH(i, n) { out[i] = labels[classes[i]]; }
}

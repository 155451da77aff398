#!/usr/bin/env python3
"""scikit-learn anchors for the ML workloads, as a Python user runs them today.

Usage: ml_workloads.py WORKLOAD LOG2_SIZE [TRIALS]
WORKLOAD: tsvd | pca | dbscan
Prints: workload size median_s=SECONDS result-summary

Sizes as bach-bench's: tsvd rows = 2^s x 512 features (make_blobs, 1 center, random_state=7),
TruncatedSVD(n_components=2) fitted and applied to the same rows;
pca: test rows = 54 * 2^s (the Wine test set of benchmarks/data doubled s times), StandardScaler ->
PCA(2) -> KNeighborsClassifier(5) fitted on the 124 training rows;
dbscan rows = 2^s x 256 features, 32 centers.
"""
import json
import os
import sys
import time

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


def wine():
    """The vendored Wine data and its train/test split (benchmarks/data)."""
    raw = np.loadtxt(os.path.join(DATA, "wine_data.csv"), delimiter=",", skiprows=1)
    X, y = raw[:, :-1], raw[:, -1].astype(int)
    with open(os.path.join(DATA, "wine_split.json")) as f:
        split = json.load(f)
    return X[split["train"]], X[split["test"]], y[split["train"]], y[split["test"]]


def main():
    name, s = sys.argv[1], int(sys.argv[2])
    trials = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    n = 1 << s
    times, summary = [], ""
    if name == "tsvd":
        from sklearn.datasets import make_blobs
        from sklearn.decomposition import TruncatedSVD
        X, _ = make_blobs(n_samples=n, n_features=512, centers=1, random_state=7)

        def run():
            model = TruncatedSVD(n_components=2, random_state=42).fit(X)
            model.transform(X)
            return f"sv={model.singular_values_.round(3).tolist()}"
    elif name == "pca":
        from sklearn.preprocessing import StandardScaler
        from sklearn.decomposition import PCA
        from sklearn.neighbors import KNeighborsClassifier
        Xtr, Xte, ytr, yte = wine()
        for _ in range(s):
            Xte = np.concatenate([Xte, Xte])
            yte = np.concatenate([yte, yte])

        def run():
            sc = StandardScaler().fit(Xtr)
            pca = PCA(n_components=2).fit(sc.transform(Xtr))
            knn = KNeighborsClassifier().fit(pca.transform(sc.transform(Xtr)), ytr)
            pred = knn.predict(pca.transform(sc.transform(Xte)))
            return f"accuracy={(pred == yte).mean():.4f} evr={pca.explained_variance_ratio_.round(4).tolist()}"
    elif name == "dbscan":
        from sklearn.datasets import make_blobs
        from sklearn.cluster import DBSCAN
        X, _ = make_blobs(n_samples=n, n_features=256, centers=32, cluster_std=1.0, center_box=(-2.0, 2.0), random_state=42)
        eps = (256 * 1.0 ** 2) ** 0.5
        min_samples = int(np.ceil(max(2, n / 32 * 0.05)))  # the seed passes a float; a count >= 12.8 is a count >= 13
        def run():
            Z = (X - X.mean(axis=0)) / X.std(axis=0)
            labels = DBSCAN(eps=eps, min_samples=min_samples).fit(Z).labels_
            return f"clusters={len(set(labels) - {-1})} noise={(labels == -1).sum()}"
    else:
        raise SystemExit("unknown workload " + name)
    for _ in range(trials):
        t0 = time.perf_counter()
        summary = run()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"{name} 2^{s} median_s={times[len(times)//2]:.4f} {summary}")


if __name__ == "__main__":
    main()

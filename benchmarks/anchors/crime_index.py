"""Python peers of bach-bench's crime_index workload, reading the same CSV files.

Usage: python3 crime_index.py WORKLOAD LOG2 [TRIALS]
WORKLOAD: crime_pandas | crime_polars_eager | crime_polars_lazy
Prints: WORKLOAD n=2^LOG2 median_s=SECONDS ns_per_elem=NS result=VALUE

The files are bach-bench's cache for seed 42 (`$BACH_DATA_DIR`, else the system's
temporary directory's `bach-data`, then `crime_index/<LOG2>-seed42-random/`);
BACH_CRIME_DATA=constant picks the constant-valued files. When they are missing
(bach-bench not run at that size yet) they are written here with NumPy, in the same
format and ranges (other values: time them, do not compare results).
Each trial reads the files and computes the index, as every bach-bench mode does.
"""
import os
import sys
import tempfile
import time

COLUMNS = [("total_population", 1e5, 1e6), ("adult_population", 5e4, 5e5), ("num_robberies", 0.0, 2e3)]
CONSTANT = [600000.0, 50000.0, 10.0]


def files(log2):
    kind = os.environ.get("BACH_CRIME_DATA") or "random"
    root = os.environ.get("BACH_DATA_DIR") or os.path.join(tempfile.gettempdir(), "bach-data")
    d = os.path.join(root, "crime_index", f"{log2}-seed42-{kind}")
    os.makedirs(d, exist_ok=True)
    paths = []
    for i, (stem, lo, hi) in enumerate(COLUMNS):
        p = os.path.join(d, f"{stem}.csv")
        if not os.path.exists(p):
            import numpy as np
            n = 1 << log2
            v = np.full(n, CONSTANT[i]) if kind == "constant" else np.random.default_rng(42 + i).uniform(lo, hi, n)
            tmp = f"{p}.tmp{os.getpid()}"
            np.savetxt(tmp, v, fmt="%.6f")
            os.replace(tmp, p)
        paths.append(p)
    return paths


def crime_pandas(tp_path, ap_path, nr_path):
    import pandas as pd
    tp = pd.read_csv(tp_path, header=None)[0]
    ap = pd.read_csv(ap_path, header=None)[0]
    nr = pd.read_csv(nr_path, header=None)[0]
    big = tp.mask(tp > 500000, 0.0)
    ci = (ap * 2 + big - nr * 2000.0) / 100000
    ci = ci.mask(ci > 0.02, 0.032)
    ci = ci.mask(ci < 0.01, 0.005)
    return float(ci.sum())


def crime_polars(tp_path, ap_path, nr_path, lazy):
    import polars as pl
    read = (lambda p: pl.scan_csv(p, has_header=False)) if lazy else (lambda p: pl.read_csv(p, has_header=False))
    names = ("total_population", "adult_population", "num_robberies")
    frames = [read(p).select(pl.first().alias(k)) for p, k in zip((tp_path, ap_path, nr_path), names)]
    frame = pl.concat(frames, how="horizontal")
    big = pl.when(pl.col("total_population") > 500000).then(0.0).otherwise(pl.col("total_population"))
    ci = (pl.col("adult_population") * 2 + big - pl.col("num_robberies") * 2000.0) / 100000
    ci = pl.when(ci > 0.02).then(0.032).otherwise(ci)
    ci = pl.when(ci < 0.01).then(0.005).otherwise(ci)
    out = frame.select(ci.sum())
    if lazy:
        out = out.collect()
    return float(out.item())


def main():
    name, log2 = sys.argv[1], int(sys.argv[2])
    trials = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    paths = files(log2)
    run = {
        "crime_pandas": lambda: crime_pandas(*paths),
        "crime_polars_eager": lambda: crime_polars(*paths, lazy=False),
        "crime_polars_lazy": lambda: crime_polars(*paths, lazy=True),
    }[name]
    times, result = [], None
    for _ in range(trials):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(f"{name} n=2^{log2} median_s={med:.6f} ns_per_elem={med / (1 << log2) * 1e9:.2f} result={result:.6f}")


if __name__ == "__main__":
    main()

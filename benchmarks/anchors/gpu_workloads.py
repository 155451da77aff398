#!/usr/bin/env python3
"""GPU anchors: the seed's workloads written against PyTorch or CuPy, timed end to end.

Usage: gpu_workloads.py LIB WORKLOAD LOG2_SIZE [TRIALS]      (LIB: torch or cupy;
       `--lib LIB` is accepted in place of the positional LIB)

The paper's handwritten GPU baselines: the inputs are NumPy arrays on the host
(generated exactly as numpy_workloads.py does: default_rng(42), the same
distributions in the same order) and every trial is timed from host arrays to
host arrays: transfer the inputs to the GPU, compute with one library call per
operation in float64 (the formulas of numpy_workloads.py, operation for
operation), transfer the results back, synchronize, stop the clock. One untimed
warm-up on a small slice first (CUDA context, kernel loading and compilation),
as bach-bench's gpu mode compiles its kernels before its clock starts.

Prints one line on stdout, in numpy_workloads.py's format plus the library:
    workload n=2^k median_s=... ns_per_elem=... checksum=... lib=torch
(checksum: the sum of the first result, as numpy_workloads.py computes it).
On stderr: the library and device, and a check of the last trial's results
against NumPy on the CPU over the first 2^16 elements (exit 1 if it fails:
|got - want| <= 1e-9 * max(1, |want|), the tolerance of bach-bench --check).

Exit status 2 with one line on stderr when the library or a GPU is missing, or
on a usage error. `numpy` is a hidden LIB that runs the same code with NumPy on
the CPU (SciPy's erf when SciPy is installed, else math.erf per element), so
that the script can be tested without a GPU.
"""
import math
import sys
import time

WORKLOADS = ("blackscholes", "haversine")
CHECK_ELEMS = 1 << 16
TOLERANCE = 1e-9


def die(msg, code=2):
    print(f"gpu_workloads.py: {msg}", file=sys.stderr)
    sys.exit(code)


try:
    import numpy as np
except ImportError as e:
    # The inputs and the check are NumPy's: without it no library can be timed.
    die(f"NumPy is not installed ({e})")


# ---- the formulas (numpy_workloads.py's, with the array library passed in) ----------------


def blackscholes(xp, price, strike, t, rate, vol):
    c05, c10 = 3.0, 1.5
    invsqrt2 = 1.0 / math.sqrt(2.0)
    rsig = vol * vol * c05 + rate
    vol_sqrt = xp.sqrt(t) * vol
    d1 = (xp.log2(price / strike) + rsig * t) / vol_sqrt
    d2 = d1 - vol_sqrt
    d1 = c05 + c05 * xp.erf(d1 * invsqrt2)
    d2 = c05 + c05 * xp.erf(d2 * invsqrt2)
    e_rt = xp.exp(-rate * t)
    call = price * d1 - e_rt * strike * d2
    put = e_rt * strike * (c10 - d2) - price * (c10 - d1)
    return call, put


def haversine(xp, lat2, lon2):
    lat1, lon1, miles = 0.70984286, 1.23892197, 3959.0
    dlat = xp.sin((lat2 - lat1) / 2.0) ** 2
    dlon = xp.sin((lon2 - lon1) / 2.0) ** 2
    a = dlat + xp.cos(lat2) * math.cos(lat1) * dlon
    return (2.0 * xp.arcsin(xp.sqrt(a)) * miles,)


def inputs(name, n, rng):
    # Exactly numpy_workloads.py's inputs (same generator, same order).
    if name == "blackscholes":
        return [rng.uniform(1.0, 100.0, n) for _ in range(5)]
    if name == "haversine":
        return [rng.uniform(-1.5, 1.5, n), rng.uniform(-3.1, 3.1, n)]
    raise ValueError(name)


FORMULAS = {"blackscholes": blackscholes, "haversine": haversine}


# ---- the libraries -------------------------------------------------------------------------


class Ops:
    """The array library: elementwise functions plus host<->device transfers."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def numpy_erf():
    try:
        from scipy.special import erf

        return erf
    except ImportError:
        return np.vectorize(math.erf, otypes=[np.float64])


def load_torch():
    try:
        import torch
    except Exception as e:  # ImportError, or a broken CUDA install
        die(f"lib=torch: PyTorch is not importable ({type(e).__name__}: {e})")
    if not torch.cuda.is_available():
        die(f"lib=torch: no GPU (torch {torch.__version__}, torch.cuda.is_available() is False)")
    dev = torch.device("cuda:0")

    def to_device(a):
        return torch.from_numpy(a).to(dev)

    def to_host(t):
        return t.cpu().numpy()

    desc = (
        f"torch {torch.__version__} (CUDA {torch.version.cuda}) on "
        f"{torch.cuda.get_device_name(dev)}"
    )
    return Ops(
        sqrt=torch.sqrt, log2=torch.log2, exp=torch.exp, erf=torch.special.erf,
        sin=torch.sin, cos=torch.cos, arcsin=torch.asin,
        to_device=to_device, to_host=to_host, sync=torch.cuda.synchronize, desc=desc,
    )


def load_cupy():
    try:
        import cupy
        import cupyx.scipy.special as cpx_special
    except Exception as e:
        die(f"lib=cupy: CuPy is not importable ({type(e).__name__}: {e})")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        die(f"lib=cupy: no GPU (cupy {cupy.__version__}: {type(e).__name__}: {e})")
    if count < 1:
        die(f"lib=cupy: no GPU (cupy {cupy.__version__}: 0 devices)")
    try:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    except Exception:
        name = "device 0"

    def sync():
        cupy.cuda.Device(0).synchronize()

    desc = f"cupy {cupy.__version__} (CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}) on {name}"
    return Ops(
        sqrt=cupy.sqrt, log2=cupy.log2, exp=cupy.exp, erf=cpx_special.erf,
        sin=cupy.sin, cos=cupy.cos, arcsin=cupy.arcsin,
        to_device=cupy.asarray, to_host=cupy.asnumpy, sync=sync, desc=desc,
    )


def load_numpy():
    # Hidden test mode: the same code path with NumPy on the CPU.
    return Ops(
        sqrt=np.sqrt, log2=np.log2, exp=np.exp, erf=numpy_erf(),
        sin=np.sin, cos=np.cos, arcsin=np.arcsin,
        to_device=np.array, to_host=np.asarray, sync=lambda: None,
        desc=f"numpy {np.__version__} on the CPU (test mode)",
    )


LIBS = {"torch": load_torch, "cupy": load_cupy, "numpy": load_numpy}


# ---- the run -------------------------------------------------------------------------------


def end_to_end(ops, fn, host_args):
    """Host arrays in, host arrays out: transfers, one call per op, transfers back."""
    dev_args = [ops.to_device(a) for a in host_args]
    outs = fn(ops, *dev_args)
    host = [ops.to_host(o) for o in outs]
    ops.sync()
    return host


def parse_args(argv):
    usage = "usage: gpu_workloads.py LIB WORKLOAD LOG2_SIZE [TRIALS]  (LIB: torch or cupy)"
    args = list(argv)
    lib = None
    for i, a in enumerate(args):
        if a == "--lib":
            if i + 1 >= len(args):
                die(usage)
            lib = args[i + 1]
            del args[i : i + 2]
            break
        if a.startswith("--lib="):
            lib = a.split("=", 1)[1]
            del args[i]
            break
    if lib is None:
        if not args:
            die(usage)
        lib, args = args[0], args[1:]
    if lib not in LIBS:
        die(f"unknown library {lib!r}: expected torch or cupy")
    if len(args) not in (2, 3):
        die(usage)
    name = args[0]
    if name not in WORKLOADS:
        die(f"unknown workload {name!r}: expected one of {', '.join(WORKLOADS)}")
    try:
        log2n = int(args[1])
        trials = int(args[2]) if len(args) > 2 else 5
    except ValueError:
        die(usage)
    if not 0 <= log2n <= 34 or trials < 1:
        die(f"bad size or trials: LOG2_SIZE in 0..34, TRIALS >= 1 ({usage})")
    return lib, name, log2n, trials


def main():
    lib, name, log2n, trials = parse_args(sys.argv[1:])
    ops = LIBS[lib]()
    n = 1 << log2n
    rng = np.random.default_rng(42)
    args = inputs(name, n, rng)
    fn = FORMULAS[name]
    print(f"# {ops.desc}", file=sys.stderr)

    # Untimed warm-up on a small slice: context creation, kernel loading/compilation.
    end_to_end(ops, fn, [a[: min(n, 1024)] for a in args])

    times = []
    out = None
    for _ in range(trials):
        out = None  # free the previous trial's results before the next one
        t0 = time.perf_counter()
        out = end_to_end(ops, fn, args)
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    checksum = float(np.sum(out[0]))

    # Check the last trial against NumPy on the CPU (outside the clock).
    m = min(n, CHECK_ELEMS)
    cpu = load_numpy()
    want = fn(cpu, *[a[:m] for a in args])
    worst = 0.0
    for g, w in zip(out, want):
        g = g[:m]
        both_nan = np.isnan(g) & np.isnan(w)
        err = np.where(both_nan, 0.0, np.abs(g - w) / np.maximum(1.0, np.abs(w)))
        worst = max(worst, float(np.max(err)) if m else 0.0)
    ok = worst <= TOLERANCE  # NaN (a mismatched NaN) fails too
    print(
        f"# check vs numpy on {m} elements: max_rel_err={worst:.3e} "
        f"({'ok' if ok else 'FAILED'}, tolerance {TOLERANCE:g})",
        file=sys.stderr,
    )
    print(
        f"{name} n=2^{log2n} median_s={med:.4f} ns_per_elem={med / n * 1e9:.2f} "
        f"checksum={checksum:.6e} lib={lib}"
    )
    sys.stdout.flush()
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

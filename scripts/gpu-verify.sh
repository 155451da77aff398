#!/usr/bin/env bash
# gpu-verify.sh: the GPU verification owed in BENCHMARKS.md ("GPU"), in one command, on a GPU
# machine without a Rust toolchain, from the bundle that scripts/gpu-build.sh makes.
#
#   ./gpu-verify.sh                          # from inside the bundle directory
#   scripts/gpu-verify.sh target/gpu-bundle  # from the repo root
#   scripts/gpu-verify.sh --find-nvrtc       # only locate NVRTC: print its directory
#   scripts/gpu-verify.sh --summarize DIR    # only rewrite DIR/summary.md from DIR's logs
#   GPU_VERIFY_PLACEMENT=1 ./gpu-verify.sh   # only step f (the placement sweep)
#
# Results go to $OUT (or ./gpu-results when OUT is unset): logs/NN-step.log (each step's
# output), steps.tsv (one line per step: name, kind, workload, mode, status code, seconds,
# log, command), bench.jsonl (bach-bench --json records), env.txt (nvidia-smi, NVRTC, CPU,
# glibc), summary.md (median totals per workload and mode/library, ratios, test outcomes),
# bach-cache/ (BACH_CACHE_DIR: the kernels NVRTC compiled and the calibrated CPU and device
# costs, kept as evidence). The Rust binaries log at RUST_LOG's level into their step's log.
#
# Steps (each bounded by a timeout; a failing step is recorded and the script goes on):
#   a. bach-runtime lib tests `device::cuda::tests::gpu_` (BACH_REQUIRE_GPU=1 BACH_REQUIRE_NVRTC=1)
#   b. annotated-libs tests: gpu_device (BACH_REQUIRE_GPU=1; when in the bundle)
#   c. bach-bench -s 26 for blackscholes and haversine: gpu, bach (BACH_DEVICE=gpu, and =auto),
#      fused (--trials 5 --check), cpu (--trials 1; no --check: it is the reference itself).
#      The bach runs pass --explain (plan and measured stages; printed outside the clock).
#      Run order: c's GPU modes, d, e, then c's fused and cpu (the budget goes to the GPU first).
#   d. anchors/gpu_workloads.py torch and cupy, both workloads, 2^26, 5 trials
#   e. bach, BACH_DEVICE=gpu, BACH_GPU_MEMORY = 1/8 of the workload's data (inputs + outputs:
#      Black-Scholes 7 x 8 B x 2^26 / 8 = 448 MiB, Haversine 3 x 8 B x 2^26 / 8 = 192 MiB),
#      --trials 5 --check --explain
#   f. (only with GPU_VERIFY_PLACEMENT=1, in place of a to e) the placement sweep: Black-Scholes
#      bach at 2^10, 2^12, ..., 2^28 with BACH_DEVICE=cpu, gpu and auto, 3 trials each; writes
#      placement.md (median totals and auto / min(cpu, gpu); target <= 1.10 at every size)
#   g. after the timed runs, on what is left of the budget: the CPU-only tests (annotated-libs
#      simulated_device: the device executor on a simulated device; CI runs them too, here they
#      run beside a real GPU). GPU_VERIFY_CPU_TESTS=0 leaves them out.
#
# Preflight (the first lines of env.txt, printed first; and header.txt): the NVIDIA driver version and the CUDA
# version it supports (nvidia-smi), the glibc version (ldd --version, else getconf), and the
# newest glibc symbol version the bundle's binaries need (MANIFEST.txt), with a warning when
# this machine's glibc is older.
#
# NVRTC (needed by Bach's CUDA kernels; not in the bundle) is looked for, in order, in
# $BACH_NVRTC_DIR, the `nvidia` Python packages (the nvidia-cuda-nvrtc wheels that PyTorch
# and CuPy depend on) and the other site-packages, torch/lib, .ci/install-nvrtc.sh's prefix
# (~/.cache/bach/nvrtc), $CONDA_PREFIX/lib,
# /usr/local/cuda*/lib64 (and targets/*/lib), the system library directories and
# `ldconfig -p`. A CUDA 13 libnvrtc is preferred (cudarc is built for 13.0), then the newest;
# each candidate is loaded once (ctypes, nvrtcVersion) before it is chosen. A symlink
# libnvrtc.so to it, in a temporary directory, goes first on LD_LIBRARY_PATH (cudarc opens
# libnvrtc.so, libnvrtc.so.13, ...), followed by the library's own directory (for
# libnvrtc-builtins). LD_LIBRARY_PATH is set for the Rust binaries only, not for Python.
#
# Environment: OUT (results directory), GPU_VERIFY_LOG2 (size, default 26),
# GPU_VERIFY_TRIALS (default 5), GPU_VERIFY_BUDGET_S (the whole run's time budget, default
# 450 s: a step that would start with less than 15 s left is skipped, and each step's timeout
# is cut to what is left), PYTHON (default python3), BACH_NVRTC_DIR (a directory holding
# libnvrtc.so*; searched first), RUST_LOG (log filter of the Rust binaries; default
# bach_runtime=info), BACH_CACHE_DIR (default $OUT/bach-cache), GPU_VERIFY_CPU_TESTS (0: skip
# step g). For tests of the search: GPU_VERIFY_NVRTC_ROOTS (more directories, colon-separated),
# GPU_VERIFY_NO_SYSTEM_SEARCH=1 (search only those two).
#
# Exit status: 0 when every step passed (Python libraries that are not installed count as
# skipped, not failed), 1 when a step failed or timed out, 2 on a usage error or a missing
# bundle.
set -u

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---- NVRTC ---------------------------------------------------------------------------------

# Directories to search, one per line, most specific first.
nvrtc_roots() {
    [[ -n "${BACH_NVRTC_DIR:-}" ]] && echo "$BACH_NVRTC_DIR"
    [[ -n "${GPU_VERIFY_NVRTC_ROOTS:-}" ]] && tr ':' '\n' <<<"$GPU_VERIFY_NVRTC_ROOTS"
    if [[ -z "${GPU_VERIFY_NO_SYSTEM_SEARCH:-}" ]]; then
        local py
        for py in "$PY" python3 python; do
            command -v "$py" >/dev/null 2>&1 || continue
            "$py" - 2>/dev/null <<'EOF'
import importlib.util, os, site, sys
seen = []
def add(p):
    if p and os.path.isdir(p) and p not in seen:
        seen.append(p)
try:
    import nvidia  # a namespace package: __file__ may be None, __path__ is the list
    for p in getattr(nvidia, "__path__", []):
        add(p)
    if getattr(nvidia, "__file__", None):
        add(os.path.dirname(nvidia.__file__))
except Exception:
    pass
sites = []
try:
    sites += site.getsitepackages()
except Exception:
    pass
try:
    sites.append(site.getusersitepackages())
except Exception:
    pass
sites += [p for p in sys.path if p.endswith("-packages")]
for s in sites:
    add(os.path.join(s, "nvidia"))
for mod in ("torch", "cupy", "cupy_backends"):
    try:
        spec = importlib.util.find_spec(mod)
    except Exception:
        spec = None
    if spec and spec.submodule_search_locations:
        for p in spec.submodule_search_locations:
            add(os.path.join(p, "lib"))
            add(os.path.join(p, ".data"))
for p in seen:
    print(p)
EOF
        done
        echo "${BACH_NVRTC_PREFIX:-${HOME:-}/.cache/bach/nvrtc}" # .ci/install-nvrtc.sh's prefix
        [[ -n "${CONDA_PREFIX:-}" ]] && echo "$CONDA_PREFIX/lib"
        local d
        for d in /usr/local/cuda /usr/local/cuda-* /opt/cuda /opt/nvidia/*; do
            [[ -d "$d" ]] || continue
            echo "$d/lib64"
            echo "$d/lib"
            echo "$d/targets/x86_64-linux/lib"
        done
        echo /usr/lib/x86_64-linux-gnu
        echo /usr/lib64
        echo /usr/lib
        ldconfig -p 2>/dev/null | awk '/libnvrtc/ && !/builtins/ { print $NF }' | xargs -r -n1 dirname
    fi
}

# Candidate libraries "RANK<TAB>PATH", best first: CUDA 13 first, then the newest major,
# then the search order.
nvrtc_candidates() {
    local root i=0 f real base major
    while IFS= read -r root; do
        [[ -d "$root" ]] || continue
        while IFS= read -r f; do
            real="$(readlink -f "$f" 2>/dev/null || echo "$f")"
            [[ -f "$real" ]] || continue
            base="$(basename "$real")"
            major="$(sed -n 's/^libnvrtc[^.]*\.so\.\([0-9][0-9]*\).*/\1/p' <<<"$base")"
            [[ -n "$major" ]] || major=0
            i=$((i + 1))
            printf '%d\t%d\t%05d\t%s\n' "$([[ $major == 13 ]] && echo 0 || echo 1)" \
                "$((999 - major))" "$i" "$real"
        done < <(find "$root" -maxdepth 4 \( -type f -o -type l \) -name 'libnvrtc*.so*' \
            ! -name '*builtins*' ! -name '*.alt.*' 2>/dev/null | sort)
    done < <(nvrtc_roots | awk '!seen[$0]++') | awk -F'\t' '!seen[$4]++'
    true
}

# Prints "VERSION" when PATH loads and answers nvrtcVersion, else fails.
nvrtc_probe() {
    command -v "$PY" >/dev/null 2>&1 || { echo "unprobed"; return 0; }
    "$PY" - "$1" 2>/dev/null <<'EOF'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
major, minor = ctypes.c_int(), ctypes.c_int()
if lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) != 0:
    sys.exit(1)
print(f"{major.value}.{minor.value}")
EOF
}

# Sets NVRTC_LIB, NVRTC_VERSION, NVRTC_LD_PATH (what to prepend to LD_LIBRARY_PATH).
find_nvrtc() {
    NVRTC_LIB="" NVRTC_VERSION="" NVRTC_LD_PATH=""
    local path version seen=""
    while IFS=$'\t' read -r _ _ _ path; do
        [[ " $seen " == *" $path "* ]] && continue
        seen="$seen $path"
        if version="$(nvrtc_probe "$path")"; then
            NVRTC_LIB="$path"
            NVRTC_VERSION="$version"
            break
        fi
        echo "gpu-verify.sh: $path does not load (or nvrtcVersion fails); trying the next" >&2
    done < <(nvrtc_candidates | sort -t$'\t' -k1,1n -k2,2n -k3,3n)
    [[ -n "$NVRTC_LIB" ]] || return 1
    local shim
    shim="$(mktemp -d "${TMPDIR:-/tmp}/bach-nvrtc.XXXXXX")" || return 1
    ln -sf "$NVRTC_LIB" "$shim/libnvrtc.so"
    NVRTC_LD_PATH="$shim:$(dirname "$NVRTC_LIB")"
}

# ---- summary -------------------------------------------------------------------------------

# The first match of sed expression EXPR (with -n ... p) in FILE, or nothing.
grab() { [[ -f "$2" ]] && sed -n "$1" "$2" | head -n 1; }

fmt_s() { # seconds -> "1.234 s" / "12.3 ms"
    [[ -z "$1" ]] && { echo "—"; return; }
    awk -v s="$1" 'BEGIN { if (s >= 1) printf "%.3f s", s; else if (s >= 1e-3) printf "%.2f ms", s * 1e3; else printf "%.1f µs", s * 1e6 }'
}

ratio() { # A B -> "A/B" as "1.23x", or "—"
    [[ -z "$1" || -z "$2" ]] && { echo "—"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "—" }'
}

status_word() { # KIND RC
    case "$2" in
        0) echo pass ;;
        124 | 137) echo TIMEOUT ;;
        skip) echo skipped ;;
        2) [[ "$1" == py ]] && echo "unavailable" || echo FAIL ;;
        *) echo FAIL ;;
    esac
}

# Median total seconds of a step (bench: "Median Total:", py: "median_s="), or nothing.
median_of() { # LOG KIND
    case "$2" in
        bench) grab 's/^Median Total: \([0-9.eE+-]*\).*/\1/p' "$1" ;;
        py) # ns_per_elem x n: more digits than median_s (4 decimals) at small sizes
            grab 's/.* n=2^\([0-9]*\) median_s=[^ ]* ns_per_elem=\([0-9.eE+-]*\) .*/\1 \2/p' "$1" |
                awk 'NF == 2 { printf "%.6g\n", $2 * 2 ^ $1 / 1e9 }' ;;
    esac
}

# One-line note on a step: check outcome, placement, the error.
note_of() { # LOG KIND RC
    local log="$1" kind="$2" rc="$3" n=""
    case "$kind" in
        bench)
            local check stages gpu_stages err
            check="$(grab 's/^Check: \(.*\)/\1/p' "$log")"
            [[ -n "$check" ]] && n="check $check"
            if [[ -f "$log" ]] && grep -q '^Last run:' "$log"; then
                stages="$(sed -n '/^Last run:/,$p' "$log" | grep -c '^stage [0-9]*:')"
                gpu_stages="$(sed -n '/^Last run:/,$p' "$log" | grep -c '^stage [0-9]*:.* on Device')"
                n="${n:+$n; }$gpu_stages/$stages stages on the device"
            fi
            err="$(grab 's/^error: \(.*\)/\1/p' "$log")"
            [[ -n "$err" ]] && n="${n:+$n; }error: $err"
            ;;
        py)
            local chk msg
            chk="$(grab 's/^# check \(.*\)/\1/p' "$log")"
            [[ -n "$chk" ]] && n="check $chk"
            n="${n:+$n; }$(grab 's/^# \(torch .*\|cupy .*\)/\1/p' "$log")"
            msg="$(grab 's/^gpu_workloads.py: \(.*\)/\1/p' "$log")"
            [[ -n "$msg" ]] && n="${n:+$n; }$msg"
            ;;
        test)
            local res ran panic
            res="$(grep -h '^test result:' "$log" 2>/dev/null | tail -n 1 | sed 's/^test result: //')"
            ran="$(grab 's/^running \([0-9]*\) tests\{0,1\}$/\1/p' "$log")"
            [[ -n "$res" ]] && n="$res"
            [[ "$ran" == 0 ]] && n="${n:+$n; }NO TESTS MATCHED"
            if [[ -f "$log" ]] && grep -q 'skipping (needs' "$log"; then
                n="${n:+$n; }some tests skipped for want of a GPU"
            fi
            # The first panic (location and message) or loader error.
            panic="$(grep -h -m1 -A1 "panicked at\|error while loading" "$log" 2>/dev/null | tr '\n' ' ')"
            [[ -n "$panic" && "$rc" != 0 ]] && n="${n:+$n; }first failure: ${panic:0:300}"
            ;;
    esac
    [[ "$rc" == 124 || "$rc" == 137 ]] && n="${n:+$n; }timed out"
    [[ "$rc" == skip ]] && n="${n:+$n; }not run: time budget spent"
    # Table-safe: no pipes, no newlines.
    tr -d '\n' <<<"$n" | tr '|' '/'
}

write_summary() { # DIR
    local dir="$1" tsv="$1/steps.tsv" md="$1/summary.md"
    [[ -f "$tsv" ]] || { echo "gpu-verify.sh: no $tsv" >&2; return 1; }
    local -A med=() st=()
    local name kind wl mode rc secs log cmd
    while IFS=$'\t' read -r name kind wl mode rc secs log cmd; do
        [[ "$kind" == bench || "$kind" == py ]] || continue
        st["$wl/$mode"]="$(status_word "$kind" "$rc")"
        [[ "$rc" == 0 ]] && med["$wl/$mode"]="$(median_of "$dir/$log" "$kind")"
    done <"$tsv"
    local modes=(cpu fused "bach auto" "bach gpu" gpu torch cupy "bach gpu paged")
    {
        echo "# GPU verification"
        echo
        [[ -f "$dir/header.txt" ]] && { cat "$dir/header.txt"; echo; }
        echo "## Median Total per workload and mode/library"
        echo
        echo "Seconds, host arrays to host arrays (bach-bench: Median Total = Init + Runtime;"
        echo "gpu_workloads.py: transfers in, compute, transfers out, synchronize). A failed or"
        echo "skipped run shows its status instead."
        echo
        local m line w
        line="| workload |"
        for m in "${modes[@]}"; do line="$line $m |"; done
        echo "$line"
        line="|---|"
        for m in "${modes[@]}"; do line="$line---:|"; done
        echo "$line"
        for w in blackscholes haversine; do
            line="| $w |"
            for m in "${modes[@]}"; do
                if [[ -n "${med[$w/$m]:-}" ]]; then
                    line="$line $(fmt_s "${med[$w/$m]}") |"
                else
                    line="$line ${st[$w/$m]:-not run} |"
                fi
            done
            echo "$line"
        done
        echo
        echo "Modes: cpu = plain CPU library, op at a time, 1 trial; fused = hand-fused rayon loop;"
        echo "bach auto / bach gpu = bach mode with BACH_DEVICE=auto / gpu; gpu = bach-bench's"
        echo "hand-written GPU code (one kernel per op, explicit transfers); torch / cupy ="
        echo "anchors/gpu_workloads.py; bach gpu paged = bach, BACH_DEVICE=gpu, BACH_GPU_MEMORY"
        echo "at 1/8 of the data."
        echo
        echo "## Ratios (targets from BENCHMARKS.md)"
        echo
        echo "| workload | bach gpu / gpu (target <= 1.1x) | bach auto / gpu | paged / in-memory throughput (target >= 0.90) | cpu / bach gpu | fused / bach gpu | torch / bach gpu | cupy / bach gpu |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|"
        for w in blackscholes haversine; do
            local bg="${med[$w/bach gpu]:-}"
            echo "| $w | $(ratio "$bg" "${med[$w/gpu]:-}") | $(ratio "${med[$w/bach auto]:-}" "${med[$w/gpu]:-}") | $(ratio "$bg" "${med[$w/bach gpu paged]:-}" | tr -d x) | $(ratio "${med[$w/cpu]:-}" "$bg") | $(ratio "${med[$w/fused]:-}" "$bg") | $(ratio "${med[$w/torch]:-}" "$bg") | $(ratio "${med[$w/cupy]:-}" "$bg") |"
        done
        echo
        echo "## Steps"
        echo
        echo "| step | status | seconds | median total | notes | log |"
        echo "|---|---|---:|---:|---|---|"
        while IFS=$'\t' read -r name kind wl mode rc secs log cmd; do
            local mt=""
            [[ "$rc" == 0 ]] && mt="$(median_of "$dir/$log" "$kind")"
            echo "| $name | $(status_word "$kind" "$rc") (rc $rc) | $secs | $([[ -n "$mt" ]] && fmt_s "$mt") | $(note_of "$dir/$log" "$kind" "$rc") | $log |"
        done <"$tsv"
        echo
        local total failed skipped
        total="$(wc -l <"$tsv")"
        failed="$(awk -F'\t' '$5 != 0 && $5 != "skip" && !($2 == "py" && $5 == 2)' "$tsv" | wc -l)"
        skipped="$(awk -F'\t' '$5 == "skip" || ($2 == "py" && $5 == 2)' "$tsv" | wc -l)"
        echo "**$((total - failed - skipped)) of $total steps passed, $failed failed or timed out, $skipped skipped or unavailable.**"
        echo
        echo "Commands: the \`command\` column of steps.tsv. Raw bach-bench records: bench.jsonl."
    } >"$md"
}

# ---- entry points --------------------------------------------------------------------------

case "${1:-}" in
    -h | --help) usage ;;
    --find-nvrtc)
        if find_nvrtc; then
            echo "nvrtc: $NVRTC_LIB (version $NVRTC_VERSION)" >&2
            echo "$NVRTC_LD_PATH"
            exit 0
        fi
        echo "gpu-verify.sh: no loadable libnvrtc.so* found" >&2
        exit 1
        ;;
    --summarize)
        [[ $# == 2 ]] || usage
        write_summary "$2" || exit 1
        cat "$2/summary.md"
        exit 0
        ;;
    -*) usage ;;
esac
[[ $# -le 1 ]] || usage

# The bundle: the argument, else the script's directory, else the current one.
if [[ $# == 1 ]]; then
    BUNDLE="$1"
elif [[ -x "$SCRIPT_DIR/bin/bach-bench" ]]; then
    BUNDLE="$SCRIPT_DIR"
elif [[ -x "./bin/bach-bench" ]]; then
    BUNDLE="."
elif [[ -x "$SCRIPT_DIR/../target/gpu-bundle/bin/bach-bench" ]]; then
    BUNDLE="$SCRIPT_DIR/../target/gpu-bundle"
else
    echo "gpu-verify.sh: no bundle found: pass its directory (made by scripts/gpu-build.sh)" >&2
    exit 2
fi
BUNDLE="$(cd "$BUNDLE" 2>/dev/null && pwd)" || { echo "gpu-verify.sh: no directory $1" >&2; exit 2; }
BENCH="$BUNDLE/bin/bach-bench"
[[ -x "$BENCH" ]] || { echo "gpu-verify.sh: $BENCH missing: not a bundle" >&2; exit 2; }

OUT_DIR="${OUT:-./gpu-results}"
mkdir -p "$OUT_DIR/logs" || exit 2
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
LOG2="${GPU_VERIFY_LOG2:-26}"
TRIALS="${GPU_VERIFY_TRIALS:-5}"
BUDGET="${GPU_VERIFY_BUDGET_S:-450}"
STEPS="$OUT_DIR/steps.tsv"
: >"$STEPS"
# What the runtime logs goes into each step's log; the compiled kernels and the calibrated
# costs go into the results.
export RUST_LOG="${RUST_LOG:-bach_runtime=info}"
export BACH_CACHE_DIR="${BACH_CACHE_DIR:-$OUT_DIR/bach-cache}"
mkdir -p "$BACH_CACHE_DIR" || exit 2
: >"$OUT_DIR/bench.jsonl"
START=$SECONDS
STEP_NO=0

# Commit of the bundle, so that bach-bench needs no git.
if [[ -f "$BUNDLE/MANIFEST.txt" ]]; then
    BACH_GIT_COMMIT="$(sed -n 's/^git_commit=//p' "$BUNDLE/MANIFEST.txt")"
    export BACH_GIT_COMMIT
fi

# run_step NAME KIND WORKLOAD MODE TIMEOUT CMD...: runs CMD with its output tee'd into a
# log, bounded by TIMEOUT and what is left of the budget; appends a line to steps.tsv.
run_step() {
    local name="$1" kind="$2" wl="$3" mode="$4" limit="$5"
    shift 5
    STEP_NO=$((STEP_NO + 1))
    local log
    log="logs/$(printf '%02d' "$STEP_NO")-$name.log"
    local left=$((BUDGET - (SECONDS - START)))
    local cmdline="$*"
    ((left < limit)) && limit=$left
    echo
    echo "==== [$STEP_NO] $name ($((SECONDS - START)) s elapsed, timeout ${limit} s)"
    echo "\$ $cmdline"
    if ((limit < 15)); then
        echo "(skipped: ${left} s of the ${BUDGET} s budget left)" | tee "$OUT_DIR/$log"
        printf '%s\t%s\t%s\t%s\tskip\t0\t%s\t%s\n' "$name" "$kind" "$wl" "$mode" "$log" "$cmdline" >>"$STEPS"
        return 0
    fi
    local t0=$SECONDS rc
    echo "\$ $cmdline" >"$OUT_DIR/$log"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$OUT_DIR/$log"
    rc="${PIPESTATUS[0]}"
    echo "(exit status $rc after $((SECONDS - t0)) s)" | tee -a "$OUT_DIR/$log"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$wl" "$mode" "$rc" \
        "$((SECONDS - t0))" "$log" "$cmdline" >>"$STEPS"
    return 0
}

# ---- environment ---------------------------------------------------------------------------

# Preflight: driver, glibc (the bundle's binaries were linked against a glibc; an older one
# here fails every Rust step at load time).
driver_version="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
cuda_by_driver="$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n 1)"
glibc_line="$(ldd --version 2>/dev/null | head -n 1)"
[[ -n "$glibc_line" ]] || glibc_line="$(getconf GNU_LIBC_VERSION 2>/dev/null)"
glibc_here="$(grep -o '[0-9][0-9]*\.[0-9][0-9]*' <<<"$glibc_line" | tail -n 1)"
glibc_needed=""
[[ -f "$BUNDLE/MANIFEST.txt" ]] && glibc_needed="$(sed -n 's/^glibc_required=//p' "$BUNDLE/MANIFEST.txt")"
preflight=(
    "NVIDIA driver: ${driver_version:-unknown (no nvidia-smi)}${cuda_by_driver:+ (supports CUDA $cuda_by_driver)}"
    "glibc: ${glibc_line:-unknown}${glibc_needed:+ (the bundle needs $glibc_needed)}"
    "RUST_LOG=$RUST_LOG BACH_CACHE_DIR=$BACH_CACHE_DIR"
)
if [[ -n "$glibc_here" && "$glibc_needed" =~ ^[0-9]+\.[0-9]+ ]] &&
    [[ "$(printf '%s\n%s\n' "$glibc_needed" "$glibc_here" | sort -V | head -n 1)" != "$glibc_needed" ]]; then
    preflight+=("WARNING: glibc $glibc_here is older than the $glibc_needed the bundle needs: the Rust steps will not load")
fi

{
    printf '%s\n' "${preflight[@]}"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm); $(nproc) CPUs; $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"
    echo "bundle: $BUNDLE"
    [[ -f "$BUNDLE/MANIFEST.txt" ]] && sed -n 's/^\(git_commit\|git_dirty\|rustc\|gpu_device\)=/\1: /p' "$BUNDLE/MANIFEST.txt"
    echo
    echo "## nvidia-smi"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used,pcie.link.gen.max,pcie.link.width.max,clocks.max.sm \
            --format=csv 2>&1
        echo
        nvidia-smi 2>&1
    else
        echo "nvidia-smi not found"
    fi
    echo
    echo "## libcuda"
    ldconfig -p 2>/dev/null | grep 'libcuda\.so' || echo "libcuda.so not in the ldconfig cache"
    echo
    echo "## python"
    "$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1 || echo "no $PY"
} >"$OUT_DIR/env.txt" 2>&1
cat "$OUT_DIR/env.txt"

RUST_LD_PATH="${LD_LIBRARY_PATH:-}"
if find_nvrtc; then
    trap 'rm -rf "${NVRTC_LD_PATH%%:*}"' EXIT # the temporary libnvrtc.so symlink
    nvrtc_line="NVRTC: $NVRTC_LIB (version $NVRTC_VERSION); LD_LIBRARY_PATH for the Rust binaries: $NVRTC_LD_PATH"
    RUST_LD_PATH="$NVRTC_LD_PATH${RUST_LD_PATH:+:$RUST_LD_PATH}"
else
    nvrtc_line="NVRTC: NOT FOUND (set BACH_NVRTC_DIR); the kernel steps will fail"
fi
echo "$nvrtc_line"
echo "$nvrtc_line" >>"$OUT_DIR/env.txt"
echo "## candidates (rank, search order, path)" >>"$OUT_DIR/env.txt"
nvrtc_candidates | sort -t$'\t' -k1,1n -k2,2n -k3,3n >>"$OUT_DIR/env.txt"

gpu_name="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
{
    echo "- GPU: ${gpu_name:-none reported by nvidia-smi}"
    echo "- host: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"
    echo "- $nvrtc_line"
    printf -- '- %s\n' "${preflight[@]}"
    [[ -f "$BUNDLE/MANIFEST.txt" ]] && echo "- bundle: $(sed -n 's/^git_commit=//p' "$BUNDLE/MANIFEST.txt" | cut -c1-12), dirty $(sed -n 's/^git_dirty=//p' "$BUNDLE/MANIFEST.txt")"
    echo "- size 2^$LOG2, $TRIALS trials (cpu: 1); budget $BUDGET s; details: env.txt"
} >"$OUT_DIR/header.txt"

# A prefix for the Rust binaries' commands (timeout runs programs, not shell functions).
RUST=(env "LD_LIBRARY_PATH=$RUST_LD_PATH")

# ---- f: the placement sweep (alone) ----------------------------------------------------------

if [[ "${GPU_VERIFY_PLACEMENT:-}" == 1 ]]; then
    md="$OUT_DIR/placement.md"
    {
        echo "# Placement sweep: Black-Scholes, bach, 3 trials each"
        echo
        echo "| size | forced cpu | forced gpu | auto | auto / best |"
        echo "|---:|---:|---:|---:|---:|"
    } >"$md"
    for log2 in 10 12 14 16 18 20 22 24 26 28; do
        declare -A t=()
        for policy in cpu gpu auto; do
            run_step "placement-$log2-$policy" bench blackscholes "bach $policy" 120 \
                "${RUST[@]}" BACH_DEVICE="$policy" "$BENCH" -b blackscholes -s "$log2" -m bach --trials 3 \
                --json "$OUT_DIR/bench.jsonl"
            t[$policy]="$(awk '/^Median Total:/ { v = $3 } END { print v }' "$OUT_DIR/logs/$(printf '%02d' "$STEP_NO")-placement-$log2-$policy.log")"
        done
        awk -v n="$log2" -v c="${t[cpu]}" -v g="${t[gpu]}" -v a="${t[auto]}" 'BEGIN {
            best = (g != "" && g + 0 < c + 0) ? g : c
            r = (a != "" && best + 0 > 0) ? sprintf("%.2f", a / best) : "-"
            printf "| 2^%s | %s | %s | %s | %s |\n", n, c, g, a, r }' >>"$md"
    done
    cat "$md"
    exit 0
fi

# ---- a, b: tests ---------------------------------------------------------------------------

run_step runtime-gpu-tests test - - 180 \
    "${RUST[@]}" BACH_REQUIRE_GPU=1 BACH_REQUIRE_NVRTC=1 "$BUNDLE/tests/bach-runtime-lib" device::cuda::tests::gpu_
if [[ -x "$BUNDLE/tests/gpu_device" ]]; then
    run_step gpu-device-tests test - - 240 \
        "${RUST[@]}" BACH_REQUIRE_GPU=1 BACH_REQUIRE_NVRTC=1 "$BUNDLE/tests/gpu_device"
else
    echo "(no tests/gpu_device in the bundle: step b skipped)"
fi
# The CPU-only tests (simulated_device) come after the timed runs: step g.

# ---- c, d, e: timings ------------------------------------------------------------------------
# Order: the GPU measurements first (c: gpu, bach gpu, bach auto; d: PyTorch, CuPy; e: paging),
# the CPU baselines (fused, cpu) last, so that a slow machine spends the budget on what is
# owed. Every bach-bench run makes its own inputs; --check recomputes cpu mode outside the clock.

bench() { # NAME WORKLOAD MODE-LABEL TIMEOUT ENV... -- ARGS...
    local name="$1" wl="$2" mode="$3" limit="$4"
    shift 4
    local envs=()
    while [[ $# -gt 0 && "$1" != -- ]]; do envs+=("$1"); shift; done
    shift
    run_step "$name" bench "$wl" "$mode" "$limit" \
        "${RUST[@]}" "${envs[@]}" "$BENCH" -b "$wl" -s "$LOG2" --json "$OUT_DIR/bench.jsonl" "$@"
}

# c (GPU part): hand-written GPU code, bach forced onto the GPU, bach's own placement.
for w in blackscholes haversine; do
    bench "$w-gpu" "$w" gpu 120 -- -m gpu --trials "$TRIALS" --check
    bench "$w-bach-gpu" "$w" "bach gpu" 120 BACH_DEVICE=gpu -- -m bach --trials "$TRIALS" --check --explain
    bench "$w-bach-auto" "$w" "bach auto" 120 BACH_DEVICE=auto -- -m bach --trials "$TRIALS" --check --explain
done

# d: PyTorch and CuPy, host arrays to host arrays.
for lib in torch cupy; do
    for w in blackscholes haversine; do
        if command -v "$PY" >/dev/null; then
            run_step "$w-$lib" py "$w" "$lib" 120 "$PY" "$BUNDLE/anchors/gpu_workloads.py" "$lib" "$w" "$LOG2" "$TRIALS"
        else
            printf '%s\t%s\t%s\t%s\t2\t0\t-\tno %s\n' "$w-$lib" py "$w" "$lib" "$PY" >>"$STEPS"
        fi
    done
done

# e: paging: a device budget of 1/8 of the data (inputs + outputs, 8 bytes each).
for w in blackscholes haversine; do
    case "$w" in
        blackscholes) arrays=7 ;; # price, strike, t, rate, vol + call, put
        haversine) arrays=3 ;;    # lat, lon + distance
    esac
    budget_bytes=$((arrays * 8 * (1 << LOG2) / 8))
    bench "$w-bach-gpu-paged" "$w" "bach gpu paged" 150 BACH_DEVICE=gpu BACH_GPU_MEMORY="$budget_bytes" -- \
        -m bach --trials "$TRIALS" --check --explain
done

# c (CPU part): the CPU limit and the plain library (1 trial: ~15 s for Black-Scholes at 2^26;
# no --check, it is the reference itself).
for w in blackscholes haversine; do
    bench "$w-fused" "$w" fused 120 -- -m fused --trials "$TRIALS" --check
    bench "$w-cpu" "$w" cpu 120 -- -m cpu --trials 1
done

# ---- g: CPU-only tests, on what is left of the budget ------------------------------------------

if [[ "${GPU_VERIFY_CPU_TESTS:-1}" == 0 ]]; then
    echo "(GPU_VERIFY_CPU_TESTS=0: the CPU-only tests are not run)"
elif [[ -x "$BUNDLE/tests/simulated_device" ]]; then
    run_step simulated-device-tests test - - 120 "${RUST[@]}" "$BUNDLE/tests/simulated_device"
fi

# ---- summary -------------------------------------------------------------------------------

write_summary "$OUT_DIR"
echo
echo "==== summary ($((SECONDS - START)) s): $OUT_DIR/summary.md"
cat "$OUT_DIR/summary.md"
if awk -F'\t' '$5 != 0 && $5 != "skip" && !($2 == "py" && $5 == 2) { bad = 1 } END { exit !bad }' "$STEPS"; then
    exit 1
fi
exit 0

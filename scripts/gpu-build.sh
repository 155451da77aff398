#!/usr/bin/env bash
# gpu-build.sh: builds, on this machine (no GPU needed), everything the GPU verification
# runs, and gathers it into one small directory to copy to a GPU machine that has no Rust
# toolchain:
#
#   scripts/gpu-build.sh                # -> target/gpu-bundle/ (prints its size)
#   # on the GPU machine, from the repo root:  scripts/gpu-verify.sh target/gpu-bundle
#   # or from inside the bundle:               ./gpu-verify.sh
#
# Bundle layout (target/gpu-bundle/, under the gitignored /target):
#   gpu-verify.sh                 the verification script (a copy of scripts/gpu-verify.sh)
#   bin/bach-bench                the benchmark CLI
#   tests/bach-runtime-lib        bach-runtime's unit tests (device::cuda::tests::gpu_*)
#   tests/simulated_device        annotated-libs/tests/simulated_device.rs
#   tests/gpu_device              annotated-libs/tests/gpu_device.rs (when it exists and builds)
#   anchors/*.py                  benchmarks/anchors (numpy_workloads.py, gpu_workloads.py)
#   MANIFEST.txt                  commit, toolchain, what was built, the newest glibc symbol
#                                 version the binaries need (glibc_required), sizes, sha256sums
#
# The binaries are release builds with their debug info stripped (symbols kept, so
# backtraces still name functions). NVRTC (libnvrtc, ~110 MB) is not in the bundle:
# gpu-verify.sh finds it on the GPU machine.
#
# The test binaries are found from cargo's JSON messages (`executable` of each test
# artifact), never by globbing hashed names in target/release/deps.
#
# Environment: GPU_BUNDLE_DIR  where to put the bundle (default: <target dir>/gpu-bundle)
#
# Exit status: 0 when the bundle holds bach-bench, the bach-runtime lib tests and
# simulated_device (gpu_device is optional: a warning when it is missing or fails to
# build); 1 otherwise.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

say() { printf '== %s\n' "$*" >&2; }
warn() { printf 'gpu-build.sh: WARNING: %s\n' "$*" >&2; }
die() { printf 'gpu-build.sh: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found"
command -v python3 >/dev/null || die "python3 not found (used to read cargo's JSON)"
if command -v objcopy >/dev/null; then
    strip_cmd=(objcopy --strip-debug)
elif command -v strip >/dev/null; then
    strip_cmd=(strip --strip-debug)
else
    strip_cmd=()
    warn "neither objcopy nor strip found: copying binaries unstripped"
fi

target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
bundle="${GPU_BUNDLE_DIR:-$target_dir/gpu-bundle}"
case "$(basename "$bundle")" in
    *bundle*) ;;
    *) die "GPU_BUNDLE_DIR=$bundle: refusing a directory whose name lacks 'bundle' (it is wiped)" ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ---- build -----------------------------------------------------------------------------------

say "cargo build --release -p benchmarks"
cargo build --release -p benchmarks

# Test executables from cargo's JSON messages. A failing workspace build (e.g. a test file
# being edited) falls back to the targets the bundle needs, one at a time.
json_build() { # ARGS...: cargo test --release --no-run ARGS, JSON appended to $tmp/artifacts.json
    cargo test --release --no-run --message-format=json "$@" >>"$tmp/artifacts.json"
}
say "cargo test --release --workspace --no-run"
if cargo test --release --workspace --no-run && json_build --workspace; then
    workspace_ok=1
else
    workspace_ok=0
    warn "the workspace tests do not all build; building the bundle's test targets one by one"
    json_build -p bach-runtime --lib || die "bach-runtime's lib tests do not build"
    json_build -p annotated-libs --test simulated_device || die "simulated_device does not build"
    if [[ -f annotated-libs/tests/gpu_device.rs ]]; then
        json_build -p annotated-libs --test gpu_device ||
            warn "annotated-libs/tests/gpu_device.rs does not build: left out of the bundle"
    fi
fi

# "KEY PATH" lines: lib (bach-runtime's lib tests), and each annotated-libs integration test.
python3 - "$tmp/artifacts.json" >"$tmp/executables" <<'EOF'
import json, sys
found = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if not m.get("profile", {}).get("test"):
        continue
    t, pkg = m["target"], m.get("manifest_path", "")
    if pkg.endswith("/bach-runtime/Cargo.toml") and "lib" in t["kind"]:
        found["bach-runtime-lib"] = m["executable"]
    elif pkg.endswith("/annotated-libs/Cargo.toml") and t["kind"] == ["test"]:
        found[t["name"]] = m["executable"]
for k, v in sorted(found.items()):
    print(k, v)
EOF
exe_of() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/executables"; }

bench_exe="$target_dir/release/bach-bench"
lib_exe="$(exe_of bach-runtime-lib)"
sim_exe="$(exe_of simulated_device)"
gpu_exe="$(exe_of gpu_device)"
[[ -x "$bench_exe" ]] || die "no $bench_exe after the build"
[[ -n "$lib_exe" && -x "$lib_exe" ]] || die "cargo reported no bach-runtime lib test executable"
[[ -n "$sim_exe" && -x "$sim_exe" ]] || die "cargo reported no simulated_device test executable"
if [[ -z "$gpu_exe" ]]; then
    if [[ -f annotated-libs/tests/gpu_device.rs ]]; then
        warn "annotated-libs/tests/gpu_device.rs exists but no executable was built for it"
    else
        warn "annotated-libs/tests/gpu_device.rs does not exist yet: bundle without it"
    fi
fi

# ---- assemble ----------------------------------------------------------------------------------

say "assembling $bundle"
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/tests" "$bundle/anchors"

copy_bin() { # SRC DST: copy with the debug info stripped
    if ((${#strip_cmd[@]})); then
        "${strip_cmd[@]}" "$1" "$2"
    else
        cp "$1" "$2"
    fi
    chmod 755 "$2"
}
copy_bin "$bench_exe" "$bundle/bin/bach-bench"
copy_bin "$lib_exe" "$bundle/tests/bach-runtime-lib"
copy_bin "$sim_exe" "$bundle/tests/simulated_device"
[[ -n "$gpu_exe" ]] && copy_bin "$gpu_exe" "$bundle/tests/gpu_device"
cp benchmarks/anchors/*.py "$bundle/anchors/"
cp scripts/gpu-verify.sh "$bundle/gpu-verify.sh"
chmod 755 "$bundle/gpu-verify.sh" "$bundle"/anchors/*.py

commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
# The newest GLIBC_x.y symbol version the binaries ask for (gpu-verify.sh compares it with the
# GPU machine's glibc).
glibc_required="$(cat "$bundle"/bin/* "$bundle"/tests/* | grep -ao 'GLIBC_[0-9][0-9]*\.[0-9][0-9.]*' |
    sed 's/^GLIBC_//' | sort -uV | tail -n 1 || true)"
dirty="$(git status --porcelain 2>/dev/null | grep -q . && echo true || echo false)"
{
    echo "bundle built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm)"
    echo "git_commit=$commit"
    echo "git_dirty=$dirty"
    echo "rustc=$(rustc --version 2>/dev/null || echo unknown)"
    echo "workspace_tests_built=$workspace_ok"
    echo "glibc_required=${glibc_required:-unknown}"
    echo "gpu_device=$([[ -n "$gpu_exe" ]] && echo built || echo absent)"
    echo "sources:"
    echo "  bin/bach-bench <- $bench_exe"
    echo "  tests/bach-runtime-lib <- $lib_exe"
    echo "  tests/simulated_device <- $sim_exe"
    [[ -n "$gpu_exe" ]] && echo "  tests/gpu_device <- $gpu_exe"
    echo "sizes:"
    (cd "$bundle" && find . -type f ! -name MANIFEST.txt -printf '  %10s  %P\n' | sort -k2)
    echo "sha256:"
    (cd "$bundle" && find . -type f ! -name MANIFEST.txt -printf '%P\n' | sort | xargs sha256sum | sed 's/^/  /')
} >"$bundle/MANIFEST.txt"

bytes="$(du -sb "$bundle" | cut -f1)"
limit=$((64 * 1024 * 1024))
cat "$bundle/MANIFEST.txt" >&2
printf 'bundle: %s  %s bytes (%s MiB; carry limit 64 MiB)\n' "$bundle" "$bytes" \
    "$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')"
((bytes < limit)) || die "the bundle is over 64 MiB"

#!/usr/bin/env bash
# install-nvrtc.sh: installs NVIDIA's NVRTC (the CUDA runtime compiler, libnvrtc.so) from
# PyPI, so that CI can compile the CUDA kernels without a GPU or a CUDA toolkit.
#
# Usage:   export LD_LIBRARY_PATH="$(.ci/install-nvrtc.sh):${LD_LIBRARY_PATH:-}"
#
# Prints ONE line on stdout: the directory holding libnvrtc.so*; everything else goes to
# stderr. Idempotent: a second run reuses the installation.
#
# Environment:
#   BACH_NVRTC_PREFIX  where to install (default: $HOME/.cache/bach/nvrtc)
#   BACH_NVRTC_SPEC    pip requirement (default: nvidia-cuda-nvrtc==13.0.88). cudarc is built
#                      with its `cuda-13000` feature, which needs a CUDA 13.x NVRTC.
#
# cudarc (dynamic-loading) dlopens one of libnvrtc.so, libnvrtc64*.so, libnvrtc.so.13,
# ... (cudarc's `get_lib_name_candidates`). The CUDA 13 wheel ships
# nvidia/cu13/lib/libnvrtc.so.13, which is a candidate; a libnvrtc.so symlink is added
# beside it all the same, in case a future wheel renames the versioned file.
set -euo pipefail

prefix="${BACH_NVRTC_PREFIX:-$HOME/.cache/bach/nvrtc}"
spec="${BACH_NVRTC_SPEC:-nvidia-cuda-nvrtc==13.0.88}"
stamp="$prefix/.installed-spec"

find_libdir() {
    find "$prefix" -name 'libnvrtc.so*' ! -name '*builtins*' ! -name '*.alt.*' -type f \
        -printf '%h\n' 2>/dev/null | sort -u | head -n 1
}

if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$spec" || -z "$(find_libdir)" ]]; then
    rm -rf "$prefix"
    mkdir -p "$prefix"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$prefix" "$spec" >&2
    echo "$spec" >"$stamp"
fi

libdir="$(find_libdir)"
if [[ -z "$libdir" ]]; then
    echo "install-nvrtc.sh: no libnvrtc.so* found under $prefix after installing $spec" >&2
    exit 1
fi

# The versioned name (libnvrtc.so.13) is already a cudarc candidate; add the plain name.
if [[ ! -e "$libdir/libnvrtc.so" ]]; then
    versioned="$(cd "$libdir" && ls libnvrtc.so.* | grep -v alt | head -n 1)"
    ln -s "$versioned" "$libdir/libnvrtc.so"
fi

ls -l "$libdir" >&2
echo "$libdir"

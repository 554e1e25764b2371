#!/usr/bin/env bash
# A CUDA 13.0 toolchain for building actyolo's `cuda` feature on a machine with no GPU and
# no system toolkit: nvcc and the headers (and, with --libs, the libraries a binary links
# against) come from NVIDIA's PyPI wheels, installed into target/cuda-toolchain/venv.
# Prints the environment to build with:
#
#   eval "$(tools/cuda_toolchain.sh)"            # compile checks (what CI runs)
#   cargo check --release --features cuda
#   tools/build_cuda.sh                          # the binaries for a GPU machine (--libs)
#
# Version 13.0 on purpose: candle's kernels are PTX that the driver compiles when they
# load, and a driver takes only PTX of its own CUDA version or older. 13.0 is what the
# 580 drivers run; a newer nvcc writes PTX they refuse. The compiler wheels are pinned
# together (nvcc pulls the newest nvvm otherwise, whose PTX 13.0's ptxas rejects).
# Needs Python 3 with pip and PyPI; about 0.3 GB, 1.5 GB with --libs. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/target/cuda-toolchain"
venv="$dir/venv"

install() {
    local stamp="$dir/.installed-$1"
    shift
    if [ ! -f "$stamp" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2
        touch "$stamp"
    fi
}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
install compiler-13.0.88 \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
cuda="$(echo "$venv"/lib/python3*/site-packages/nvidia/cu13)"
test -x "$cuda/bin/nvcc" || { echo "no nvcc in $cuda/bin after the install" >&2; exit 1; }

if [ "${1:-}" = "--libs" ]; then
    install libs-13.0 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
    # The wheels hold versioned libraries only (libcublas.so.13); the linker looks for
    # the unversioned names. cudarc's build script searches $CUDA_ROOT/lib.
    for lib in "$cuda"/lib/lib{cublas,cublasLt,curand,nvrtc,cudart}.so.*; do
        case "$lib" in *.so.*.*) continue ;; esac
        ln -sf "$(basename "$lib")" "${lib%.so.*}.so"
    done
fi

cat <<EOF
export CUDA_ROOT="$cuda"
export PATH="$cuda/bin:\$PATH"
export CUDARC_CUDA_VERSION=13000
export CUDA_COMPUTE_CAP=90
EOF

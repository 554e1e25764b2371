#!/usr/bin/env bash
# Builds, on a machine with no GPU, what tools/gpu_check.sh runs on a GPU machine that has
# the NVIDIA driver and CUDA 13 libraries but no Rust: the `cuda` builds of the actyolo
# binary, the device-path test (tests/device_path.rs) and the GPU benchmark (bench/gpu.rs),
# stripped, in dist/gpu/ and packed as dist/gpu.tar.xz (about 17 MB: each binary is 75-93
# MB, mostly candle's CUDA kernels, which the three share and one large xz window stores
# once).
#
#   tools/build_cuda.sh            # about 20 minutes on 2 cores the first time
#
# The binaries link against libcuda.so.1, which only a GPU driver installs. The linker is
# given a stub of it instead: a library of empty functions named as the driver's, made
# from the driver functions the compiled code calls. At run time the driver's own library is loaded
# in its place (the stub is never copied). Kernels are PTX for compute capability 9.0
# (H100, H200): CUDA_COMPUTE_CAP=80 tools/build_cuda.sh builds for an A100.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
compute_cap="${CUDA_COMPUTE_CAP:-}"
eval "$(tools/cuda_toolchain.sh --libs)"
export CUDA_COMPUTE_CAP="${compute_cap:-$CUDA_COMPUTE_CAP}"
export CARGO_TARGET_DIR="$root/target/cuda"
stubs="$CUDA_ROOT/lib/stubs"
mkdir -p "$stubs" dist/gpu

# libcuda.so.1's stub: the driver API functions the link asks for.
make_stub() {
    local symbols=$1
    {
        echo "/* Link-time stand-in for the NVIDIA driver's libcuda.so.1 (tools/build_cuda.sh). */"
        while read -r name; do echo "void $name(void) {}"; done <"$symbols"
    } >"$stubs/libcuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/libcuda_stub.c"
}

build() {
    cargo build --release --locked --features cuda --message-format=json-render-diagnostics "$@"
}

# The driver functions: every `cu…` symbol the compiled libraries leave undefined (a
# superset of what the link needs), then any a link still reports, until it links.
: >"$stubs/symbols.txt"
[ -f "$stubs/libcuda.so" ] || make_stub "$stubs/symbols.txt"
targets=(--bin actyolo --test device_path --bench gpu)
for attempt in 1 2 3 4 5 6; do
    if build "${targets[@]}" >target/cuda-build.json 2>target/cuda-build.log; then
        break
    fi
    before=$(wc -l <"$stubs/symbols.txt")
    {
        cat "$stubs/symbols.txt"
        nm -u --format=just-symbols "$CARGO_TARGET_DIR"/release/deps/*.rlib 2>/dev/null
        grep -oE "(undefined symbol: |undefined reference to .)cu[A-Z][A-Za-z0-9_]*" \
            target/cuda-build.log | sed -E 's/.*(cu[A-Z][A-Za-z0-9_]*)$/\1/'
    } | grep -E '^cu[A-Z][A-Za-z0-9_]*$' | sort -u >"$stubs/symbols.new"
    mv "$stubs/symbols.new" "$stubs/symbols.txt"
    if [ "$(wc -l <"$stubs/symbols.txt")" -eq "$before" ] || [ "$attempt" -eq 6 ]; then
        grep -E "error" target/cuda-build.log | head -20 >&2
        exit 1
    fi
    echo "libcuda stub: $(wc -l <"$stubs/symbols.txt") driver functions" >&2
    make_stub "$stubs/symbols.txt"
done

# The executables cargo reports, under plain names.
python3 - target/cuda-build.json dist/gpu <<'EOF'
import json, shutil, subprocess, sys
log, dist = sys.argv[1], sys.argv[2]
names = {("bin", "actyolo"): "actyolo", ("test", "device_path"): "device_path", ("bench", "gpu"): "gpu_bench"}
for line in open(log):
    msg = json.loads(line)
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    key = (msg["target"]["kind"][0], msg["target"]["name"])
    if key in names:
        out = f"{dist}/{names[key]}"
        shutil.copy(msg["executable"], out)
        subprocess.run(["strip", "--strip-all", out], check=True)
        print(out)
EOF
tar -cf - -C dist gpu | xz -T1 --lzma2=preset=6,dict=256MiB >dist/gpu.tar.xz
ls -la dist/gpu dist/gpu.tar.xz

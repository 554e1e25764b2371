#!/usr/bin/env bash
# The GPU check, in one go (about 10 minutes), on a machine with an NVIDIA GPU, its driver,
# the CUDA 13 libraries and PyTorch, but no Rust and no network. It runs the binaries
# tools/build_cuda.sh made on a machine without a GPU (dist/gpu/, unpacked from
# dist/gpu.tar.xz when only that came), from the repository's root:
#
#   tools/gpu_check.sh [OUT]       # reports into OUT (default runs/gpu_check)
#
# 1. parity: tests/device_path.rs on the GPU (ACTYOLO_TEST_DEVICE=0): every activation
#    against PyTorch's golden values, each op and yolov5n / yolov7-tiny / learnable
#    activations (forward, loss, gradients, BatchNorm statistics, fused inference)
#    against the CPU kernels, raw outputs within 1e-3;
# 2. speed: yolov5n and yolov5s training step (batch 64, 640) and fused inference (batch
#    1 and 32, 640), actyolo (bench/gpu.rs; FP32, and --amp's bfloat16 convolutions)
#    beside PyTorch's eager yolov5 (bench/torch_gpu.py; FP32 and AMP), each engine in its
#    own process, one after the other;
# 3. a short training on the GPU: the synthetic shapes set, its mAP curve and epoch time.
#
# The `yolov5` package, if PyTorch's Python lacks it, is installed from wheels in .whl/
# (yolov5, ultralytics, ultralytics-thop; fetched with `pip download --no-deps` where
# there is a network). Each stage has its own time limit; a failed stage is reported and
# the next one runs. The exit status is the number of failed stages.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${1:-runs/gpu_check}"
mkdir -p "$out"
dist="$root/dist/gpu"
log="$out/gpu_check.log"
exec > >(tee "$log") 2>&1
failed=0
stage() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }
fail() { echo "FAILED: $1"; failed=$((failed + 1)); }

if [ ! -x "$dist/actyolo" ] && [ -f dist/gpu.tar.xz ]; then
    python3 -c "import tarfile; tarfile.open('dist/gpu.tar.xz').extractall('dist')"
fi

stage "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || fail "nvidia-smi"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# The CUDA 13 libraries PyTorch brought (cuBLAS, cuRAND, NVRTC), and the driver's libcuda.
libs="$(python3 - <<'EOF'
import glob, os, site
for base in site.getsitepackages():
    for hit in glob.glob(os.path.join(base, "nvidia", "**", "libcublas.so.13"), recursive=True):
        print(os.path.dirname(hit))
        raise SystemExit
EOF
)"
driver="$(dirname "$(ldconfig -p | grep -m1 -o '/[^ ]*libcuda.so.1' || find / -name libcuda.so.1 -print -quit 2>/dev/null)")"
export LD_LIBRARY_PATH="$libs:$driver:${LD_LIBRARY_PATH:-}"
echo "libraries: $libs; driver: $driver"
if ldd "$dist/actyolo" | grep "not found"; then
    fail "libraries missing for dist/gpu/actyolo"
fi

stage "1. parity (device path on the GPU against the CPU kernels and PyTorch's values)"
ACTYOLO_TEST_DEVICE=0 timeout 240 "$dist/device_path" --test-threads=1 | tee "$out/parity.txt" ||
    fail "parity"

stage "2. speed"
if ! python3 -c "import yolov5" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl &&
        export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
speed="$out/speed.jsonl"
: >"$speed"
timeout 200 python3 bench/torch_gpu.py --runs 5 >>"$speed" || fail "PyTorch's speed"
timeout 150 "$dist/gpu_bench" --device 0 --runs 5 >>"$speed" || fail "actyolo's speed"
timeout 100 "$dist/gpu_bench" --device 0 --runs 5 --amp --infer-batches 32 >>"$speed" ||
    fail "actyolo's speed with --amp"
python3 - "$speed" <<'EOF' | tee "$out/speed.md"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
def key(r): return (r["model"], r["what"], r["batch"], r["imgsz"])
ours = {e: {key(r): r for r in rows if r["engine"] == e} for e in ("actyolo", "actyolo-amp")}
print("| model | measurement | engine | median ms | min–max ms | TFLOP/s | actyolo / engine (AMP / AMP) |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    what = f"{'train step' if r['what'] == 'train' else 'inference fused'} b{r['batch']}@{r['imgsz']}"
    if "error" in r:
        print(f"| {r['model']} | {what} | {r['engine']} | {r['error'][:80]} | | | |")
        continue
    mine = ours["actyolo-amp" if r["engine"] == "torch-amp" else "actyolo"].get(key(r))
    ratio = "—" if r["engine"].startswith("actyolo") or not mine or "error" in mine else f"{mine['median_ms'] / r['median_ms']:.2f}×"
    rate = f"{r['tflops']:.1f}" if "tflops" in r else ""
    print(f"| {r['model']} | {what} | {r['engine']} | {r['median_ms']:.1f} | {r['min_ms']:.1f}–{r['max_ms']:.1f} | {rate} | {ratio} |")
EOF

stage "3. a short training on the GPU"
data="/tmp/gpu_check_shapes"
runs="/tmp/gpu_check_runs"
rm -rf "$data" "$runs"
timeout 60 "$dist/actyolo" data synth --out "$data" --n-train 1000 --n-val 100 || fail "data synth"
timeout 200 "$dist/actyolo" train --device 0 --data "$data/data.yaml" --imgsz 256 --epochs 10 \
    --batch 32 --optimizer Adam --project "$runs" --name train || fail "training"
if [ -f "$runs/train/results.csv" ]; then
    cp "$runs/train/results.csv" "$out/results.csv"
    python3 - "$out/results.csv" <<'EOF'
import csv, sys
rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(open(sys.argv[1]))]
print("epoch  mAP50   mAP50-95")
for r in rows:
    print(f"{r['epoch']:>5}  {float(r['metrics/mAP_0.5']):.3f}   {float(r['metrics/mAP_0.5:0.95']):.3f}")
EOF
fi

stage "done: $failed failed stage(s)"
exit "$failed"

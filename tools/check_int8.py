#!/usr/bin/env python3
"""Cross-check of `actyolo val --int8` with onnxruntime's `quantize_static` (a development
tool; tests and CI do not need Python).

For the weights given, it
  1. exports them with `actyolo export --dynamic` (a float ONNX file);
  2. quantizes that file with onnxruntime's quantize_static in the scheme `val --int8`
     simulates: QDQ format, per-channel int8 weights, uint8 activations, MinMax
     calibration, only Conv inputs quantized (OpTypesToExcludeOutputQuantization: Conv),
     calibrated on the same images: the first --calib-images of the train split, loaded
     and letterboxed to the square --imgsz by yolov5's own dataset class (as `val --int8`
     loads them);
  3. scores the float weights, `val --int8`, and onnxruntime's quantized file (run by
     `actyolo val`, so every number comes from the same evaluator) and prints the three
     mAP50-95 and mAP50, and the difference between the two INT8 results.

It exits non-zero when the INT8 mAP50-95 values differ by more than --tolerance (0.01).

Environment: see the reference environment's recipe (torch, yolov5 7.0.x, onnx,
onnxruntime).

Usage:
  /tmp/ref/bin/python tools/check_int8.py --data runs/compare/shapes/data.yaml --imgsz 128 \
      runs/compare/exp/runs/silu-seed0/weights/best.safetensors ...
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from ort_int8 import quantize_like_val_int8

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "target" / "release" / "actyolo"


def actyolo(*args):
    out = subprocess.run([str(BINARY), *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"actyolo {' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout


def val_map(weights, data, imgsz, *extra):
    """(mAP50, mAP50-95) from the `all` row of `actyolo val`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = actyolo("val", "--weights", weights, "--data", data, "--imgsz", imgsz, "--project", tmp, *extra)
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("all"))
    return float(row[5]), float(row[6])


def calibration_images(data, imgsz, count):
    from yolov5.utils.dataloaders import LoadImagesAndLabels

    config = yaml.safe_load(Path(data).read_text())
    root = Path(config.get("path") or Path(data).parent)
    if not root.is_absolute():
        root = Path(data).parent / root
    train = root / config["train"]
    dataset = LoadImagesAndLabels(str(train), img_size=imgsz, batch_size=16, augment=False, rect=False, pad=0.0)
    images = []
    for i in range(min(count, len(dataset))):
        img = dataset[i][0].numpy().astype(np.float32) / 255.0
        images.append(img[None])
    return images


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", nargs="+", type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--calib-images", type=int, default=128)
    parser.add_argument("--tolerance", type=float, default=0.01)
    args = parser.parse_args()
    images = calibration_images(args.data, args.imgsz, args.calib_images)
    worst = 0.0
    print(f"{'weights':60} {'float':>15} {'val --int8':>15} {'ORT int8':>15} {'|Δ int8|':>9}")
    for weights in args.weights:
        with tempfile.TemporaryDirectory() as tmp:
            float_onnx = Path(tmp) / "float.onnx"
            int8_onnx = Path(tmp) / "int8.onnx"
            actyolo("export", "--weights", weights, "--imgsz", args.imgsz, "--dynamic", "--out", float_onnx)
            quantize_like_val_int8(float_onnx, int8_onnx, "images", images)
            ort_int8 = val_map(int8_onnx, args.data, args.imgsz)
        fp = val_map(weights, args.data, args.imgsz)
        ours = val_map(weights, args.data, args.imgsz, "--int8", "--calib-images", args.calib_images)
        gap = abs(ours[1] - ort_int8[1])
        worst = max(worst, gap)
        show = lambda m: f"{m[1]:.4f} ({m[0]:.3f})"
        print(f"{str(weights):60} {show(fp):>15} {show(ours):>15} {show(ort_int8):>15} {gap:9.4f}")
    print(f"mAP50-95 (mAP50); the largest INT8 difference is {worst:.4f} (tolerance {args.tolerance})")
    sys.exit(0 if worst <= args.tolerance else 1)


if __name__ == "__main__":
    main()

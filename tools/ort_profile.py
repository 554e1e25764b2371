#!/usr/bin/env python3
"""Where onnxruntime spends its time on a yolov5 model (a development tool; tests and CI do
not need Python).

Exports the model of a yolov5 config (seeded random weights, fused, Detect in export mode)
with torch's TorchScript-based exporter, opset 17, as yolov5's export.py does; runs it in
onnxruntime with its profiler on (default session options unless --threads), and prints each
node's median kernel time over the timed runs, then the total per op type. The README's
per-conv comparison with onnxruntime comes from this.

Environment: see the reference environment's recipe (torch, yolov5 7.0.x, onnx,
onnxruntime).

Usage:
  /tmp/ref/bin/python tools/ort_profile.py --cfg yolov5n.yaml --imgsz 640 --runs 60
"""

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort
import torch
import yolov5
from yolov5.models.yolo import Model


def export(cfg, imgsz, path):
    if not os.path.isfile(cfg):
        cfg = os.path.join(os.path.dirname(yolov5.__file__), "models", cfg)
    torch.manual_seed(0)
    model = Model(cfg).eval().fuse()
    model.model[-1].export = True
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 3, imgsz, imgsz), path, opset_version=17,
                          dynamo=False, input_names=["images"], output_names=["output0"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cfg", default="yolov5n.yaml", help="a yolov5 config name or path")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--runs", type=int, default=60, help="timed runs, after 10 warm-up runs")
    parser.add_argument("--threads", type=int, help="intra-op threads (onnxruntime's default if not given)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        export(args.cfg, args.imgsz, path)
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "profile")
        if args.threads:
            options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random((1, 3, args.imgsz, args.imgsz), dtype=np.float32)
        for _ in range(10 + args.runs):
            session.run(None, {"images": x})
        with open(session.end_profiling()) as f:
            events = json.load(f)

    times = collections.defaultdict(list)
    op_of = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["name"]].append(event["dur"])
            op_of[event["name"]] = event["args"].get("op_name", "?")
    per_op = collections.Counter()
    print(f"{'median us':>10}  {'op':<12} node")
    for name, durations in times.items():
        median = float(np.median(durations[10:]))
        per_op[op_of[name]] += median
        print(f"{median:10.0f}  {op_of[name]:<12} {name}")
    total = sum(per_op.values())
    print(f"\nall nodes: {total / 1e3:.2f} ms per run (medians summed)")
    for op, us in per_op.most_common():
        print(f"{op:<12} {us / 1e3:7.2f} ms  {100 * us / total:5.1f}%")


if __name__ == "__main__":
    main()

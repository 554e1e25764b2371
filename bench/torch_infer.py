#!/usr/bin/env python3
"""Peer numbers for bench/infer.rs: yolov5n (nc=80, fused, batch 1) inference at 640 and
320 in PyTorch eager and onnxruntime, 2 threads, median of RUNS after a warm-up.
Prints lines `<engine> <imgsz> <median ms>`. Needs torch, yolov5==7.0.*, onnx, onnxruntime."""
import io, os, statistics, tempfile, time, warnings, contextlib
warnings.filterwarnings("ignore")
os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
import torch
torch.set_num_threads(2)
from yolov5.models.yolo import DetectionModel

RUNS = int(os.environ.get("RUNS", "20"))
cfg = os.path.join(os.path.dirname(__file__), "..", "configs", "models", "yolov5n.yaml")
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    model = DetectionModel(cfg).fuse().eval()

def median(f):
    f()
    times = []
    for _ in range(RUNS):
        t = time.perf_counter(); f(); times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)

for size in (640, 320):
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        print("torch", size, median(lambda: model(x)))
    try:
        import onnxruntime as ort
        path = os.path.join(tempfile.mkdtemp(), f"yolov5n_{size}.onnx")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(model, x, path, opset_version=12, dynamo=False)
        opts = ort.SessionOptions(); opts.intra_op_num_threads = 2
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        print("onnxruntime", size, median(lambda: sess.run(None, {name: x.numpy()})))
    except Exception as e:  # onnxruntime missing: Rust and torch numbers only
        print("#", e)

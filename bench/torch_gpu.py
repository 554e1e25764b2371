#!/usr/bin/env python3
"""PyTorch's side of the GPU check (tools/gpu_check.sh): yolov5's own DetectionModel,
ComputeLoss and smart_optimizer (the `yolov5` pip package) on a CUDA GPU, measured as
bench/gpu.rs measures actyolo, printed as the same JSON lines.

  torch_gpu.py --models yolov5n,yolov5s --train-batch 64 --imgsz 640 --infer-batches 1,32

Engines: "torch" (eager FP32 with PyTorch's defaults, which let cuDNN convolutions use
TF32), and "torch-amp" for the training step as train.py runs it on a GPU (autocast
FP16 with a GradScaler). The training step: forward, ComputeLoss, backward,
clip_grad_norm_(10), SGD step, zero_grad, on 10 random boxes per image; inference: the
fused eval model (decode included, NMS not). Each timed run ends with
torch.cuda.synchronize(); one warm-up, then --runs runs; the median is the upper middle,
as time_runs picks it. A failed measurement prints {"error"} and the others go on.
"""
import argparse
import contextlib
import io
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")
for key, value in (("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config"), ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1"),
                   ("WANDB_MODE", "disabled"), ("COMET_MODE", "DISABLED"), ("CLEARML_OFF", "1")):
    os.environ.setdefault(key, value)

import torch  # noqa: E402
from yolov5.models.yolo import DetectionModel  # noqa: E402
from yolov5_setup import loss_and_optimizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NC = 80
# --device: a CUDA GPU; "cpu" only to try this script where there is none.
DEVICE = torch.device("cuda")


@contextlib.contextmanager
def quiet():
    """Silences yolov5's model summaries."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def synchronize():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(f, runs):
    f()
    synchronize()
    times = []
    for _ in range(max(runs, 1)):
        started = time.perf_counter()
        f()
        synchronize()
        times.append((time.perf_counter() - started) * 1e3)
    times.sort()
    return {"median_ms": times[len(times) // 2], "min_ms": times[0], "max_ms": times[-1], "runs": len(times)}


def targets(batch, generator):
    rows = []
    for image in range(batch):
        for _ in range(10):
            w, h = (0.05 + 0.45 * torch.rand(2, generator=generator)).tolist()
            x = w / 2 + (1 - w) * torch.rand(1, generator=generator).item()
            y = h / 2 + (1 - h) * torch.rand(1, generator=generator).item()
            rows.append([image, torch.randint(0, NC, (1,), generator=generator).item(), x, y, w, h])
    return torch.tensor(rows, dtype=torch.float32)


def training_step(cfg, batch, imgsz, amp):
    with quiet():
        model = DetectionModel(cfg, nc=NC).to(DEVICE).train()
    with quiet():
        compute_loss, optimizer = loss_and_optimizer(
            model, os.path.join(ROOT, "configs/hyps/hyp.scratch-low.yaml"), imgsz, NC)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, imgsz, imgsz, generator=generator).to(DEVICE)
    labels = targets(batch, generator).to(DEVICE)
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=amp)

    def step():
        with torch.autocast(DEVICE.type, enabled=amp):
            loss, _ = compute_loss(model(images), labels)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()

    return step


def inference(cfg, batch, imgsz):
    with quiet():
        model = DetectionModel(cfg, nc=NC).to(DEVICE).fuse().eval()
    x = torch.rand(batch, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0)).to(DEVICE)

    def run():
        with torch.no_grad():
            model(x)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="yolov5n,yolov5s")
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--infer-batches", default="1,32")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    for model in args.models.split(","):
        cfg = os.path.join(ROOT, "configs/models", f"{model}.yaml")
        cases = [("torch", "train", args.train_batch, lambda: training_step(cfg, args.train_batch, args.imgsz, False)),
                 ("torch-amp", "train", args.train_batch, lambda: training_step(cfg, args.train_batch, args.imgsz, True))]
        cases += [("torch", "infer", b, lambda b=b: inference(cfg, b, args.imgsz))
                  for b in map(int, args.infer_batches.split(","))]
        for engine, what, batch, make in cases:
            line = {"engine": engine, "model": model, "what": what, "batch": batch, "imgsz": args.imgsz}
            try:
                line.update(timed(make(), args.runs))
            except Exception as e:  # noqa: BLE001 - reported in the table, the rest goes on
                line["error"] = f"{type(e).__name__}: {e}"
            if DEVICE.type == "cuda":
                torch.cuda.empty_cache()
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())

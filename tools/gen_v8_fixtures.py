#!/usr/bin/env python3
"""Golden fixtures for YOLOv8 and YOLO11 (ultralytics 8's modules and anchor-free Detect),
made with the ultralytics pip package (8.4.x).

Parity at full size without committing megabytes of weights: every weight and bias is
filled from a formula of its name and element index, which tests/v8_support/mod.rs computes
the same way (an FNV-1a hash of the name, splitmix64 of hash + index, 53 bits to [0, 1) in
float64, scaled per kind of tensor, then rounded to float32). The DFL conv keeps its fixed
0..reg_max weight. The BatchNorm running statistics are measured instead (a cumulative
average over training-mode passes on random images), so that every layer's output is of
order one, and committed: they are a few hundred kilobytes.

Writes into tests/fixtures/models_v8/:
  - <model>-<act>.out.safetensors   for yolov8n and yolo11n (nc=80) with SiLU and with ReLU
                       (the YAML's `activation:`): the running statistics (`state.<name>`),
                       and the eval-mode outputs for the input
                       `images` (1, 3, 128, 96): `boxes` (1, 64, N) and `scores` (1, 80, N),
                       the raw logits; `y` (1, 84, N), the decoded boxes (cx, cy, w, h in
                       pixels) and class probabilities; and the same after `model.fuse()`
                       (`fused.boxes`, `fused.scores`, `fused.y`)
  - tiny.pt            a yolo11 checkpoint as ultralytics' trainer saves it mid-run
                       ({'model': None, 'ema': fp16 DetectionModel, ...}) of a narrow scale
                       (width 1/16, nc=3, class names), with tiny.out.safetensors: its
                       eval-mode outputs as above for `images` (2, 3, 64, 96)

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/pip install ultralytics==8.4.190 ultralytics-thop safetensors
    /tmp/ref/bin/python tools/gen_v8_fixtures.py
"""

import copy
import os
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from ultralytics.nn.modules import Conv  # noqa: E402
from ultralytics.nn.tasks import DetectionModel, yaml_model_load  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "models_v8")
MASK = (1 << 64) - 1


def fnv1a(name):
    h = 0xCBF29CE484222325
    for byte in name.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def uniform(name, n):
    """n values in [0, 1): splitmix64(fnv1a(name) + i) >> 11, times 2^-53."""
    z = (np.uint64(fnv1a(name)) + np.arange(n, dtype=np.uint64)).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def formula(name, shape):
    """The value of every element of the state_dict entry `name`."""
    n = int(np.prod(shape))
    u = uniform(name, n)
    if name.endswith("running_var"):
        v = 0.5 + u
    elif name.endswith("running_mean"):
        v = 0.2 * (2 * u - 1)
    elif name.endswith("bn.weight"):
        v = 0.5 + 0.5 * u
    elif name.endswith("bias"):
        v = 0.2 * (2 * u - 1)
    else:  # convolution weights: He-uniform, a little contracting
        fan_in = n // shape[0]
        v = (2 * u - 1) * (0.8 * np.sqrt(6.0 / fan_in))
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def is_statistic(name):
    return name.endswith("running_mean") or name.endswith("running_var")


def fill(model):
    """Weights from the formula; running statistics measured on random images."""
    state = model.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            if "num_batches_tracked" in name or name.endswith("dfl.conv.weight") or is_statistic(name):
                continue
            t.copy_(formula(name, tuple(t.shape)))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # a cumulative average
        model.train()
        for seed in range(4):
            model(images((2, 3, 128, 96), 100 + seed))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.03
    return {f"state.{k}": v.clone() for k, v in model.state_dict().items() if is_statistic(k)}


def build(cfg, activation=None):
    d = yaml_model_load(cfg)
    if activation:
        d["activation"] = activation
    model = DetectionModel(d, ch=3, verbose=False)
    Conv.default_act = nn.SiLU()  # the class attribute leaks into later builds otherwise
    return model


def outputs(model, images, prefix=""):
    model.eval()
    with torch.no_grad():
        y, preds = model(images)
    return {
        f"{prefix}boxes": preds["boxes"].contiguous(),
        f"{prefix}scores": preds["scores"].contiguous(),
        f"{prefix}y": y.contiguous(),
    }


def images(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


def main():
    os.makedirs(OUT, exist_ok=True)
    x = images((1, 3, 128, 96), 0)
    for cfg in ["yolov8n.yaml", "yolo11n.yaml"]:
        for act, spec in [("silu", None), ("relu", "nn.ReLU()")]:
            model = build(cfg, spec)
            statistics = fill(model)
            out = {"images": x, **statistics, **outputs(model, x)}
            model.fuse()
            out.update(outputs(model, x, "fused."))
            stem = cfg.removesuffix(".yaml")
            save_file(out, os.path.join(OUT, f"{stem}-{act}.out.safetensors"))
            print(stem, act, "logits' std: boxes %.2f, scores %.2f" % (out["boxes"].std(), out["scores"].std()))

    # A narrow yolo11 (width 1/16) with trained-looking weights, saved as ultralytics does.
    torch.manual_seed(0)
    d = yaml_model_load("yolo11n.yaml")
    d["scales"] = {"n": [0.5, 0.0625, 1024]}
    d["nc"] = 3
    model = DetectionModel(d, ch=3, verbose=False)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1.0 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.1 * torch.randn_like(m.bias))
                m.running_mean.copy_(0.1 * torch.randn_like(m.running_mean))
                m.running_var.copy_(1.0 + 0.3 * torch.rand_like(m.running_var))
    model.names = {0: "circle", 1: "rectangle", 2: "triangle"}
    model = model.half().float()  # the weights as the checkpoint holds them
    x = images((2, 3, 64, 96), 1)
    out = {"images": x, **outputs(model, x)}
    save_file(out, os.path.join(OUT, "tiny.out.safetensors"))
    ckpt = {
        "date": "2026-12-06",
        "version": "8.4.190",
        "epoch": 3,
        "best_fitness": 0.1,
        "model": None,
        "ema": copy.deepcopy(model).half(),
        "updates": 12,
        "optimizer": None,
        "train_args": {"imgsz": 96},
    }
    torch.save(ckpt, os.path.join(OUT, "tiny.pt"))
    print("tiny", sum(p.numel() for p in model.parameters()), "parameters")


if __name__ == "__main__":
    main()

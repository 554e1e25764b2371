#!/usr/bin/env python3
"""Golden fixtures for model building, weight import and output parity, made with the
ultralytics `yolov5` pip package (7.0.x).

For each activation (SiLU, ReLU, LeakyReLU(0.1), Hardswish, Mish, FReLU) it builds a
from-scratch YOLOv5 with nc=3 (yolov5n's layout at width 1/16, so the files stay small),
moves the BatchNorm statistics away from their defaults, rounds every weight to fp16 (the
precision train.py saves), and writes into tests/fixtures/models/:
  - <act>.pt           a checkpoint as train.py writes it: {'model', 'ema', 'epoch', ...};
                       for silu 'model' holds other (perturbed) weights and 'ema' the real
                       ones, to check that the EMA is preferred; elsewhere 'ema' is None
                       and 'model' holds the weights (as strip_optimizer leaves them)
  - <act>.safetensors  the state_dict (float32, ultralytics names)
  - <act>.out.safetensors  the input image batch and the eval-mode Detect outputs: the
                       decoded `z` (bs, N, nc+5) and the raw maps `raw.<level>`
  - <act>.yaml         the model YAML (with its `activation:` key)

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/pip install safetensors
    /tmp/ref/bin/python tools/gen_model_fixtures.py
"""

import copy
import os
import warnings

os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from yolov5.models.common import Conv  # noqa: E402
from yolov5.models.yolo import DetectionModel  # noqa: E402
from yolov5.utils.activations import FReLU  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "models")
NAMES = ["circle", "rectangle", "triangle"]

# yolov5n's layout (v6.0 backbone with SPPF), nc=3, at width 1/16.
CFG = {
    "nc": 3,
    "depth_multiple": 0.33,
    "width_multiple": 0.0625,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [
        [-1, 1, "Conv", [64, 6, 2, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 3, "C3", [128]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 6, "C3", [256]],
        [-1, 1, "Conv", [512, 3, 2]],
        [-1, 9, "C3", [512]],
        [-1, 1, "Conv", [1024, 3, 2]],
        [-1, 3, "C3", [1024]],
        [-1, 1, "SPPF", [1024, 5]],
    ],
    "head": [
        [-1, 1, "Conv", [512, 1, 1]],
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 6], 1, "Concat", [1]],
        [-1, 3, "C3", [512, False]],
        [-1, 1, "Conv", [256, 1, 1]],
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 4], 1, "Concat", [1]],
        [-1, 3, "C3", [256, False]],
        [-1, 1, "Conv", [256, 3, 2]],
        [[-1, 14], 1, "Concat", [1]],
        [-1, 3, "C3", [512, False]],
        [-1, 1, "Conv", [512, 3, 2]],
        [[-1, 10], 1, "Concat", [1]],
        [-1, 3, "C3", [1024, False]],
        [[17, 20, 23], 1, "Detect", ["nc", "anchors"]],
    ],
}

ACTIVATIONS = {
    "silu": "nn.SiLU()",
    "relu": "nn.ReLU()",
    "leakyrelu": "nn.LeakyReLU(0.1)",
    "hardswish": "nn.Hardswish()",
    "mish": "nn.Mish()",
    "frelu": "FReLU",
}


def build(name, spec):
    cfg = copy.deepcopy(CFG)
    # ultralytics evaluates `activation:` into the class attribute Conv.default_act; FReLU
    # needs each layer's channels, so it is attached per Conv after the build instead.
    if name != "frelu":
        cfg["activation"] = spec
    model = DetectionModel(cfg, ch=3)
    Conv.default_act = nn.SiLU()  # the attribute leaks into later builds otherwise
    if name == "frelu":
        for m in model.modules():
            if isinstance(m, Conv):
                m.act = FReLU(m.conv.out_channels)
                m.act.bn.eps, m.act.bn.momentum = 1e-3, 0.03
        model.yaml["activation"] = spec
    model.names = NAMES
    model.nc = 3
    return model


def move_statistics(model):
    """BatchNorm affine parameters and running statistics away from 1/0, then a few
    training passes so the running statistics are the product of real updates."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1.0 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.1 * torch.randn_like(m.bias))
                m.momentum = 0.3
        model.train()
        for _ in range(4):
            model(torch.rand(2, 3, 64, 64) * 2.0 - 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.03


def main():
    os.makedirs(OUT, exist_ok=True)
    for index, (name, spec) in enumerate(ACTIVATIONS.items()):
        torch.manual_seed(index)
        model = build(name, spec)
        move_statistics(model)
        model = model.half().float()  # the weights as a checkpoint holds them
        model.eval()
        images = torch.rand(2, 3, 96, 64)
        with torch.no_grad():
            z, raw = model(images)
        outputs = {"images": images, "z": z}
        outputs.update({f"raw.{i}": r.contiguous() for i, r in enumerate(raw)})
        save_file(outputs, os.path.join(OUT, f"{name}.out.safetensors"))

        state = {k: v.float().contiguous() for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
        save_file(state, os.path.join(OUT, f"{name}.safetensors"))
        with open(os.path.join(OUT, f"{name}.yaml"), "w") as f:
            yaml.safe_dump(model.yaml, f, sort_keys=False)

        weights = copy.deepcopy(model).half()
        if name == "silu":
            decoy = copy.deepcopy(model)
            with torch.no_grad():
                for p in decoy.parameters():
                    p.add_(0.5)
            ckpt_model, ckpt_ema = decoy.half(), weights
        else:
            ckpt_model, ckpt_ema = weights, None
        ckpt = {"epoch": -1, "best_fitness": None, "model": ckpt_model, "ema": ckpt_ema, "updates": None,
                "optimizer": None, "opt": {"imgsz": 64}, "date": "2026-11-28"}
        torch.save(ckpt, os.path.join(OUT, f"{name}.pt"))
        n = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n} parameters, z {tuple(z.shape)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden fixtures for the optimiser, the warmup/LR schedule and ModelEMA, computed with
torch.optim and ultralytics' yolov5 7.0 code, as train.py drives them.

Writes tests/fixtures/train.safetensors and tests/fixtures/train.json:
  - a few named parameters (one per optimiser group), the gradients of 4 steps (one set
    large enough that clip_grad_norm_(max_norm=10) clips it), and, for SGD (Nesterov),
    Adam and AdamW, the parameters after every step with train.py's three groups;
  - ModelEMA's state after every step (SGD run);
  - train.py's warmup learning rates and momentum and the linear / one-cycle factors.

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/python tools/gen_train_fixtures.py
"""

import json
import math
import os
import warnings

os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from yolov5.utils.general import one_cycle  # noqa: E402
from yolov5.utils.torch_utils import ModelEMA  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
torch.manual_seed(0)


class Tiny(nn.Module):
    """Parameters named as in a YOLOv5 state_dict, one or more per optimiser group."""

    def __init__(self):
        super().__init__()
        self.model = nn.ModuleDict()
        conv = nn.Module()
        conv.conv = nn.Conv2d(2, 3, 3, bias=False)
        conv.bn = nn.BatchNorm2d(3)
        conv.act = nn.PReLU()
        self.model["0"] = conv
        head = nn.Module()
        head.m = nn.ModuleList([nn.Conv2d(3, 6, 1)])
        self.model["24"] = head


def groups(model):
    """train.py's smart_optimizer groups: biases, weights with decay, BN weights (and, in
    actyolo, activation parameters) without decay."""
    g_bias = [p for n, p in model.named_parameters() if n.endswith(".bias")]
    g_nodecay = [p for n, p in model.named_parameters() if n.endswith("bn.weight") or ".act." in n]
    taken = {id(p) for p in g_bias + g_nodecay}
    g_decay = [p for n, p in model.named_parameters() if id(p) not in taken]
    return g_bias, g_decay, g_nodecay


WD, LR0, MOMENTUM = 5e-4, 0.01, 0.937
# Per step: the LR and momentum of each group, as warmup would set them.
SCHEDULE = [
    {"lr": [0.1, 0.0, 0.0], "momentum": 0.8},
    {"lr": [0.07, 0.003, 0.003], "momentum": 0.85},
    {"lr": [0.04, 0.006, 0.006], "momentum": 0.9},
    {"lr": [0.01, 0.01, 0.01], "momentum": MOMENTUM},
]

base = Tiny()
with torch.no_grad():
    for p in base.parameters():
        p.copy_(torch.randn_like(p))
    base.model["0"].bn.running_mean.copy_(torch.randn(3) * 0.1)
    base.model["0"].bn.running_var.copy_(torch.rand(3) + 0.5)
names = [n for n, _ in base.named_parameters()]
grads = []
for step in range(len(SCHEDULE)):
    scale = 20.0 if step == 1 else 0.5  # step 1 exceeds the clipping norm of 10
    grads.append({n: torch.randn_like(p) * scale for n, p in base.named_parameters()})

tensors = {f"init/{n}": p.detach().clone() for n, p in base.state_dict().items() if "num_batches" not in n}
for step, g in enumerate(grads):
    for n, t in g.items():
        tensors[f"grad/{step}/{n}"] = t

for kind in ["SGD", "Adam", "AdamW"]:
    model = Tiny()
    model.load_state_dict(base.state_dict())
    g_bias, g_decay, g_nodecay = groups(model)
    if kind == "SGD":
        opt = torch.optim.SGD(g_bias, lr=LR0, momentum=MOMENTUM, nesterov=True)
    elif kind == "Adam":
        opt = torch.optim.Adam(g_bias, lr=LR0, betas=(MOMENTUM, 0.999))
    else:
        opt = torch.optim.AdamW(g_bias, lr=LR0, betas=(MOMENTUM, 0.999), weight_decay=0.0)
    opt.add_param_group({"params": g_decay, "weight_decay": WD})
    opt.add_param_group({"params": g_nodecay, "weight_decay": 0.0})
    ema = ModelEMA(model) if kind == "SGD" else None
    for step, sched in enumerate(SCHEDULE):
        # BatchNorm buffers move as training would move them, so the EMA averages them too.
        with torch.no_grad():
            model.model["0"].bn.running_mean.add_(0.01 * (step + 1))
        for j, group in enumerate(opt.param_groups):
            group["lr"] = sched["lr"][j]
            if "momentum" in group:
                group["momentum"] = sched["momentum"]
            if "betas" in group:
                group["betas"] = (sched["momentum"], 0.999)
        for n, p in model.named_parameters():
            p.grad = grads[step][n].clone()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        opt.step()
        opt.zero_grad()
        for n, p in model.named_parameters():
            tensors[f"{kind}/{step}/{n}"] = p.detach().clone()
        if ema is not None:
            ema.update(model)
            for n, v in ema.ema.state_dict().items():
                if v.dtype.is_floating_point:
                    tensors[f"ema/{step}/{n}"] = v.detach().clone()

# train.py's schedule arithmetic.
epochs, nb, lrf = 30, 37, 0.01
linear = lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf  # noqa: E731
cosine = one_cycle(1, lrf, epochs)
nw = max(round(3.0 * nb), 100)
warmup = []
for ni in [0, 1, 50, 99, 110, 111, 200]:
    epoch = ni // nb
    xi = [0, nw]
    accumulate = max(1, np.interp(ni, xi, [1, 64 / 16]).round())
    lrs = [float(np.interp(ni, xi, [0.1 if j == 0 else 0.0, LR0 * linear(epoch)])) for j in range(3)]
    momentum = float(np.interp(ni, xi, [0.8, MOMENTUM]))
    warmup.append({"ni": ni, "epoch": epoch, "accumulate": int(accumulate), "lr": lrs, "momentum": momentum})

os.makedirs(OUT, exist_ok=True)
save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "train.safetensors"))
with open(os.path.join(OUT, "train.json"), "w") as f:
    json.dump({
        "names": names, "weight_decay": WD, "steps": len(SCHEDULE), "schedule": SCHEDULE,
        "epochs": epochs, "batches": nb, "lrf": lrf, "warmup_iterations": nw, "warmup": warmup,
        "linear": [linear(e) for e in range(epochs + 1)], "cosine": [cosine(e) for e in range(epochs + 1)],
        "ema_updates": len(SCHEDULE),
    }, f, indent=1)
print(f"{len(tensors)} tensors")

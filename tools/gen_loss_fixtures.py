#!/usr/bin/env python3
"""Golden fixtures for the YOLOv5 loss (`actyolo::train::loss`), made with ultralytics'
`ComputeLoss` from the `yolov5` pip package (7.0.x), `utils/loss.py`.

A minimal stand-in model carries what ComputeLoss reads: `.hyp` and `.model[-1]` with
`na, nc, nl, anchors, stride`. Fixed random raw Detect maps (bs 3, 3 anchors, small
non-square grids that differ per level) and hand-picked targets cover: centres on cell
corners and on half-cell borders (all, none or two neighbour offsets), centres near and on
the image edges (clamped cells), a box too large for the first level, a tiny box that
matches no anchor anywhere, two targets on the same cell and anchor (the last one's IoU is
the objectness target), several images and an image without targets.

Cases: the default hyperparameters (hyp.scratch-low, scaled as train.py scales them),
label smoothing 0.1, focal loss gamma 1.5, cls_pw/obj_pw != 1 with anchor_t 2.9, and nc = 1
on two levels (no class loss, the 5-level balance list).

The expected numbers are torch's in float64 from the float32 inputs; the script checks that
the float32 computation (the one training runs) makes the same target assignment and
nearly the same loss, so the comparison is with the exact function.

Writes into tests/fixtures/loss/:
  - loss.json          per case: nc, levels' grids, anchors, base and scaled hyps (with
                       train.py's nl, nc, imgsz), targets, loss, (lbox, lobj, lcls)
  - loss.safetensors   `preds.<group>.<level>` (float32) and `grad.<case>.<level>`
                       (d total / d preds, float32 from float64)

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/python tools/gen_loss_fixtures.py
"""

import json
import os
import warnings

os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from yolov5.utils.loss import ComputeLoss  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "loss")

# hyp.scratch-low.yaml, the loss part.
BASE_HYP = {"box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0, "anchor_t": 4.0,
            "fl_gamma": 0.0, "label_smoothing": 0.0}

# (ny, nx) per level and anchors (stride units) per level.
GRIDS = [(4, 6), (3, 4), (2, 2)]
ANCHORS = [[[0.6, 0.8], [1.0, 0.7], [1.2, 1.5]],
           [[0.8, 1.0], [1.5, 2.0], [2.5, 1.2]],
           [[0.5, 0.7], [1.0, 1.0], [1.8, 1.5]]]
BATCH = 3
IMGSZ = 320  # what train.py's obj gain scaling sees

# [image, class, cx, cy, w, h], normalised. Image 1 has no targets.
TARGETS = [
    [0, 0, 0.5, 0.5, 0.3, 0.4],      # on a cell corner at every level: both neighbours in x and y
    [0, 1, 0.25, 0.375, 0.2, 0.2],   # on half-cell borders at level 0: no neighbour
    [0, 2, 0.02, 0.97, 0.1, 0.12],   # near the image edge
    [0, 1, 1.0, 0.0, 0.15, 0.1],     # on the image edge: the cell index is clamped
    [0, 0, 0.9, 0.1, 1.0, 1.0],      # too large for level 0's anchors
    [2, 2, 0.4, 0.6, 0.01, 0.02],    # too small for every anchor
    [2, 0, 0.3, 0.3, 0.2, 0.3],      # these two share cells and anchors
    [2, 1, 0.31, 0.32, 0.21, 0.28],
    [2, 2, 0.7, 0.45, 0.35, 0.15],
    [2, 1, 0.62, 0.81, 0.08, 0.3],
    [2, 0, 0.12, 0.2, 0.5, 0.33],
]


class StandIn(nn.Module):
    """What ComputeLoss reads from a model: `.hyp` and `.model[-1]` (the Detect head)."""

    def __init__(self, nc, anchors, hyp):
        super().__init__()
        head = nn.Module()
        head.nc, head.na, head.nl = nc, anchors.shape[1], anchors.shape[0]
        head.register_buffer("anchors", anchors)
        head.stride = torch.tensor([8.0, 16.0, 32.0, 64.0, 128.0][: head.nl])
        self.model = nn.ModuleList([nn.Linear(1, 1), head])  # a parameter tells ComputeLoss the device
        self.hyp = hyp


def scaled(hyp, nl, nc, imgsz):
    """train.py's scaling of the loss gains."""
    h = dict(hyp)
    h["box"] *= 3 / nl
    h["cls"] *= nc / 80 * 3 / nl
    h["obj"] *= (imgsz / 640) ** 2 * 3 / nl
    return h


def run(nc, anchors, hyp, preds, targets, dtype):
    """Loss, components, gradients and target assignment in `dtype`."""
    torch.set_default_dtype(dtype)  # ComputeLoss's zeros/ones accumulators follow it
    try:
        model = StandIn(nc, anchors.to(dtype), hyp)
        loss_fn = ComputeLoss(model)
        p = [x.to(dtype).clone().requires_grad_(True) for x in preds]
        total, items = loss_fn(p, targets.to(dtype))
        total.sum().backward()
        indices = [[t.tolist() for t in level] for level in loss_fn.build_targets(p, targets.to(dtype))[2]]
        return total.item(), items.tolist(), [x.grad for x in p], indices
    finally:
        torch.set_default_dtype(torch.float32)


def case(name, nc, levels, hyp_changes, preds, store):
    hyp = dict(BASE_HYP, **hyp_changes)
    nl = len(levels)
    h = scaled(hyp, nl, nc, IMGSZ)
    anchors = torch.tensor(ANCHORS[:nl], dtype=torch.float32)
    targets = torch.tensor(TARGETS, dtype=torch.float32)
    if nc == 1:
        targets[:, 1] = 0
    loss64, items64, grads64, idx64 = run(nc, anchors, h, preds, targets, torch.float64)
    loss32, items32, _, idx32 = run(nc, anchors, h, preds, targets, torch.float32)
    assert idx32 == idx64, f"{name}: float32 and float64 assign targets differently"
    assert abs(loss32 - loss64) <= 1e-5 * (1 + abs(loss64)), f"{name}: float32 {loss32} vs float64 {loss64}"
    for i, g in enumerate(grads64):
        store[f"grad.{name}.{i}"] = g.float().contiguous()
    print(f"{name}: loss {loss64:.6f} (box, obj, cls) {[round(x, 6) for x in items64]}, "
          f"positives per level {[len(level[0]) for level in idx64]}")
    return {
        "name": name,
        "nc": nc,
        "preds": f"nc{nc}",
        "levels": nl,
        "imgsz": IMGSZ,
        "anchors": anchors.tolist(),
        "hyp": hyp,
        "scaled_hyp": h,
        "targets": targets.tolist(),
        "loss": loss64,
        "items": items64,
    }


def random_preds(nc, levels):
    return [torch.randn(BATCH, len(ANCHORS[0]), ny, nx, nc + 5) * 1.5 for ny, nx in GRIDS[:levels]]


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    preds3 = random_preds(3, 3)
    preds1 = random_preds(1, 2)
    store = {f"preds.nc3.{i}": p.contiguous() for i, p in enumerate(preds3)}
    store.update({f"preds.nc1.{i}": p.contiguous() for i, p in enumerate(preds1)})
    cases = [
        case("default", 3, GRIDS, {}, preds3, store),
        case("label_smoothing", 3, GRIDS, {"label_smoothing": 0.1}, preds3, store),
        case("focal", 3, GRIDS, {"fl_gamma": 1.5}, preds3, store),
        case("pos_weight", 3, GRIDS, {"cls_pw": 1.7, "obj_pw": 0.6, "anchor_t": 2.9}, preds3, store),
        case("nc1", 1, GRIDS[:2], {}, preds1, store),
    ]
    with open(os.path.join(OUT, "loss.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
    save_file(store, os.path.join(OUT, "loss.safetensors"))


if __name__ == "__main__":
    main()

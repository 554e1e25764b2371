#!/usr/bin/env python3
"""Golden values for ultralytics 8's detection loss (v8DetectionLoss with its
TaskAlignedAssigner), made with the ultralytics pip package (8.4.x).

Three images at 64x96 (levels 8x12, 4x6 and 2x3 at strides 8, 16 and 32: 126 anchor
points), 3 classes, reg_max 16. The raw logits are random; the boxes include one narrower
than the middle stride (which the assigner widens), two that overlap (anchors claimed
twice), one at the image's edge, and an image without any. Writes
tests/fixtures/loss/v8.safetensors:
  - boxes (3, 64, 126), scores (3, 3, 126): the head's raw logits, cells of all levels in
    order (ultralytics' layout)
  - targets (n, 6): [image, class, cx, cy, w, h] normalised, as actyolo's loader gives them
  - items (3,): box, cls and dfl losses after their gains (7.5, 0.5, 1.5); total (1,): the
    sum times the batch size
  - grad.boxes, grad.scores: d total / d logits

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/python tools/gen_v8_loss_fixtures.py
"""

import os
import warnings
from types import SimpleNamespace

warnings.filterwarnings("ignore")
os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from ultralytics.nn.tasks import DetectionModel, yaml_model_load  # noqa: E402
from ultralytics.utils.loss import v8DetectionLoss  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "loss", "v8.safetensors")
SIZES = [(8, 12), (4, 6), (2, 3)]
NC, BS = 3, 3


def main():
    d = yaml_model_load("yolov8n.yaml")
    d["nc"] = NC
    d["scales"] = {"n": [0.33, 0.0625, 1024]}
    model = DetectionModel(d, ch=3, verbose=False)
    model.args = SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
    loss_fn = v8DetectionLoss(model)

    g = torch.Generator().manual_seed(0)
    anchors = sum(h * w for h, w in SIZES)
    boxes = (torch.randn(BS, 64, anchors, generator=g) * 1.5).requires_grad_()
    scores = (torch.randn(BS, NC, anchors, generator=g) - 1.0).requires_grad_()
    feats = [torch.zeros(BS, 1, h, w) for h, w in SIZES]
    # [image, class, cx, cy, w, h], normalised to 96 wide, 64 high.
    targets = torch.tensor(
        [
            [0, 0, 0.30, 0.40, 0.35, 0.50],
            [0, 1, 0.40, 0.45, 0.30, 0.55],  # overlaps the first
            [0, 2, 0.80, 0.20, 0.10, 0.12],  # narrower than the middle stride (16 px)
            [1, 1, 0.50, 0.50, 0.60, 0.70],
            [1, 0, 0.92, 0.85, 0.16, 0.30],  # at the edge
        ]
    )
    batch = {"batch_idx": targets[:, 0], "cls": targets[:, 1:2], "bboxes": targets[:, 2:]}
    preds = {"boxes": boxes, "scores": scores, "feats": feats}
    total, items = loss_fn(preds, batch)
    total.sum().backward()
    save_file(
        {
            "boxes": boxes.detach(),
            "scores": scores.detach(),
            "targets": targets,
            "items": torch.stack(list(items.values())).float(),
            "total": total.sum().reshape(1).detach(),
            "grad.boxes": boxes.grad,
            "grad.scores": scores.grad,
        },
        OUT,
    )
    print({k: float(v) for k, v in items.items()}, float(total.sum()))


if __name__ == "__main__":
    main()

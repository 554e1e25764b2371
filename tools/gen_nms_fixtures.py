#!/usr/bin/env python3
"""Golden fixtures for non_max_suppression and scale_boxes, made with the ultralytics
`yolov5` pip package (7.0.x): tests/fixtures/nms.safetensors and tests/fixtures/nms.json.

Predictions are random but shaped like a Detect output (bs, N, 5 + nc) with nc=3: boxes in
clusters around a few centres, so that they overlap and NMS has work to do, objectness and
class scores in (0, 1). Two inputs:
  - `pred`        2 images x 3000 candidates
  - `pred_large`  1 image x 10500 candidates, all above conf 0.001 in all 3 classes, so that
                  multi-label NMS sees 31500 boxes and the max_nms=30000 cut matters
                  (max_det is lifted so that boxes kept beyond 300 show it; the script
                  checks that NMS over all 31500 keeps more)
Every case (see CASES) runs ultralytics' non_max_suppression and stores image i's kept rows
(x1, y1, x2, y2, conf, cls) as `<case>.<i>`. torch's argsort is not stable, so the script
checks that no two candidate scores tie, where the kept order would be torch's choice.

scale_boxes: random xyxy boxes (some outside the letterboxed image, to exercise the clip)
as `scale.<case>.in`, and scale_boxes' result as `scale.<case>.out`.

nms.json lists the cases with their options and shapes.

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/pip install safetensors
    /tmp/ref/bin/python tools/gen_nms_fixtures.py
"""

import json
import os
import warnings

os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torchvision  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from yolov5.utils.general import non_max_suppression, scale_boxes, xywh2xyxy  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
NC = 3
DEFAULTS = dict(conf_thres=0.25, iou_thres=0.45, classes=None, agnostic=False, multi_label=False, max_det=300)
CASES = [
    ("default", "pred", {}),
    ("val", "pred", dict(conf_thres=0.001, iou_thres=0.6, multi_label=True)),
    ("agnostic", "pred", dict(agnostic=True)),
    ("classes", "pred", dict(classes=[1])),
    ("max_det", "pred", dict(max_det=5)),
    ("max_nms", "pred_large", dict(conf_thres=0.001, iou_thres=0.6, multi_label=True, max_det=100000)),
]
# (name, img1_shape (h, w) letterboxed, img0_shape (h, w) original, ratio_pad or None)
SCALE_CASES = [
    ("wide", (384, 640), (480, 810), None),
    ("tall", (640, 448), (1000, 700), None),
    ("square_up", (640, 640), (300, 300), None),
    ("ratio_pad", (256, 320), (500, 640), ((0.5, 0.5), (0.0, 3.0))),
]


def clustered_boxes(gen, bs, n, clusters, size=(480, 640)):
    """(bs, n, 4) xywh: boxes scattered around `clusters` centres per image."""
    h, w = size
    centres = torch.rand(bs, clusters, 2, generator=gen) * torch.tensor([w, h])
    sizes = 16 + torch.rand(bs, clusters, 2, generator=gen) * 160
    pick = torch.randint(0, clusters, (bs, n), generator=gen)
    centre = torch.gather(centres, 1, pick[..., None].expand(-1, -1, 2))
    wh = torch.gather(sizes, 1, pick[..., None].expand(-1, -1, 2))
    xy = centre + torch.randn(bs, n, 2, generator=gen) * wh * 0.08
    wh = wh * (0.85 + 0.3 * torch.rand(bs, n, 2, generator=gen))
    return torch.cat([xy, wh], 2)


def uniform_scores(gen, bs, n):
    """Objectness and class scores uniform in (0, 1)."""
    return torch.rand(bs, n, 1 + NC, generator=gen)


def distinct_scores(gen, bs, n):
    """Objectness in (0.5, 1) and class scores such that every obj * cls is a distinct value
    of a grid in (0.002, 0.49) whose spacing is far above float32 rounding: with 31500
    random products some would tie."""
    obj = 0.5 + 0.5 * torch.rand(bs, n, 1, generator=gen, dtype=torch.float64)
    grid = torch.linspace(0.002, 0.49, bs * n * NC, dtype=torch.float64)
    conf = grid[torch.randperm(grid.numel(), generator=gen)].view(bs, n, NC)
    return torch.cat([obj, conf / obj], 2)


def predictions(gen, bs, n, clusters, scores):
    """(bs, n, 5 + NC), like a Detect output."""
    return torch.cat([clustered_boxes(gen, bs, n, clusters), scores(gen, bs, n)], 2).float()


def assert_no_score_ties(pred, conf_thres):
    """Ties in conf = obj * cls among candidates would make the order torch's (unstable) choice."""
    for x in pred:
        x = x[x[:, 4] > conf_thres]
        conf = (x[:, 5:] * x[:, 4:5]).flatten()
        conf = conf[conf > conf_thres]
        assert conf.unique().numel() == conf.numel(), "tied scores: change the seed"


def kept_without_max_nms_cut(pred, iou_thres):
    """How many boxes multi-label NMS keeps in image 0 when all candidates go in."""
    x = pred[0].clone()
    x[:, 5:] *= x[:, 4:5]
    i, j = x[:, 5:].nonzero(as_tuple=False).T
    boxes = xywh2xyxy(x[i, :4]) + j[:, None].float() * 7680
    return len(torchvision.ops.nms(boxes, x[i, 5 + j], iou_thres))


def main():
    gen = torch.Generator().manual_seed(0)
    inputs = {
        "pred": predictions(gen, 2, 3000, 40, uniform_scores),
        "pred_large": predictions(gen, 1, 10500, 400, distinct_scores),
    }
    tensors = dict(inputs)
    cases = []
    for name, input_name, options in CASES:
        options = {**DEFAULTS, **options}
        pred = inputs[input_name]
        assert_no_score_ties(pred, options["conf_thres"])
        out = non_max_suppression(pred.clone(), **options)
        for i, det in enumerate(out):
            tensors[f"{name}.{i}"] = det.contiguous()
        cases.append({"name": name, "input": input_name, **options, "kept": [len(d) for d in out]})
        print(name, [len(d) for d in out])
    uncut = kept_without_max_nms_cut(inputs["pred_large"], 0.6)
    assert uncut > len(tensors["max_nms.0"]), f"the max_nms cut changes nothing ({uncut} kept either way)"

    scale_cases = []
    for name, img1, img0, ratio_pad in SCALE_CASES:
        h, w = img1
        xy = torch.rand(50, 2, generator=gen) * torch.tensor([w * 1.2, h * 1.2]) - torch.tensor([w * 0.1, h * 0.1])
        wh = torch.rand(50, 2, generator=gen) * torch.tensor([w / 3, h / 3])
        boxes = torch.cat([xy, xy + wh], 1).float()
        tensors[f"scale.{name}.in"] = boxes
        tensors[f"scale.{name}.out"] = scale_boxes(img1, boxes.clone(), img0, ratio_pad)
        scale_cases.append({"name": name, "img1_shape": img1, "img0_shape": img0, "ratio_pad": ratio_pad})

    save_file(tensors, os.path.join(OUT, "nms.safetensors"))
    with open(os.path.join(OUT, "nms.json"), "w") as f:
        json.dump({"nms": cases, "scale_boxes": scale_cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden fixtures for AutoAnchor (`actyolo::train::autoanchor`), computed with ultralytics'
own code in `utils/autoanchor.py` from the `yolov5` pip package (7.0.x).

The data: 100 images of mixed sizes (mostly 256x256, as the synthetic shapes dataset, some
320x240 and 200x300), 1-6 labels each with shape-like normalised sizes, plus a few tiny
boxes (some under 2 and under 3 pixels, one zero-width) that exercise kmean_anchors' filter.
Fixed augment scales in [0.9, 1.1] stand in for check_anchors' `np.random.uniform` draw.

The expected numbers come from ultralytics' functions themselves: the nested `metric` of
`check_anchors` and `anchor_fitness` of `kmean_anchors` are rebuilt from their code objects
with their closure variables (`wh`, `thr`, `metric`) bound to this data, so nothing is
re-typed here except the one-line label gathering, which is checked against check_anchors'
own message (check_anchors runs once on a stand-in model, with np.random.uniform patched to
return the fixed scales). Values are float32 torch, as ultralytics computes them.

Writes tests/fixtures/autoanchor.json:
  - imgsz, images [{shape: [w, h], wh: [[w, h], ...] normalised}], scales
  - wh: check_anchors' label sizes in pixels (with the scales)
  - metrics: per anchor set and thr, check_anchors' metric (bpr, aat) on wh
  - fitness: per anchor set and thr, kmean_anchors' anchor_fitness on its filtered label
    sizes (gathered without the scales)
  - kmeans_labels / small_labels: labels kept by the >= 2 px filter / labels under 3 px
  - message: check_anchors' first log line for the default anchors (a good fit), without
    its colours
Inputs are rounded to 4 decimals and every float32 written as its shortest decimal.

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/python tools/gen_autoanchor_fixtures.py
"""

import json
import logging
import re
import os
import types
import warnings

os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from yolov5.utils import autoanchor  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "autoanchor.json")
IMGSZ = 256
# YOLOv5's default anchors (P3/8, P4/16, P5/32), pixels.
DEFAULT = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]]
STRIDES = [8.0, 16.0, 32.0]
ANCHOR_SETS = {
    "default": DEFAULT,
    "small": [[6, 7], [9, 14], [15, 11], [14, 26], [27, 20], [25, 45], [48, 38], [62, 80], [110, 100]],
    "wide": [[40, 8], [80, 12], [120, 20], [160, 18], [200, 25], [240, 30]],
}
THRESHOLDS = [4.0, 2.91]


def make_images(rng):
    """Shape-like boxes: a square-ish side in [0.08, 0.45] of the image, aspect jittered."""
    shapes = [[256, 256]] * 80 + [[320, 240]] * 12 + [[200, 300]] * 8
    images = []
    for w, h in shapes:
        n = int(rng.integers(1, 7))
        side = rng.uniform(0.08, 0.45, n)
        aspect = np.exp(rng.uniform(-0.5, 0.5, n))
        wh = np.stack([side * np.sqrt(aspect), side / np.sqrt(aspect)], 1)
        images.append({"shape": [w, h], "wh": np.round(wh, 4).astype(np.float32)})
    # Tiny boxes: under 2 px in both sides (dropped by kmean_anchors), under 3 px in one
    # side only (kept, but counted as small), and a zero width.
    tiny = np.array([[0.004, 0.005], [0.002, 0.006], [0.01, 0.009], [0.03, 0.008], [0.0, 0.05]], np.float32)
    images[3]["wh"] = np.concatenate([images[3]["wh"], tiny[:3]])
    images[90]["wh"] = np.concatenate([images[90]["wh"], tiny[3:]])
    return images


class Dataset:
    """What check_anchors and kmean_anchors read: shapes (n, 2) as (w, h) and labels (cls, xywh)."""

    def __init__(self, images):
        self.shapes = np.array([im["shape"] for im in images])
        self.labels = [np.concatenate([np.zeros((len(im["wh"]), 3), np.float32), im["wh"]], 1) for im in images]


class DetectStandIn(torch.nn.Module):
    def __init__(self, anchors_px):
        super().__init__()
        self.stride = torch.tensor(STRIDES)
        self.anchors = torch.tensor(anchors_px, dtype=torch.float32).view(3, 3, 2) / self.stride.view(-1, 1, 1)


class ModelStandIn(torch.nn.Module):
    def __init__(self, anchors_px):
        super().__init__()
        self.model = [DetectStandIn(anchors_px)]


def nested(function, name, **cells):
    """The nested function `name` of `function`, with its free variables bound to `cells`."""
    code = next(c for c in function.__code__.co_consts if isinstance(c, types.CodeType) and c.co_name == name)
    closure = tuple(types.CellType(cells[v]) for v in code.co_freevars)
    return types.FunctionType(code, function.__globals__, name, None, closure)


def check_anchors_message(dataset, scales):
    """check_anchors' first log line on the default anchors, with the scales it draws fixed."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    autoanchor.LOGGER.addHandler(handler)
    uniform = np.random.uniform
    np.random.uniform = lambda low, high, size: scales.reshape(size)
    try:
        autoanchor.check_anchors(dataset, ModelStandIn(DEFAULT), thr=4.0, imgsz=IMGSZ)
    finally:
        np.random.uniform = uniform
        autoanchor.LOGGER.removeHandler(handler)
    return re.sub(r"\x1b\[[0-9;]*m", "", records[0]).strip()  # without colorstr's colours


def short(values):
    """float32 values as the shortest decimals that read back as the same float32."""
    if values.ndim > 1:
        return [short(v) for v in values]
    return [float(np.format_float_positional(v, unique=True)) for v in values.astype(np.float32)]


def main():
    rng = np.random.default_rng(7)
    images = make_images(rng)
    dataset = Dataset(images)
    scales = np.round(rng.uniform(0.9, 1.1, size=(len(images), 1)), 4)

    # check_anchors' and kmean_anchors' label gathering, verbatim.
    shapes = IMGSZ * dataset.shapes / dataset.shapes.max(1, keepdims=True)
    wh = torch.tensor(np.concatenate([l[:, 3:5] * s for s, l in zip(shapes * scales, dataset.labels)])).float()
    wh0 = np.concatenate([l[:, 3:5] * s for s, l in zip(shapes, dataset.labels)])
    small = int((wh0 < 3.0).any(1).sum())
    wh_kmeans = torch.tensor(wh0[(wh0 >= 2.0).any(1)].astype(np.float32))

    check = autoanchor.check_anchors.__wrapped__
    metrics = []
    for thr in THRESHOLDS:
        metric = nested(check, "metric", wh=wh, thr=thr)
        for name, anchors in ANCHOR_SETS.items():
            bpr, aat = metric(torch.tensor(anchors, dtype=torch.float32))
            metrics.append({"anchors": name, "thr": thr, "bpr": float(bpr), "aat": float(aat)})

    kmeans_metric = nested(autoanchor.kmean_anchors, "metric")
    fitness = []
    for thr in THRESHOLDS:
        anchor_fitness = nested(autoanchor.kmean_anchors, "anchor_fitness", metric=kmeans_metric, thr=1 / thr, wh=wh_kmeans)
        for name, anchors in ANCHOR_SETS.items():
            fitness.append({"anchors": name, "thr": thr, "fitness": float(anchor_fitness(np.array(anchors, np.float64)))})

    message = check_anchors_message(dataset, scales)
    bpr_default = next(m for m in metrics if m["anchors"] == "default" and m["thr"] == 4.0)
    assert f"{bpr_default['aat']:.2f} anchors/target, {bpr_default['bpr']:.3f} Best" in message, message

    fixture = {
        "imgsz": IMGSZ,
        "strides": STRIDES,
        "images": [{"shape": im["shape"], "wh": short(im["wh"])} for im in images],
        "scales": scales[:, 0].tolist(),
        "wh": short(wh.numpy()),
        "anchor_sets": ANCHOR_SETS,
        "metrics": metrics,
        "fitness": fitness,
        "kmeans_labels": len(wh_kmeans),
        "small_labels": small,
        "message": message,
    }
    with open(OUT, "w") as f:
        f.write("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in fixture.items()) + "\n}\n")
    print(f"{len(wh)} labels, {small} small, {len(wh_kmeans)} kept for k-means; {message}")
    for m in metrics:
        print(m)
    for m in fitness:
        print(m)


if __name__ == "__main__":
    main()

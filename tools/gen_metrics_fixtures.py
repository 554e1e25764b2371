#!/usr/bin/env python3
"""Golden fixtures for the detection metrics (`actyolo::eval::metrics` and
`actyolo::eval::coco`): the same predictions scored in both conventions.

The data is what a weak model gives on 20 images with 3 classes: ground-truth boxes
jittered by noise (some hardly, some badly, some with the wrong class), duplicates, missed
objects, random false positives with random scores, an image without ground truth, an image
without predictions, and one image with 105 confident false positives of one class whose
true positives score lower (COCO keeps only the best 100 per image and category).

- ultralytics' convention (yolov5 7.0.x): val.py's `process_batch` per image (predictions
  sorted best first, as NMS returns them) and utils/metrics.py's `ap_per_class`, in the
  float32 of val.py; the boxes are used as they are (no `scale_boxes`).
- COCO's convention: pycocotools' COCOeval (bbox) on the JSON files below; stats[0]
  (AP@[.5:.95]) and stats[1] (AP@.5).

Writes into tests/fixtures/metrics/:
  - inputs.safetensors  float32 xyxy pixel boxes: `gt_boxes`, `gt_class`, `gt_image`,
                        `pred_boxes`, `pred_conf`, `pred_class`, `pred_image` (image = index)
  - gt.json, predictions.json  the COCO JSON made from them, in the layout
                        `actyolo::eval::coco` writes (image id = index, category id = class,
                        annotation ids from 1, xywh in float64 from the float32 corners)
  - expected.json       images (width, height, file name), class names, the IoU thresholds
                        (torch float32), ultralytics' per-class and overall numbers, and
                        pycocotools' stats[0] and stats[1]

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/python tools/gen_metrics_fixtures.py
"""

import contextlib
import io
import json
import os
import warnings

os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

np.trapz = np.trapezoid  # numpy 2.4 dropped trapz, which yolov5's metrics call

import torch  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from yolov5.utils.metrics import ap_per_class  # noqa: E402
from yolov5.val import process_batch  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "metrics")
NAMES = ["circle", "rectangle", "triangle"]
N_IMAGES = 20
SIZES = [(640, 480), (320, 320), (512, 384), (416, 640)]  # (width, height)
NO_GT_IMAGE, NO_PRED_IMAGE, CROWDED_IMAGE = 3, 7, 11


def clip(box, w, h):
    return [min(max(box[0], 0), w), min(max(box[1], 0), h), min(max(box[2], 0), w), min(max(box[3], 0), h)]


def random_box(rng, w, h):
    bw, bh = rng.uniform(0.05, 0.5) * w, rng.uniform(0.05, 0.5) * h
    x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return [x, y, x + bw, y + bh]


def jitter(rng, box, w, h, noise):
    bw, bh = box[2] - box[0], box[3] - box[1]
    d = rng.normal(0, noise, 4) * [bw, bh, bw, bh]
    out = clip([box[0] + d[0], box[1] + d[1], box[2] + d[2], box[3] + d[3]], w, h)
    if out[2] - out[0] < 1 or out[3] - out[1] < 1:
        return box
    return out


def make_data(rng):
    images, gts, preds = [], [], []
    for i in range(N_IMAGES):
        w, h = SIZES[i % len(SIZES)]
        images.append({"id": i, "file_name": f"im{i:02d}.jpg", "width": w, "height": h})
        n_gt = 0 if i == NO_GT_IMAGE else int(rng.integers(1, 7))
        crowded = i == CROWDED_IMAGE
        for _ in range(n_gt):
            cls = 1 if crowded else int(rng.integers(0, 3))
            box = random_box(rng, w, h)
            gts.append((i, cls, box))
            if i == NO_PRED_IMAGE or rng.random() < 0.2:
                continue  # missed
            wrong = rng.random() < 0.1
            pcls = int((cls + rng.integers(1, 3)) % 3) if wrong else cls
            noise = [0.02, 0.08, 0.2][int(rng.integers(0, 3))]
            # On the crowded image the true positives rank below 100 false positives.
            score = rng.uniform(0.01, 0.25) if crowded else rng.uniform(0.2, 1.0)
            preds.append((i, pcls, jitter(rng, box, w, h, noise), score))
            if rng.random() < 0.15:  # a duplicate
                preds.append((i, pcls, jitter(rng, box, w, h, 0.1), rng.uniform(0.05, 0.9)))
        if i == NO_PRED_IMAGE:
            continue
        n_fp = 105 if crowded else int(rng.integers(0, 8))
        for _ in range(n_fp):
            cls = 1 if crowded else int(rng.integers(0, 3))
            preds.append((i, cls, random_box(rng, w, h), rng.uniform(0.3, 0.95) if crowded else rng.uniform(0.001, 0.6)))
    return images, gts, preds


def to_f32(gts, preds):
    """The data as float32 (what val.py holds), scores made unique (ties are sorted
    differently by numpy's unstable argsort)."""
    gts = [(i, c, [float(np.float32(v)) for v in b]) for i, c, b in gts]
    seen, out = set(), []
    for i, c, b, s in preds:
        s = np.float32(s)
        while float(s) in seen:
            s = np.nextafter(s, np.float32(1))
        seen.add(float(s))
        out.append((i, c, [float(np.float32(v)) for v in b], float(s)))
    return gts, out


def ultralytics_numbers(gts, preds):
    iouv = torch.linspace(0.5, 0.95, 10)
    stats = []
    for i in range(N_IMAGES):
        labels = torch.tensor([[c] + b for im, c, b in gts if im == i], dtype=torch.float32).reshape(-1, 5)
        mine = sorted([p for p in preds if p[0] == i], key=lambda p: -p[3])
        det = torch.tensor([b + [s, c] for _, c, b, s in mine], dtype=torch.float32).reshape(-1, 6)
        correct = torch.zeros(len(det), 10, dtype=torch.bool)
        if len(det) == 0:
            if len(labels):
                stats.append((correct, torch.zeros(0), torch.zeros(0), labels[:, 0]))
            continue
        if len(labels):
            correct = process_batch(det, labels, iouv)
        stats.append((correct, det[:, 4], det[:, 5], labels[:, 0]))
    stats = [torch.cat(x, 0).numpy() for x in zip(*stats)]
    assert stats[0].any()
    tp, fp, p, r, f1, ap, ap_class = ap_per_class(*stats, names=dict(enumerate(NAMES)))
    nt = np.bincount(stats[3].astype(int), minlength=3)
    classes = [{"class": int(c), "labels": int(nt[c]), "tp": float(tp[k]), "fp": float(fp[k]), "p": float(p[k]),
                "r": float(r[k]), "f1": float(f1[k]), "ap": [float(x) for x in ap[k]]}
               for k, c in enumerate(ap_class)]
    ap50, apm = ap[:, 0], ap.mean(1)
    return iouv.tolist(), {"classes": classes, "mp": float(p.mean()), "mr": float(r.mean()),
                           "map50": float(ap50.mean()), "map": float(apm.mean())}


def coco_json(images, gts, preds):
    def xywh(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]]

    annotations = [{"id": k + 1, "image_id": i, "category_id": c, "bbox": xywh(b),
                    "area": xywh(b)[2] * xywh(b)[3], "iscrowd": 0} for k, (i, c, b) in enumerate(gts)]
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": k, "name": n} for k, n in enumerate(NAMES)]}
    results = [{"image_id": i, "category_id": c, "bbox": xywh(b), "score": s} for i, c, b, s in preds]
    return gt, results


def coco_numbers(gt_path, pred_path):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_path)
        coco_dt = coco_gt.loadRes(pred_path)
        e = COCOeval(coco_gt, coco_dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return {"map": float(e.stats[0]), "map50": float(e.stats[1])}


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    images, gts, preds = make_data(rng)
    gts, preds = to_f32(gts, preds)

    gt, results = coco_json(images, gts, preds)
    gt_path, pred_path = os.path.join(OUT, "gt.json"), os.path.join(OUT, "predictions.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(pred_path, "w") as f:
        json.dump(results, f)

    iouv, yolo = ultralytics_numbers(gts, preds)
    coco = coco_numbers(gt_path, pred_path)
    expected = {"images": images, "names": NAMES, "iou_thresholds": iouv, "ultralytics": yolo, "coco": coco}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)

    save_file({
        "gt_boxes": np.array([b for _, _, b in gts], dtype=np.float32),
        "gt_class": np.array([c for _, c, _ in gts], dtype=np.int64),
        "gt_image": np.array([i for i, _, _ in gts], dtype=np.int64),
        "pred_boxes": np.array([b for _, _, b, _ in preds], dtype=np.float32),
        "pred_conf": np.array([s for _, _, _, s in preds], dtype=np.float32),
        "pred_class": np.array([c for _, c, _, _ in preds], dtype=np.int64),
        "pred_image": np.array([i for i, _, _, _ in preds], dtype=np.int64),
    }, os.path.join(OUT, "inputs.safetensors"))
    print(f"{len(gts)} labels, {len(preds)} predictions on {N_IMAGES} images")
    print(f"ultralytics: P {yolo['mp']:.5f} R {yolo['mr']:.5f} mAP50 {yolo['map50']:.5f} mAP50-95 {yolo['map']:.5f}")
    print(f"pycocotools: AP@.5 {coco['map50']:.5f} AP@[.5:.95] {coco['map']:.5f}")


if __name__ == "__main__":
    main()

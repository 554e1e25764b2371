#!/usr/bin/env python3
"""Golden fixtures for letterbox, made with the ultralytics `yolov5` pip package (7.0.x)
and its OpenCV (cv2.resize with INTER_LINEAR): tests/fixtures/letterbox.safetensors and
tests/fixtures/letterbox.json.

Each case letterboxes a small random RGB image (smooth gradients plus noise and a few
hard edges, so that interpolation shows) and stores the source as `<case>.src` and the
result as `<case>.out` (uint8, H x W x 3); letterbox.json holds each case's arguments and
the ratio and padding letterbox returned. The cases cover shrinking, enlarging, an exact
halving (where OpenCV switches to INTER_AREA), no resize (scaleup=False), auto (stride
multiple) and fixed shapes, and odd padding.

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/pip install safetensors
    /tmp/ref/bin/python tools/gen_letterbox_fixtures.py
"""

import json
import os
import warnings

os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
warnings.filterwarnings("ignore")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from yolov5.utils.augmentations import letterbox  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
# (name, source (h, w), new_shape, stride, auto, scaleup)
CASES = [
    ("shrink_auto", (45, 70), 64, 32, True, True),
    ("enlarge_fixed", (100, 37), 128, 32, False, True),
    ("no_scaleup", (30, 50), 96, 32, False, False),
    ("halve", (64, 48), 32, 32, True, True),
    ("enlarge_auto", (23, 31), 160, 32, True, True),
    ("stride64", (81, 97), 128, 64, True, True),
    ("odd_pad", (50, 75), 64, 32, False, True),
    ("rectangular_target", (60, 90), (48, 96), 32, False, True),
]


def source_image(rng, h, w):
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 127 + 120 * np.sin((x + y) / 3)], 2)
    im = base + rng.normal(0, 25, (h, w, 3))
    im[h // 3: h // 2, w // 4: w // 2] = (250, 20, 60)  # a hard-edged block
    return np.clip(im, 0, 255).astype(np.uint8)


def main():
    print("OpenCV", cv2.__version__)
    rng = np.random.default_rng(0)
    tensors, cases = {}, []
    for name, (h, w), new_shape, stride, auto, scaleup in CASES:
        src = source_image(rng, h, w)
        out, ratio, (dw, dh) = letterbox(src, new_shape, auto=auto, scaleup=scaleup, stride=stride)
        tensors[f"{name}.src"] = torch.from_numpy(src)
        tensors[f"{name}.out"] = torch.from_numpy(np.ascontiguousarray(out))
        shape = [new_shape, new_shape] if isinstance(new_shape, int) else list(new_shape)
        cases.append({"name": name, "new_shape": shape, "stride": stride, "auto": auto, "scaleup": scaleup,
                      "ratio": ratio[0], "pad": [float(dw), float(dh)], "out_shape": list(out.shape[:2])})
        print(name, src.shape[:2], "->", out.shape[:2], ratio, (dw, dh))
    save_file(tensors, os.path.join(OUT, "letterbox.safetensors"))
    with open(os.path.join(OUT, "letterbox.json"), "w") as f:
        json.dump({"opencv": cv2.__version__, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

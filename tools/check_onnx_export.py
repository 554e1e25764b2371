#!/usr/bin/env python3
"""Cross-check of `actyolo export` with onnxruntime (a development tool; tests and CI do
not need Python).

For each yolov5 `.pt` given, it exports the checkpoint twice, with yolov5's own export.py
(`include=('onnx',)`, opset 17) and with `actyolo export`, runs both files in onnxruntime
on the same inputs (seeded random images and, with --images, real images letterboxed as
detect.py does), and prints the largest differences of the boxes (x, y, w, h in input
pixels) and of the scores (objectness, class scores), plus the metadata of both files.
It exits non-zero when boxes differ by more than 1e-3 pixels or scores by more than 1e-4.

Environment: see the reference environment's recipe (torch, yolov5 7.0.x, onnx,
onnxruntime, onnxscript).

Usage:
  WANDB_MODE=disabled COMET_MODE=DISABLED CLEARML_OFF=1 \
  /tmp/ref/bin/python tools/check_onnx_export.py --imgsz 256 \
      --images tests/fixtures/val_rect/images/val \
      tests/fixtures/val_rect/model.pt tests/fixtures/models/relu.pt
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

# yolov5's checkpoints pickle the model; torch >= 2.6 refuses them by default.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

BOX_TOLERANCE = 1e-3
SCORE_TOLERANCE = 1e-4


def yolov5_export(pt: Path, imgsz: int, folder: Path) -> Path:
    from yolov5 import export
    from yolov5.models import common

    common.Conv.default_act = __import__("torch").nn.SiLU()  # the YAML's activation leaks
    copy = folder / f"yolov5-{pt.name}"
    shutil.copy(pt, copy)
    export.run(weights=str(copy), imgsz=(imgsz, imgsz), include=("onnx",), opset=17, device="cpu")
    return copy.with_suffix(".onnx")


def actyolo_export(pt: Path, imgsz: int, folder: Path, actyolo: str) -> Path:
    out = folder / f"actyolo-{pt.stem}.onnx"
    subprocess.run(
        [actyolo, "export", "--weights", str(pt), "--imgsz", str(imgsz), "--out", str(out)],
        check=True,
    )
    return out


def inputs(imgsz: int, images: Path | None) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    batch = [rng.random((1, 3, imgsz, imgsz), dtype=np.float32) for _ in range(3)]
    if images is not None:
        import cv2
        from yolov5.utils.augmentations import letterbox

        for path in sorted(images.iterdir())[:16]:
            img = cv2.imread(str(path))
            if img is None:
                continue
            boxed = letterbox(img, (imgsz, imgsz), auto=False)[0]
            x = boxed[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
            batch.append(np.ascontiguousarray(x))
    return batch


def pytorch_model(pt: Path):
    """The checkpoint fused in PyTorch, as export.py fuses it before tracing."""
    from yolov5.models.experimental import attempt_load

    return attempt_load(str(pt), device="cpu", inplace=True, fuse=True).eval()


def metadata(path: Path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pt", nargs="+", type=Path)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--images", type=Path)
    parser.add_argument("--actyolo", default="target/release/actyolo")
    args = parser.parse_args()
    worst_ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for pt in args.pt:
            theirs = yolov5_export(pt, args.imgsz, folder)
            ours = actyolo_export(pt, args.imgsz, folder, args.actyolo)
            s_theirs = ort.InferenceSession(str(theirs), providers=["CPUExecutionProvider"])
            s_ours = ort.InferenceSession(str(ours), providers=["CPUExecutionProvider"])
            torch_model = pytorch_model(pt)
            box, score, relative, floor = 0.0, 0.0, 0.0, 0.0
            xs = inputs(args.imgsz, args.images)
            for x in xs:
                a = s_theirs.run(None, {s_theirs.get_inputs()[0].name: x})[0]
                b = s_ours.run(None, {s_ours.get_inputs()[0].name: x})[0]
                assert a.shape == b.shape, (a.shape, b.shape)
                box = max(box, float(np.abs(a[..., :4] - b[..., :4]).max()))
                score = max(score, float(np.abs(a[..., 4:] - b[..., 4:]).max()))
                relative = max(
                    relative,
                    float((np.abs(a[..., :4] - b[..., :4]) / np.maximum(np.abs(a[..., :4]), 1)).max()),
                )
                with __import__("torch").no_grad():
                    t = torch_model(__import__("torch").from_numpy(x))[0].numpy()
                # yolov5's own ONNX against its PyTorch model: the noise floor of float32.
                floor = max(floor, float(np.abs(a[..., :4] - t[..., :4]).max()))
            ok = box <= BOX_TOLERANCE and score <= SCORE_TOLERANCE
            worst_ok &= ok
            print(
                f"{pt}: {len(xs)} inputs of {args.imgsz}x{args.imgsz}, output {a.shape}: "
                f"max |boxes| diff {box:.3g} px (relative {relative:.2g}), max |scores| diff "
                f"{score:.3g} ({'ok' if ok else 'OVER the tolerance'}); yolov5's ONNX vs its "
                f"PyTorch model: max |boxes| diff {floor:.3g} px"
            )
            print(f"  yolov5 metadata {metadata(theirs)}")
            print(f"  actyolo metadata {metadata(ours)}")
    return 0 if worst_ok else 1


if __name__ == "__main__":
    sys.exit(main())

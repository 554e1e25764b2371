#!/usr/bin/env python3
"""Golden fixture for `actyolo val`'s rectangular batching: a trained yolov5n, a small
validation set of images with varied aspect ratios, and what ultralytics' yolov5 7.0
`val.py` prints for them.

val.py (task 'val') sorts the images by aspect ratio and letterboxes each batch to
`ceil(ratio * imgsz / stride + 0.5) * stride` (pad 0.5): a batch of landscape images is
evaluated at 256x288 here, a batch holding a square image at 288x288. Reproducing its
numbers therefore needs this batching, its resize (long side to imgsz; OpenCV INTER_LINEAR
when enlarging) and its metrics; a model that really detects makes any slip visible.

Steps:
  1. `actyolo data synth` (2000 train images at 256 px, seed 0) and `actyolo train` (yolov5n,
     Adam, 10 epochs, batch 16, imgsz 256, seed 0): about 17 minutes (100 s an epoch) on the
     project's 2-core machine; the rest of this script takes under a minute. `--trained` skips this with
     a best.safetensors from an earlier run (the script prints where it left it).
  2. The trained weights go into yolov5's own DetectionModel (every state_dict key checked),
     which is saved in fp16 as train.py's stripped checkpoint: model.pt (3.7 MB).
  3. 44 unseen images (`actyolo data synth` seed 1) are cropped to 256 x h landscapes, w x 256
     portraits and squares, each crop placed to cut as few objects as possible; labels are
     clipped to the crop, and those of objects less than half visible dropped. All but two
     are then halved (OpenCV INTER_AREA) so the fixture stays small; val.py enlarges them
     back. The 32 landscapes fill val.py's first batch of 32, the squares and portraits the
     second.
  4. yolov5.val.run on them: as val.py runs (rect, pad 0.5), and, for information, square
     (pad 0, rect off: what its task 'speed' does, with the same thresholds). It stops if
     val.py's NMS hits its time limit, which would make the numbers depend on the machine.

Writes into tests/fixtures/val_rect/:
  - model.pt                    the checkpoint ({'model': fp16 DetectionModel, 'ema': None, ...})
  - data.yaml                   `path: .` (the yaml's folder), train and val both images/val
  - images/val/NNNNNN.png, labels/val/NNNNNN.txt   the validation set (lossless PNG)
  - expected.json               val.py's 'all' row and per-class rows (full precision), its
                                arguments, the batch shapes and every image's size, resized
                                and letterboxed shape and padding, for rect and square; and
                                the versions and commands that made it

Rerun (from the repository root, after `cargo build --release`), in the reference
environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/pip install safetensors
    /tmp/ref/bin/python tools/gen_val_rect_fixtures.py [--actyolo target/release/actyolo]
The training is deterministic on a given machine, but another machine (or another build of
actyolo) trains other weights, and so other expected numbers: regenerate everything together.
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import warnings

CONFIG_DIR = os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
for key, value in (("WANDB_MODE", "disabled"), ("COMET_MODE", "DISABLED"), ("CLEARML_OFF", "1")):
    os.environ.setdefault(key, value)
warnings.filterwarnings("ignore")

import cv2  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

np.trapz = np.trapezoid  # numpy 2.4 dropped trapz, which yolov5's metrics call

import torch  # noqa: E402
import yaml  # noqa: E402
import yolov5  # noqa: E402
import yolov5.val as yolo_val  # noqa: E402
from safetensors import safe_open  # noqa: E402
from yolov5.models.experimental import attempt_load  # noqa: E402
from yolov5.models.yolo import DetectionModel  # noqa: E402
from yolov5.utils.general import LOGGER  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "val_rect")
NAMES = ["circle", "rectangle", "triangle"]
IMGSZ, BATCH, CONF, IOU, MAX_DET = 256, 32, 0.001, 0.6, 300
SYNTH_TRAIN = ["--n-train", "2000", "--n-val", "48", "--imgsz", "256", "--seed", "0"]
TRAIN = ["--cfg", "yolov5n.yaml", "--imgsz", "256", "--batch", "16", "--epochs", "10",
         "--optimizer", "Adam", "--workers", "2", "--seed", "0"]
SYNTH_VAL = ["--n-train", "0", "--n-val", "44", "--imgsz", "256", "--seed", "1"]
SRC = 256  # side of the synthetic source images
# (width, height) of the crops: 32 landscapes, 8 portraits, 4 squares; FULL keeps its size
LANDSCAPES = [(SRC, h) for h in (112, 128, 144, 160, 176, 192, 208, 224)] * 4
PORTRAITS = [(w, SRC) for w in (128, 160, 192, 224)] * 2
SQUARES = [(SRC, SRC)] * 4
FULL = {0, 33}  # indices into LANDSCAPES + PORTRAITS + SQUARES: a 256x112 and a 160x256
MIN_VISIBLE = 0.5  # keep an object's (clipped) box when at least this part of it is in the crop
CROP_STEP = 8


def offline_font():
    """val.py's check_dataset downloads Arial.ttf unless the config folder holds one: any
    TTF does (nothing is plotted here)."""
    font = os.path.join(CONFIG_DIR, "Arial.ttf")
    if not os.path.exists(font):
        os.makedirs(CONFIG_DIR, exist_ok=True)
        shutil.copy(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), font)


def run_actyolo(actyolo, *args):
    print("+", actyolo, *args, flush=True)
    subprocess.run([actyolo, *args], check=True)


def train(actyolo, work):
    data = os.path.join(work, "train_data")
    run_actyolo(actyolo, "data", "synth", "--out", data, *SYNTH_TRAIN)
    start = time.time()
    run_actyolo(actyolo, "train", "--data", os.path.join(data, "data.yaml"), *TRAIN,
                "--project", work, "--name", "train")
    print(f"trained in {time.time() - start:.0f} s")
    return os.path.join(work, "train", "weights", "best.safetensors")


def to_checkpoint(safetensors_path, pt_path):
    """The weights in yolov5's DetectionModel, saved as train.py's strip_optimizer leaves
    its checkpoint: fp16 model, no EMA or optimizer, class names as check_dataset gives them."""
    with safe_open(safetensors_path, "pt") as f:
        meta = f.metadata()
        weights = {k: f.get_tensor(k) for k in f.keys()}
    cfg = yaml.safe_load(meta["yaml"])
    assert cfg["nc"] == len(NAMES) and json.loads(meta["names"]) == NAMES, meta["names"]
    model = DetectionModel(cfg, ch=3)
    # actyolo does not save BatchNorm's num_batches_tracked (which evaluation never reads);
    # load_state_dict leaves it at 0 when absent, and is strict about everything else
    wanted = {k for k in model.state_dict() if not k.endswith(".num_batches_tracked")}
    assert set(weights) == wanted, sorted(set(weights) ^ wanted)
    model.load_state_dict(weights)
    model.nc, model.names = len(NAMES), dict(enumerate(NAMES))
    model.half()
    for p in model.parameters():
        p.requires_grad = False
    ckpt = {"epoch": -1, "best_fitness": None, "model": model, "ema": None, "updates": None,
            "optimizer": None, "opt": None, "git": None, "date": None}
    torch.save(ckpt, pt_path)
    loaded = attempt_load(pt_path, device="cpu")
    assert loaded.names == model.names and loaded.nc == len(NAMES), (loaded.names, loaded.nc)


def read_labels(path):
    with open(path) as f:
        return [[float(v) for v in line.split()] for line in f if line.strip()]


def visible(box, x0, y0, w, h):
    """The part of a pixel xyxy box inside the crop, and which fraction of the box it is."""
    cut = [max(box[0], x0), max(box[1], y0), min(box[2], x0 + w), min(box[3], y0 + h)]
    area = max(cut[2] - cut[0], 0) * max(cut[3] - cut[1], 0)
    return cut, area / ((box[2] - box[0]) * (box[3] - box[1]))


def place_crop(rng, boxes, w, h):
    """The crop offset that cuts the fewest objects, then keeps the most whole; ties at random."""
    scored = []
    for y0 in range(0, SRC - h + 1, CROP_STEP):
        for x0 in range(0, SRC - w + 1, CROP_STEP):
            fractions = [visible(b, x0, y0, w, h)[1] for b in boxes]
            cut = sum(0 < f < 1 for f in fractions)
            whole = sum(f == 1 for f in fractions)
            scored.append(((cut, -whole), x0, y0))
    best = min(s[0] for s in scored)
    ties = [(x0, y0) for s, x0, y0 in scored if s == best]
    return ties[int(rng.integers(len(ties)))]


def make_val_set(actyolo, work):
    src = os.path.join(work, "val_source")
    run_actyolo(actyolo, "data", "synth", "--out", src, *SYNTH_VAL)
    rng = np.random.default_rng(0)
    crops = LANDSCAPES + PORTRAITS + SQUARES
    order = rng.permutation(len(crops))
    for sub in ("images", "labels"):
        shutil.rmtree(os.path.join(OUT, sub), ignore_errors=True)
        os.makedirs(os.path.join(OUT, sub, "val"))
    counts = []
    for k, spec in enumerate(order):
        w, h = crops[spec]
        stem = f"{k:06d}"
        image = cv2.imread(os.path.join(src, "images", "val", f"{stem}.png"))
        assert image.shape[:2] == (SRC, SRC)
        rows = read_labels(os.path.join(src, "labels", "val", f"{stem}.txt"))
        boxes = [[(cx - bw / 2) * SRC, (cy - bh / 2) * SRC, (cx + bw / 2) * SRC, (cy + bh / 2) * SRC]
                 for _, cx, cy, bw, bh in rows]
        x0, y0 = place_crop(rng, boxes, w, h)
        lines = []
        for (cls, *_), box in zip(rows, boxes):
            cut, fraction = visible(box, x0, y0, w, h)
            if fraction >= MIN_VISIBLE:
                cx, cy = ((cut[0] + cut[2]) / 2 - x0) / w, ((cut[1] + cut[3]) / 2 - y0) / h
                lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {(cut[2] - cut[0]) / w:.6f} {(cut[3] - cut[1]) / h:.6f}\n")
        image = image[y0:y0 + h, x0:x0 + w]
        if spec not in FULL:
            image = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(os.path.join(OUT, "images", "val", f"{stem}.png"), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        with open(os.path.join(OUT, "labels", "val", f"{stem}.txt"), "w") as f:
            f.writelines(lines)
        counts.append(len(lines))
    with open(os.path.join(OUT, "data.yaml"), "w") as f:
        f.write("# Made by tools/gen_val_rect_fixtures.py; `path` is relative to this file's folder\n"
                f"path: .\ntrain: images/val\nval: images/val\nnc: {len(NAMES)}\n"
                f"names: [{', '.join(NAMES)}]\n")
    print(f"{len(order)} images, {sum(counts)} labels")


def evaluate(work, rect):
    """yolov5.val.run on a copy of the fixture (val.py writes a labels cache beside the
    labels), capturing its dataloader and ap_per_class's per-class numbers."""
    name = "rect" if rect else "square"
    data_dir = os.path.join(work, f"val_{name}")
    shutil.copytree(os.path.join(OUT, "images"), os.path.join(data_dir, "images"))
    shutil.copytree(os.path.join(OUT, "labels"), os.path.join(data_dir, "labels"))
    data = os.path.join(data_dir, "data.yaml")
    with open(data, "w") as f:
        yaml.safe_dump({"path": data_dir, "train": "images/val", "val": "images/val",
                        "nc": len(NAMES), "names": NAMES}, f)

    captured = {}
    create_dataloader, ap_per_class = yolo_val.create_dataloader, yolo_val.ap_per_class

    def capture_loader(*args, **kwargs):
        captured["loader"] = create_dataloader(*args, **kwargs)
        return captured["loader"]

    def capture_ap(tp, conf, pred_cls, target_cls, **kwargs):
        captured["nt"] = np.bincount(target_cls.astype(int), minlength=len(NAMES))
        captured["ap"] = ap_per_class(tp, conf, pred_cls, target_cls, **kwargs)
        return captured["ap"]

    # val.py's NMS gives up on the rest of a batch after 0.5 + 0.05 * batch seconds (with a
    # warning): the numbers would then depend on the machine's speed
    warnings_seen = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings_seen.append(record.getMessage())
    LOGGER.addHandler(handler)
    yolo_val.create_dataloader, yolo_val.ap_per_class = capture_loader, capture_ap
    try:
        (mp, mr, map50, map_, *_), *_ = yolo_val.run(
            data=data, weights=os.path.join(OUT, "model.pt"), imgsz=IMGSZ, batch_size=BATCH,
            conf_thres=CONF, iou_thres=IOU, max_det=MAX_DET, task="val" if rect else "speed",
            device="cpu", workers=0, half=False, plots=False, project=work, name=name)
    finally:
        yolo_val.create_dataloader, yolo_val.ap_per_class = create_dataloader, ap_per_class
        LOGGER.removeHandler(handler)
    assert not any("NMS time limit" in m for m in warnings_seen), warnings_seen

    dataset = captured["loader"][0].dataset
    nt = captured["nt"]
    _, _, p, r, _, ap, ap_class = captured["ap"]
    images = []
    for i in range(len(dataset)):
        im, _, path, (_, (_, pad)) = dataset[i]
        _, size, resized = dataset.load_image(i)
        images.append({"file": os.path.basename(path), "batch": int(dataset.batch[i]), "size_hw": list(size),
                       "resized_hw": list(resized), "letterboxed_hw": list(im.shape[1:]),
                       "pad_wh": [float(v) for v in pad]})
    result = {
        "rect": rect, "pad": 0.5 if rect else 0.0,
        "all": {"images": len(dataset), "instances": int(nt.sum()), "p": float(mp), "r": float(mr),
                "map50": float(map50), "map50_95": float(map_)},
        "classes": [{"class": NAMES[c], "index": int(c), "images": len(dataset), "instances": int(nt[c]),
                     "p": float(p[k]), "r": float(r[k]), "map50": float(ap[k, 0]),
                     "map50_95": float(ap[k].mean())} for k, c in enumerate(ap_class)],
        "images_in_val_order": images,
    }
    if rect:
        result["batch_shapes_hw"] = dataset.batch_shapes.tolist()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actyolo", default="target/release/actyolo", help="the actyolo binary")
    parser.add_argument("--trained", help="best.safetensors of an earlier run of step 1 (skips training)")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    offline_font()
    work = tempfile.mkdtemp(prefix="val_rect_")
    print(f"working in {work}")

    weights = args.trained or train(args.actyolo, work)
    to_checkpoint(weights, os.path.join(OUT, "model.pt"))
    make_val_set(args.actyolo, work)
    rect, square = evaluate(work, rect=True), evaluate(work, rect=False)

    args_text = (f"data=tests/fixtures/val_rect/data.yaml, weights=tests/fixtures/val_rect/model.pt, "
                 f"imgsz={IMGSZ}, batch_size={BATCH}, conf_thres={CONF}, iou_thres={IOU}, max_det={MAX_DET}, "
                 "device='cpu', workers=0, half=False, plots=False")
    expected = {
        "names": NAMES, "imgsz": IMGSZ, "batch": BATCH, "conf_thres": CONF, "iou_thres": IOU, "max_det": MAX_DET,
        "val_py": rect,
        "square_for_information": square,
        "provenance": {
            "tool": "tools/gen_val_rect_fixtures.py",
            "yolov5": yolov5.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "opencv": cv2.__version__,
            "val_py": f"yolov5.val.run({args_text}, task='val')  # as `val.py --task val`: rect, pad 0.5",
            "square": f"yolov5.val.run({args_text}, task='speed')  # rect off, pad 0; thresholds as given",
            "cli": "actyolo val --weights tests/fixtures/val_rect/model.pt --data tests/fixtures/val_rect/data.yaml "
                   f"--imgsz {IMGSZ} --batch {BATCH}",
            "train_data": "actyolo data synth " + " ".join(SYNTH_TRAIN),
            "train": "actyolo train --data <train data>/data.yaml " + " ".join(TRAIN) + "  (best.safetensors)",
            "val_source": "actyolo data synth " + " ".join(SYNTH_VAL) + "  (cropped, most halved)",
        },
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    for res in (rect, square):
        a = res["all"]
        print(f"{'rect' if res['rect'] else 'square':>6}: P {a['p']:.5f} R {a['r']:.5f} "
              f"mAP50 {a['map50']:.5f} mAP50-95 {a['map50_95']:.5f}")
    print("batch shapes (h, w):", rect["batch_shapes_hw"])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Small `.pt` fixtures for the checkpoint reader (src/model/pt.rs) in the layouts other
than train.py's {'model', 'ema', ...} dict, which tools/gen_model_fixtures.py covers.

Writes into tests/fixtures/models/pt_variants/:
  - whole_model.pt     torch.save(model) of a tiny fp16 YOLOv5 DetectionModel (one Conv and
                       a one-level Detect), with its class names as an {index: name} dict
                       and a non-persistent buffer (which is not part of the state_dict)
  - state_dict.pt      torch.save(model.state_dict()) of a tiny fp16 Conv2d + BatchNorm2d:
                       an OrderedDict with `_metadata` and `num_batches_tracked` entries
  - views.pt           {'epoch': 7, 'state_dict': {...}} whose float32 tensors are views
                       into larger storages: transposed, offset, expanded (stride 0)
and next to each, <name>.safetensors: the expected tensors (contiguous, float32, without
num_batches_tracked); for whole_model also whole_model.yaml, the model yaml.

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    /tmp/ref/bin/python tools/gen_pt_variants.py
"""

import os
import warnings

os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from yolov5.models.yolo import DetectionModel  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "models", "pt_variants")

TINY_CFG = {
    "nc": 3,
    "depth_multiple": 0.33,
    "width_multiple": 0.0625,
    "anchors": [[10, 13, 16, 30, 33, 23]],
    "backbone": [[-1, 1, "Conv", [64, 3, 2]]],
    "head": [[[0], 1, "Detect", ["nc", "anchors"]]],
}


def expected(state):
    return {k: v.float().contiguous() for k, v in state.items() if "num_batches_tracked" not in k}


def save(name, obj, tensors):
    torch.save(obj, os.path.join(OUT, f"{name}.pt"))
    save_file(tensors, os.path.join(OUT, f"{name}.safetensors"))


def whole_model():
    model = DetectionModel(TINY_CFG, ch=3).half()
    model.names = {0: "circle", 1: "rectangle", 2: "triangle"}
    model.nc = 3
    model.model[0].register_buffer("scratch", torch.ones(2), persistent=False)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    save("whole_model", model, expected(model.state_dict()))
    with open(os.path.join(OUT, "whole_model.yaml"), "w") as f:
        yaml.safe_dump(model.yaml, f, sort_keys=False)


def state_dict():
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).half()
    with torch.no_grad():
        seq[1].running_mean.copy_(torch.randn(4))
    state = seq.state_dict()
    save("state_dict", state, expected(state))


def views():
    base = torch.randn(4, 6)
    tensors = {
        "transposed": base.t(),
        "offset": base.view(-1)[5:11].view(2, 3),
        "expanded": base[0, :3].expand(2, 3),
    }
    save("views", {"epoch": 7, "state_dict": tensors}, expected(tensors))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    whole_model()
    state_dict()
    views()


if __name__ == "__main__":
    main()

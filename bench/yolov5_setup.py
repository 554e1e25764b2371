"""yolov5's training setup as train.py makes it, shared by torch_perf.py (CPU) and
torch_gpu.py (GPU): the loss with its gains scaled and the SGD optimizer's three groups."""
import yaml
from yolov5.utils.loss import ComputeLoss
from yolov5.utils.torch_utils import smart_optimizer


def loss_and_optimizer(model, hyp_path, imgsz, nc):
    """ComputeLoss and smart_optimizer for `model` (training mode) at `imgsz`, `nc` classes."""
    with open(hyp_path) as f:
        hyp = yaml.safe_load(f)
    nl = model.model[-1].nl
    # train.py's scaling of the loss gains, and label_smoothing's default.
    hyp["box"] *= 3 / nl
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (imgsz / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = 0.0
    model.hyp = hyp
    return ComputeLoss(model), smart_optimizer(model, "SGD", hyp["lr0"], hyp["momentum"], hyp["weight_decay"])

#!/usr/bin/env python3
"""Peer measurements for bench/perf.rs: yolov5 models (nc=80) in PyTorch (the `yolov5` pip
package), onnxruntime, and yolov5's detect.py. perf.rs starts one process per task; each
reads one JSON line on stdin, answers one JSON line on stdout, and exits, so that no torch
or onnxruntime thread is alive while another engine is timed. To run it by hand, use the
interpreter of ../shared/REFERENCE.md's reference environment.

  torch_perf.py prepare   {"dir", "models": [{"name", "cfg"}], "infer": [{"batch", "imgsz"}],
                          "detect_shape": {"batch", "imgsz"}}: per model, a seeded
                          DetectionModel saved as yolov5's checkpoint {dir}/{name}.pt, and
                          yolov5's own ONNX export (export.py's run) of it per inference
                          shape, {dir}/{name}_b{batch}_{imgsz}.onnx. Answers
                          {"onnxruntime": bool, "detect": bool}.
  torch_perf.py block     One timed block: {"engine": torch | onnxruntime | detect.py,
                          "kind": train | infer | detect, "cfg", "hyp", "weights", "onnx",
                          "batch", "imgsz", "runs", "targets", "source", "project", "threads"}. Answers
                          {"median_ms", "min_ms", "max_ms"} over `runs` timed runs after one
                          warm-up (detect: per image, each run over every image of `source`).
  torch_perf.py rss       {"cfg", "hyp", "batch", "imgsz", "targets", "rss_steps"}: only the
                          training step, `rss_steps` times; answers {"peak_rss_kib"}.

The training step is train.py's without AMP (CPU): forward, ComputeLoss, backward,
clip_grad_norm_(10), SGD (nesterov, smart_optimizer's three groups) step, zero_grad, on a
fresh model (as actyolo's). Each engine runs with its defaults: torch with one thread per
core and OpenMP's default wait policy (OMP_WAIT_POLICY from the environment when perf.rs
is told one), onnxruntime with default session options; a block request's "threads", when
set (perf.rs --threads), gives torch and onnxruntime that many intra-op threads instead.
"""
import contextlib
import io
import json
import os
import resource
import shutil
import sys
import time
import warnings

warnings.filterwarnings("ignore")
for key, value in (("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config"), ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1"),
                   ("WANDB_MODE", "disabled"), ("COMET_MODE", "DISABLED"), ("CLEARML_OFF", "1")):
    os.environ.setdefault(key, value)

# The answer's own channel: the process's stdout, which everything else (yolov5's logs
# included) is moved off, to stderr.
CHANNEL = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)

import torch  # noqa: E402
from yolov5.models.yolo import DetectionModel  # noqa: E402
from yolov5_setup import loss_and_optimizer  # noqa: E402

# torch's default is one thread per core; yolov5's import lowers OMP_NUM_THREADS to
# cores - 1, so the default is restored after it.
torch.set_num_threads(os.cpu_count())


@contextlib.contextmanager
def quiet():
    """Silences yolov5's model summaries and the exporters' chatter."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def training_step(setup):
    """A closure running one training step on fixed synthetic data."""
    with quiet():
        model = DetectionModel(setup["cfg"], nc=80).train()
    imgsz = setup["imgsz"]
    with quiet():
        compute_loss, optimizer = loss_and_optimizer(model, setup["hyp"], imgsz, 80)
    images = torch.rand(setup["batch"], 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor(setup["targets"], dtype=torch.float32)

    def step():
        loss, _ = compute_loss(model(images), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        optimizer.step()
        optimizer.zero_grad()

    return step


def inputs(setup):
    return torch.rand(setup["batch"], 3, setup["imgsz"], setup["imgsz"], generator=torch.Generator().manual_seed(0))


def torch_inference(setup):
    """The shared checkpoint, fused, in eval mode, as detect.py loads a .pt."""
    from yolov5.models.experimental import attempt_load

    with quiet():
        model = attempt_load(setup["weights"], device=torch.device("cpu"), fuse=True).eval()
    x = inputs(setup)

    def run():
        with torch.no_grad():
            model(x)

    return run


def ort_inference(setup):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if setup.get("threads"):
        options.intra_op_num_threads = setup["threads"]
    session = ort.InferenceSession(setup["onnx"], options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: inputs(setup).numpy()}
    return lambda: session.run(None, feed)


def detect_py(setup):
    """yolov5's detect.py over every image of `source` with the ONNX file (onnxruntime),
    saving the annotated images as it does by default."""
    from yolov5.detect import run as detect_run

    def run():
        with quiet():
            detect_run(weights=setup["onnx"], source=setup["source"], imgsz=(setup["imgsz"], setup["imgsz"]),
                       device="cpu", project=setup["project"], name="detectpy", exist_ok=True)

    return run


def timed(f, runs, per=1):
    """One warm-up, then `runs` timed runs; the median is the upper middle, as perf.rs's."""
    f()
    times = []
    for _ in range(max(runs, 1)):
        started = time.perf_counter()
        f()
        times.append((time.perf_counter() - started) * 1e3 / per)
    times.sort()
    return {"median_ms": times[len(times) // 2], "min_ms": times[0], "max_ms": times[-1]}


def answer(message):
    print(json.dumps(message), file=CHANNEL, flush=True)


def prepare(setup):
    import functools

    from yolov5.export import run as export_run

    # yolov5's export.py was written for torch's TorchScript-based exporter, the default
    # before torch 2.9; newer torch defaults to the dynamo exporter, which yolov5 never ran.
    torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)

    directory = setup["dir"]
    try:
        import onnxruntime  # noqa: F401

        have_ort = True
    except ImportError:
        have_ort = False
    for entry in setup["models"]:
        torch.manual_seed(0)
        with quiet():
            model = DetectionModel(entry["cfg"], nc=80).eval()
        weights = os.path.join(directory, f"{entry['name']}.pt")
        torch.save({"model": model, "epoch": -1}, weights)
        if not have_ort:
            continue
        for shape in setup["infer"]:
            # export.py names its file after the weights: one copy per shape.
            stem = os.path.join(directory, f"{entry['name']}_b{shape['batch']}_{shape['imgsz']}")
            shutil.copyfile(weights, stem + ".pt")
            with quiet():
                export_run(weights=stem + ".pt", imgsz=(shape["imgsz"], shape["imgsz"]), batch_size=shape["batch"],
                           include=("onnx",), device="cpu")
            os.remove(stem + ".pt")
            if not os.path.isfile(stem + ".onnx"):
                raise RuntimeError(f"yolov5's export wrote no {stem}.onnx")
    detect = have_ort and setup["detect_shape"] in setup["infer"]
    answer({"onnxruntime": have_ort, "detect": detect})


def block(setup):
    kind, engine = setup["kind"], setup["engine"]
    if setup.get("threads"):
        torch.set_num_threads(setup["threads"])
    if kind == "train" and engine == "torch":
        answer(timed(training_step(setup), setup["runs"]))
    elif kind == "infer" and engine in ("torch", "onnxruntime"):
        run = torch_inference(setup) if engine == "torch" else ort_inference(setup)
        answer(timed(run, setup["runs"]))
    elif kind == "detect" and engine == "detect.py":
        images = len(os.listdir(setup["source"]))
        answer(timed(detect_py(setup), setup["runs"], per=images))
    else:
        answer({"error": f"no {engine} block for {kind}"})


def rss(setup):
    step = training_step(setup)
    for _ in range(setup["rss_steps"]):
        step()
    answer({"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})


if __name__ == "__main__":
    try:
        mode = sys.argv[1] if len(sys.argv) > 1 else "block"
        setup = json.loads(sys.stdin.readline())
        {"prepare": prepare, "block": block, "rss": rss}[mode](setup)
    except Exception as e:  # noqa: BLE001 - reported to perf.rs, which carries on without peers
        answer({"error": f"{type(e).__name__}: {e}"})

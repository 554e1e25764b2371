#!/usr/bin/env python3
"""Peer measurements for bench/perf.rs: yolov5n (nc=80) in PyTorch (the `yolov5` pip
package, 2 threads) and onnxruntime (2 threads). perf.rs starts it and drives it; to run
it by hand, use the interpreter of ../shared/REFERENCE.md's reference environment with
YOLOV5_CONFIG_DIR=/tmp/yolov5-config TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1.

  torch_perf.py serve     Reads one JSON setup line on stdin, builds the models (training
                          model, loss and SGD; fused eval model and one ONNX session per
                          inference size), answers {"ready": [engines], "omp_wait_policy": ..},
                          then answers each JSON request line with one JSON line, so
                          that perf.rs can interleave its own measurements with these:
                            {"train": runs}                         the training step
                            {"infer": engine, "imgsz": n, "runs": r}  engine: torch | onnxruntime
                          Each answer is {"median_ms", "min_ms", "max_ms"} over `runs` timed
                          runs after one warm-up, the median picked as perf.rs picks it.
  torch_perf.py rss       Reads the same setup, runs only the training step `rss_steps`
                          times, and prints {"peak_rss_kib": ru_maxrss} of this process.

The setup line: {"cfg": model yaml, "hyp": hyp yaml, "batch": b, "imgsz": training size,
"infer_sizes": [..], "targets": [[image, class, x, y, w, h], ..] (normalised), "rss_steps": n}.
The training step is train.py's without AMP (CPU): forward, ComputeLoss, backward,
clip_grad_norm_(10), SGD (nesterov, smart_optimizer's three groups) step, zero_grad.
OMP_WAIT_POLICY defaults to PASSIVE here (see below).
"""
import contextlib
import io
import json
import os
import resource
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
for key, value in (("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config"), ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1"),
                   ("WANDB_MODE", "disabled"), ("COMET_MODE", "DISABLED"), ("CLEARML_OFF", "1")):
    os.environ.setdefault(key, value)
# OpenMP's threads spin while they wait for work. On a loaded 2-core machine a spinning
# thread holds the core its partner needs, and torch collapses (measured: batch-1
# inference at 320 took 2170 ms on 2 threads, 16 ms on 1). Waiting passively keeps
# torch's 2 threads usable there; set OMP_WAIT_POLICY to override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The answers' own channel: the process's stdout, which everything else (yolov5's logs
# included) is moved off, to stderr.
CHANNEL = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)

import torch  # noqa: E402
from yolov5.models.yolo import DetectionModel  # noqa: E402
from yolov5_setup import loss_and_optimizer  # noqa: E402

torch.set_num_threads(2)  # after yolov5's import, which sets OMP_NUM_THREADS to cores - 1


@contextlib.contextmanager
def quiet():
    """Silences yolov5's model summaries and the ONNX exporter's chatter."""
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


def inference_runs(setup):
    """Per (engine, imgsz): a closure running one batch-1 inference of the fused model."""
    with quiet():
        model = DetectionModel(setup["cfg"], nc=80).fuse().eval()
    runs = {}
    for size in setup["infer_sizes"]:
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))

        def torch_run(x=x):
            with torch.no_grad():
                model(x)

        runs[("torch", size)] = torch_run
        try:
            import onnxruntime as ort

            path = os.path.join(tempfile.mkdtemp(), f"yolov5n_{size}.onnx")
            with quiet():
                torch.onnx.export(model, x, path, opset_version=12, dynamo=False)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 2
            session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: x.numpy()}
            runs[("onnxruntime", size)] = lambda session=session, feed=feed: session.run(None, feed)
        except Exception as e:  # noqa: BLE001 - onnxruntime missing or export failed: torch only
            print(f"onnxruntime unavailable: {e}", file=sys.stderr)
    return runs


def timed(f, runs):
    """One warm-up, then `runs` timed runs; the median is the upper middle, as perf.rs's."""
    f()
    times = []
    for _ in range(max(runs, 1)):
        started = time.perf_counter()
        f()
        times.append((time.perf_counter() - started) * 1e3)
    times.sort()
    return {"median_ms": times[len(times) // 2], "min_ms": times[0], "max_ms": times[-1]}


def answer(message):
    print(json.dumps(message), file=CHANNEL, flush=True)


def serve(setup):
    step = training_step(setup)
    runs = inference_runs(setup)
    engines = [engine for engine in ("torch", "onnxruntime") if (engine, setup["infer_sizes"][0]) in runs]
    answer({"ready": engines, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"]})
    for line in sys.stdin:
        request = json.loads(line)
        if "train" in request:
            answer(timed(step, request["train"]))
        else:
            f = runs.get((request["infer"], request["imgsz"]))
            answer(timed(f, request["runs"]) if f else {"error": f"no {request['infer']} at {request['imgsz']}"})


def rss(setup):
    step = training_step(setup)
    for _ in range(setup["rss_steps"]):
        step()
    answer({"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})


if __name__ == "__main__":
    try:
        mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
        setup = json.loads(sys.stdin.readline())
        {"serve": serve, "rss": rss}[mode](setup)
    except Exception as e:  # noqa: BLE001 - reported to perf.rs, which carries on without peers
        answer({"error": f"{type(e).__name__}: {e}"})

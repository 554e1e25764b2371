#!/usr/bin/env python3
"""Golden fixtures for the activation zoo, computed by PyTorch (in float64, see record()).

Writes tests/fixtures/activations.safetensors and tests/fixtures/activations.json.
For every case (an activation spec, a mode, an input set) it stores the input x, the
output y, the input gradient under an upstream gradient of ones and of random values,
and the value and gradients of every learnable parameter.

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md:
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch "yolov5==7.0.*" safetensors "setuptools<81"
    /tmp/ref/bin/python tools/gen_act_fixtures.py
"""

import json
import os
import warnings
import zlib

import torch
import torch.nn as nn
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
from yolov5.utils.activations import AconC, FReLU, MetaAconC  # noqa: E402

torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")

# Points where activations bend, switch branch or saturate: 0, ±1e-6, ±lambd (0.5), ±1
# (Hardtanh), ±3 (Hard*), 6 (ReLU6), Softplus' threshold (20; 5 for beta=2, threshold=10)
# and ±30. Each case adds its own kinks at non-default parameters.
EDGE = [-30.0, -20.0, -6.0, -3.001, -3.0, -2.999, -1.0, -0.5, -1e-6, 0.0, 1e-6,
        0.5, 1.0, 2.999, 3.0, 3.001, 5.0, 6.0, 19.999, 20.0, 20.001, 30.0]


def yolo_bn(module):
    """YOLOv5's initialize_weights sets every BatchNorm2d to eps 1e-3, momentum 0.03."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 0.03
    return module


def randomize(module):
    """Moves parameters and buffers away from their initial values, so a test of the
    channel mapping or of a learnable scale can fail."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("bn.weight") else 0.0))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
    return module


# (id, our spec string, torch constructor taking the channel count, extra edge points,
#  modes, randomize parameters?)
POINTWISE = [
    ("relu", "nn.ReLU()", lambda c: nn.ReLU(), []),
    ("relu_inplace", "nn.ReLU(inplace=True)", lambda c: nn.ReLU(), []),
    ("rrelu", "nn.RReLU()", lambda c: nn.RReLU(), []),
    ("rrelu_0.1_0.3", "nn.RReLU(0.1, 0.3)", lambda c: nn.RReLU(0.1, 0.3), []),
    ("hardtanh", "nn.Hardtanh()", lambda c: nn.Hardtanh(), []),
    ("hardtanh_-2_2", "nn.Hardtanh(-2, 2)", lambda c: nn.Hardtanh(-2.0, 2.0), [-2.0, -1.999, 2.0, 1.999, 2.001]),
    ("relu6", "nn.ReLU6()", lambda c: nn.ReLU6(), [5.999, 6.001]),
    ("sigmoid", "nn.Sigmoid()", lambda c: nn.Sigmoid(), []),
    ("hardsigmoid", "nn.Hardsigmoid()", lambda c: nn.Hardsigmoid(), []),
    ("tanh", "nn.Tanh()", lambda c: nn.Tanh(), []),
    ("silu", "nn.SiLU()", lambda c: nn.SiLU(), []),
    ("mish", "nn.Mish()", lambda c: nn.Mish(), []),
    ("hardswish", "nn.Hardswish()", lambda c: nn.Hardswish(), []),
    ("elu", "nn.ELU()", lambda c: nn.ELU(), []),
    ("elu_0.5", "nn.ELU(0.5)", lambda c: nn.ELU(0.5), []),
    ("celu", "nn.CELU()", lambda c: nn.CELU(), []),
    ("celu_2", "nn.CELU(alpha=2.0)", lambda c: nn.CELU(2.0), []),
    ("selu", "nn.SELU()", lambda c: nn.SELU(), []),
    ("gelu", "nn.GELU()", lambda c: nn.GELU(), []),
    ("gelu_tanh", "nn.GELU(approximate='tanh')", lambda c: nn.GELU(approximate="tanh"), []),
    ("hardshrink", "nn.Hardshrink()", lambda c: nn.Hardshrink(), []),
    ("hardshrink_1.5", "nn.Hardshrink(1.5)", lambda c: nn.Hardshrink(1.5), [-1.5, 1.5, -1.499, 1.501]),
    ("leakyrelu", "nn.LeakyReLU()", lambda c: nn.LeakyReLU(), []),
    ("leakyrelu_0.1", "nn.LeakyReLU(negative_slope=0.1)", lambda c: nn.LeakyReLU(0.1), []),
    ("logsigmoid", "nn.LogSigmoid()", lambda c: nn.LogSigmoid(), []),
    ("softplus", "nn.Softplus()", lambda c: nn.Softplus(), []),
    ("softplus_2_10", "nn.Softplus(beta=2, threshold=10)", lambda c: nn.Softplus(2.0, 10.0), [4.999, 5.001]),
    ("softshrink", "nn.Softshrink()", lambda c: nn.Softshrink(), []),
    ("softshrink_1.5", "nn.Softshrink(lambd=1.5)", lambda c: nn.Softshrink(1.5), [-1.5, 1.5, -1.499, 1.501]),
    ("softsign", "nn.Softsign()", lambda c: nn.Softsign(), []),
    ("tanhshrink", "nn.Tanhshrink()", lambda c: nn.Tanhshrink(), []),
    ("identity", "nn.Identity()", lambda c: nn.Identity(), []),
]

# Learnable and channel-wise: built with the input's channel count.
CHANNELWISE = [
    ("prelu", "nn.PReLU()", lambda c: nn.PReLU(), False),
    ("prelu_init", "nn.PReLU(num_parameters=1, init=0.1)", lambda c: nn.PReLU(1, 0.1), False),
    ("prelu_channels", "nn.PReLU(num_parameters=-1)", lambda c: nn.PReLU(c), True),
    ("glu", "nn.GLU(dim=1)", lambda c: nn.GLU(dim=1), False),
    ("softmin", "nn.Softmin(dim=1)", lambda c: nn.Softmin(dim=1), False),
    ("softmax", "nn.Softmax(dim=1)", lambda c: nn.Softmax(dim=1), False),
    ("softmax_none", "nn.Softmax()", lambda c: nn.Softmax(dim=1), False),
    ("softmax2d", "nn.Softmax2d()", lambda c: nn.Softmax2d(), False),
    ("logsoftmax", "nn.LogSoftmax(dim=1)", lambda c: nn.LogSoftmax(dim=1), False),
    ("frelu", "FReLU", lambda c: yolo_bn(FReLU(c)), True),
    ("aconc", "AconC", lambda c: AconC(c), True),
    ("metaaconc", "MetaAconC", lambda c: MetaAconC(c), True),
    ("metaaconc_r2", "MetaAconC(r=2)", lambda c: MetaAconC(c, r=2), True),
]


class SwishBeta(nn.Module):
    """Swish with a fixed beta, which torch lacks: x * sigmoid(beta * x)."""

    def __init__(self, beta=1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


# Activations torch lacks, written here from their definitions. Recorded after the others,
# so that adding one leaves every earlier case's inputs (drawn in sequence) unchanged.
NOT_IN_TORCH = [
    ("swish_beta", "SwishBeta()", lambda c: SwishBeta(), []),
    ("swish_beta_2", "SwishBeta(beta=2.0)", lambda c: SwishBeta(2.0), []),
    ("swish_beta_0.5", "SwishBeta(0.5)", lambda c: SwishBeta(0.5), []),
]


def inputs_for(extra, channelwise):
    """Named input tensors, all NCHW. The edge points form one 1×E×1×1 tensor."""
    edge = sorted(set(EDGE + extra))
    if len(edge) % 2:  # GLU halves the channels
        edge.append(0.25)
    sets = {"edge": torch.tensor(edge, dtype=torch.float32).reshape(1, -1, 1, 1)}
    shape = (2, 6, 5, 5) if channelwise else (2, 4, 8, 8)
    sets["random"] = torch.randn(*shape) * 3.0
    if not channelwise:
        sets["random_small"] = torch.randn(*shape) * 0.5
    return sets


def seed(*parts):
    """A per-case seed that does not depend on Python's randomised hash()."""
    return zlib.crc32("/".join(parts).encode())


tensors = {}
cases = []


def record(case_id, spec, make, x0, train, randomize_params):
    channels = x0.shape[1]
    module = make(channels)
    if randomize_params:
        randomize(module)
    module.train(train)
    state = {k: v.detach().clone() for k, v in module.state_dict().items() if "num_batches" not in k}
    # The expected values are computed in float64 from the float32 inputs and parameters:
    # the exact function, against which a float32 implementation is judged. (PyTorch's own
    # float32 result sits within the tolerance of it, but for cancellation-heavy sums such
    # as MetaAconC's fc1 gradient on inputs of +-30.)
    module.double()
    x = x0.double().requires_grad_(True)
    y = module(x)
    gy = torch.randn(y.shape).double()
    result = {"x": x0, "y": y.detach(), "gy": gy}  # gy is float32-representable
    params = dict(module.named_parameters())
    for label, upstream in (("ones", torch.ones_like(y)), ("rand", gy)):
        grads = torch.autograd.grad(y, [x] + list(params.values()), upstream, retain_graph=True)
        result[f"gx_{label}"] = grads[0]
        for (name, _), g in zip(params.items(), grads[1:]):
            result[f"gparam_{label}/{name}"] = g
    for name, value in state.items():
        result[f"state/{name}"] = value
    if train:
        for name, value in module.state_dict().items():
            if "running" in name:
                result[f"state_after/{name}"] = value.detach().clone()
    for key, value in result.items():
        tensors[f"{case_id}/{key}"] = value.detach().float().clone().contiguous()
    cases.append({"id": case_id, "spec": spec, "train": train, "channels": channels,
                  "params": list(params), "state": list(state)})


for case_id, spec, make, extra in POINTWISE:
    for input_name, x0 in inputs_for(extra, False).items():
        torch.manual_seed(seed(case_id, input_name))
        # RReLU is random in training; PyTorch's noise cannot be reproduced, so its
        # training mode is checked by property tests instead.
        record(f"{case_id}/{input_name}/eval", spec, make, x0, False, False)

for case_id, spec, make, rand_params in CHANNELWISE:
    for input_name, x0 in inputs_for([], True).items():
        torch.manual_seed(seed(case_id, input_name))
        record(f"{case_id}/{input_name}/eval", spec, make, x0, False, rand_params)
        if case_id == "frelu" and input_name != "edge":  # BN needs >1 value per channel
            torch.manual_seed(seed(case_id, input_name, "train"))
            record(f"{case_id}/{input_name}/train", spec, make, x0, True, rand_params)

for case_id, spec, make, extra in NOT_IN_TORCH:
    for input_name, x0 in inputs_for(extra, False).items():
        torch.manual_seed(seed(case_id, input_name))
        record(f"{case_id}/{input_name}/eval", spec, make, x0, False, False)

os.makedirs(OUT, exist_ok=True)
save_file(tensors, os.path.join(OUT, "activations.safetensors"))
with open(os.path.join(OUT, "activations.json"), "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f, indent=1)
print(f"{len(cases)} cases, {len(tensors)} tensors")

#!/usr/bin/env python3
"""Golden fixtures for the YOLOv7 family (tests/model_v7.rs), and the check of the official
parameter and GFLOP counts.

yolov7 (WongKinYiu/yolov7) is not on PyPI, so this script re-implements the modules its
three training YAMLs use (Conv, MP, SP, Concat, SPPCSPC, RepConv, ImplicitA, ImplicitM,
IDetect, parse_model, Model and its fuse) from models/common.py, models/yolo.py and
utils/torch_utils.py at commit a207844, with the same constructor signatures, attribute names
(hence state_dict names), initialisation and arithmetic. The classes are registered as
`models.common.*` and `models.yolo.*`, so pickled models carry yolov7's class paths.

It reads the shipped YAMLs in configs/models/ and writes into tests/fixtures/models_v7/:
  - yolov7-tiny.safetensors       the state_dict of yolov7-tiny at nc=3, full width, fp16
  - yolov7-tiny.out.safetensors   its eval outputs with the YAML's nn.LeakyReLU(0.1)
  - yolov7-tiny-silu.out.safetensors  the same weights with every Conv's activation
                                  replaced by nn.SiLU() (what `--act silu` does)
  - yolov7-w25.safetensors/.out   yolov7.yaml at nc=3 and width_multiple 0.25: the same
                                  module graph (RepConv, SPPCSPC, IDetect) at a sixteenth of
                                  the parameters, so that the file stays small
  - mini.pt                       a train.py-style checkpoint {'model', 'ema', ...} of a small
                                  model holding every v7 module, with a RepConv that has its
                                  identity branch (c1 == c2, s == 1), which the official YAMLs
                                  never do; 'model' holds decoy weights, 'ema' the real ones
  - mini.safetensors/.out         its expected state_dict (f32) and outputs
Every .out file holds `images`, the decoded `z` and raw maps `raw.<level>` in eval mode, and
`fused.z`, `fused.raw.<level>` after yolov7's Model.fuse() (RepConv folded to one 3x3 conv,
the implicit knowledge folded into IDetect's convs). Weights are rounded to fp16 before the
forward passes, so the fp16 files reproduce the expected outputs exactly.

`--summary` prints, instead, the parameters and GFLOPs (thop, as yolov7's model_info counts
them) of yolov7, yolov7x and yolov7-tiny at nc=80.

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md
(torch 2.15, safetensors, thop):
    /tmp/ref/bin/python tools/gen_v7_fixtures.py --summary
    /tmp/ref/bin/python tools/gen_v7_fixtures.py
"""

import copy
import math
import os
import sys
import types
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CONFIGS = os.path.join(ROOT, "configs", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "models_v7")
NAMES = ["circle", "rectangle", "triangle"]


# ---- models/common.py ------------------------------------------------------------------

def autopad(k, p=None):
    return k // 2 if p is None else p


class MP(nn.Module):
    def __init__(self, k=2):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x):
        return self.m(x)


class SP(nn.Module):
    def __init__(self, k=3, s=1):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x):
        return self.m(x)


class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU() if act is True else (act if isinstance(act, nn.Module) else nn.Identity())

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def fuseforward(self, x):
        return self.act(self.conv(x))


class SPPCSPC(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5, k=(5, 9, 13)):
        super().__init__()
        c_ = int(2 * c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(c_, c_, 3, 1)
        self.cv4 = Conv(c_, c_, 1, 1)
        self.m = nn.ModuleList([nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k])
        self.cv5 = Conv(4 * c_, c_, 1, 1)
        self.cv6 = Conv(c_, c_, 3, 1)
        self.cv7 = Conv(2 * c_, c2, 1, 1)

    def forward(self, x):
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.m], 1)))
        y2 = self.cv2(x)
        return self.cv7(torch.cat((y1, y2), dim=1))


class ImplicitA(nn.Module):
    def __init__(self, channel, mean=0.0, std=0.02):
        super().__init__()
        self.channel, self.mean, self.std = channel, mean, std
        self.implicit = nn.Parameter(torch.zeros(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=self.mean, std=self.std)

    def forward(self, x):
        return self.implicit + x


class ImplicitM(nn.Module):
    def __init__(self, channel, mean=1.0, std=0.02):
        super().__init__()
        self.channel, self.mean, self.std = channel, mean, std
        self.implicit = nn.Parameter(torch.ones(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=self.mean, std=self.std)

    def forward(self, x):
        return self.implicit * x


class RepConv(nn.Module):
    """Training form: 3x3 conv+BN, 1x1 conv+BN and (c1 == c2, s == 1) an identity BN,
    summed before the activation; fuse_repvgg_block folds them into one 3x3 conv."""

    def __init__(self, c1, c2, k=3, s=1, p=None, g=1, act=True, deploy=False):
        super().__init__()
        assert k == 3 and autopad(k, p) == 1 and not deploy
        self.deploy, self.groups, self.in_channels, self.out_channels = deploy, g, c1, c2
        padding_11 = autopad(k, p) - k // 2
        self.act = nn.SiLU() if act is True else (act if isinstance(act, nn.Module) else nn.Identity())
        self.rbr_identity = nn.BatchNorm2d(num_features=c1) if c2 == c1 and s == 1 else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False), nn.BatchNorm2d(num_features=c2))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, s, padding_11, groups=g, bias=False), nn.BatchNorm2d(num_features=c2))

    def forward(self, inputs):
        if hasattr(self, "rbr_reparam"):
            return self.act(self.rbr_reparam(inputs))
        id_out = 0 if self.rbr_identity is None else self.rbr_identity(inputs)
        return self.act(self.rbr_dense(inputs) + self.rbr_1x1(inputs) + id_out)

    @staticmethod
    def fuse_conv_bn(conv, bn):
        std = (bn.running_var + bn.eps).sqrt()
        bias = bn.bias - bn.running_mean * bn.weight / std
        weights = conv.weight * (bn.weight / std).reshape(-1, 1, 1, 1)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, bias=True)
        fused.weight, fused.bias = nn.Parameter(weights), nn.Parameter(bias)
        return fused

    def fuse_repvgg_block(self):
        if self.deploy:
            return
        self.rbr_dense = self.fuse_conv_bn(self.rbr_dense[0], self.rbr_dense[1])
        self.rbr_1x1 = self.fuse_conv_bn(self.rbr_1x1[0], self.rbr_1x1[1])
        weight_1x1_expanded = nn.functional.pad(self.rbr_1x1.weight, [1, 1, 1, 1])
        if isinstance(self.rbr_identity, nn.BatchNorm2d):
            identity = nn.Conv2d(self.in_channels, self.out_channels, 1, 1, 0, groups=self.groups, bias=False)
            identity.weight.data = torch.zeros_like(identity.weight.data.squeeze())
            identity.weight.data.fill_diagonal_(1.0)
            identity.weight.data = identity.weight.data.unsqueeze(2).unsqueeze(3)
            identity = self.fuse_conv_bn(identity, self.rbr_identity)
            bias_identity, weight_identity = identity.bias, nn.functional.pad(identity.weight, [1, 1, 1, 1])
        else:
            bias_identity = torch.zeros_like(self.rbr_1x1.bias)
            weight_identity = torch.zeros_like(weight_1x1_expanded)
        self.rbr_dense.weight = nn.Parameter(self.rbr_dense.weight + weight_1x1_expanded + weight_identity)
        self.rbr_dense.bias = nn.Parameter(self.rbr_dense.bias + self.rbr_1x1.bias + bias_identity)
        self.rbr_reparam = self.rbr_dense
        self.deploy = True
        self.rbr_identity = self.rbr_1x1 = self.rbr_dense = None


# ---- models/yolo.py ----------------------------------------------------------------------

class IDetect(nn.Module):
    stride = None

    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__()
        self.nc, self.no, self.nl, self.na = nc, nc + 5, len(anchors), len(anchors[0]) // 2
        self.grid = [torch.zeros(1)] * self.nl
        a = torch.tensor(anchors).float().view(self.nl, -1, 2)
        self.register_buffer("anchors", a)
        self.register_buffer("anchor_grid", a.clone().view(self.nl, 1, -1, 1, 1, 2))
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.ia = nn.ModuleList(ImplicitA(x) for x in ch)
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch)

    def forward(self, x):
        return self.run(x, fused=False)

    def fuseforward(self, x):
        return self.run(x, fused=True)

    def run(self, x, fused):
        """yolov7's forward, and (fused) its fuseforward, which skips the implicit layers."""
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i]) if fused else self.im[i](self.m[i](self.ia[i](x[i])))
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                if self.grid[i].shape[2:4] != x[i].shape[2:4]:
                    self.grid[i] = self._make_grid(nx, ny).to(x[i].device)
                y = x[i].sigmoid()
                y[..., 0:2] = (y[..., 0:2] * 2.0 - 0.5 + self.grid[i]) * self.stride[i]
                y[..., 2:4] = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
                z.append(y.view(bs, -1, self.no))
        return x if self.training else (torch.cat(z, 1), x)

    def fuse(self):
        for i in range(len(self.m)):
            c1, c2, _, _ = self.m[i].weight.shape
            c1_, c2_, _, _ = self.ia[i].implicit.shape
            self.m[i].bias += torch.matmul(self.m[i].weight.reshape(c1, c2), self.ia[i].implicit.reshape(c2_, c1_)).squeeze(1)
        for i in range(len(self.m)):
            c1, c2, _, _ = self.im[i].implicit.shape
            self.m[i].bias *= self.im[i].implicit.reshape(c2)
            self.m[i].weight *= self.im[i].implicit.transpose(0, 1)

    @staticmethod
    def _make_grid(nx=20, ny=20):
        yv, xv = torch.meshgrid([torch.arange(ny), torch.arange(nx)], indexing="ij")
        return torch.stack((xv, yv), 2).view((1, 1, ny, nx, 2)).float()


def make_divisible(x, divisor):
    return math.ceil(x / divisor) * divisor


def parse_model(d, ch):
    anchors, nc, gd, gw = d["anchors"], d["nc"], d["depth_multiple"], d["width_multiple"]
    na = (len(anchors[0]) // 2) if isinstance(anchors, list) else anchors
    no = na * (nc + 5)
    layers, save, c2 = [], [], ch[-1]
    for i, (f, n, m, args) in enumerate(d["backbone"] + d["head"]):
        m = eval(m) if isinstance(m, str) else m
        for j, a in enumerate(args):
            try:
                args[j] = eval(a) if isinstance(a, str) else a
            except Exception:
                pass
        n = max(round(n * gd), 1) if n > 1 else n
        if m in [nn.Conv2d, Conv, RepConv, SPPCSPC]:
            c1, c2 = ch[f], args[0]
            if c2 != no:
                c2 = make_divisible(c2 * gw, 8)
            args = [c1, c2, *args[1:]]
            if m in [SPPCSPC]:
                args.insert(2, n)
                n = 1
        elif m is Concat:
            c2 = sum([ch[x] for x in f])
        elif m is IDetect:
            args.append([ch[x] for x in f])
            if isinstance(args[1], int):
                args[1] = [list(range(args[1] * 2))] * len(f)
        else:
            c2 = ch[f]
        m_ = nn.Sequential(*[m(*args) for _ in range(n)]) if n > 1 else m(*args)
        m_.i, m_.f = i, f
        save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        layers.append(m_)
        if i == 0:
            ch = []
        ch.append(c2)
    return nn.Sequential(*layers), sorted(save)


class Model(nn.Module):
    def __init__(self, cfg, ch=3):
        super().__init__()
        self.traced = False
        self.yaml = cfg
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        self.model, self.save = parse_model(copy.deepcopy(self.yaml), ch=[ch])
        self.names = [str(i) for i in range(self.yaml["nc"])]
        m = self.model[-1]
        s = 256
        m.stride = torch.tensor([s / x.shape[-2] for x in self.forward(torch.zeros(1, ch, s, s))])
        check_anchor_order(m)
        m.anchors /= m.stride.view(-1, 1, 1)
        self.stride = m.stride
        self._initialize_biases()
        initialize_weights(self)

    def forward(self, x):
        y = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x

    def _initialize_biases(self):
        m = self.model[-1]
        for mi, s in zip(m.m, m.stride):
            b = mi.bias.view(m.na, -1)
            b.data[:, 4] += math.log(8 / (640 / s) ** 2)
            b.data[:, 5:] += math.log(0.6 / (m.nc - 0.99))
            mi.bias = torch.nn.Parameter(b.view(-1), requires_grad=True)

    def fuse(self):
        for m in self.model.modules():
            if isinstance(m, RepConv):
                m.fuse_repvgg_block()
            elif type(m) is Conv and hasattr(m, "bn"):
                m.conv = fuse_conv_and_bn(m.conv, m.bn)
                delattr(m, "bn")
                m.forward = m.fuseforward
            elif isinstance(m, IDetect):
                m.fuse()
                m.forward = m.fuseforward
        return self


# ---- utils/autoanchor.py, utils/torch_utils.py -------------------------------------------

def check_anchor_order(m):
    a = m.anchor_grid.prod(-1).view(-1)
    if (a[-1] - a[0]).sign() != (m.stride[-1] - m.stride[0]).sign():
        m.anchors[:] = m.anchors.flip(0)
        m.anchor_grid[:] = m.anchor_grid.flip(0)


def initialize_weights(model):
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.eps, m.momentum = 1e-3, 0.03
        elif type(m) in [nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6]:
            m.inplace = True


def fuse_conv_and_bn(conv, bn):
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, groups=conv.groups, bias=True).requires_grad_(False)
    w_conv = conv.weight.clone().view(conv.out_channels, -1)
    w_bn = torch.diag(bn.weight.div(torch.sqrt(bn.eps + bn.running_var)))
    fused.weight.copy_(torch.mm(w_bn, w_conv).view(fused.weight.shape))
    b_conv = torch.zeros(conv.weight.size(0)) if conv.bias is None else conv.bias
    b_bn = bn.bias - bn.weight.mul(bn.running_mean).div(torch.sqrt(bn.running_var + bn.eps))
    fused.bias.copy_(torch.mm(w_bn, b_conv.reshape(-1, 1)).reshape(-1) + b_bn)
    return fused


def register_class_paths():
    """Puts the classes where yolov7 keeps them, so that pickles name `models.common.Conv`."""
    package = types.ModuleType("models")
    package.__path__ = []
    sys.modules["models"] = package
    for module_name, classes in [("models.common", [MP, SP, Concat, Conv, SPPCSPC, ImplicitA, ImplicitM, RepConv]),
                                 ("models.yolo", [IDetect, Model])]:
        module = types.ModuleType(module_name)
        for cls in classes:
            cls.__module__ = module_name
            setattr(module, cls.__name__, cls)
        sys.modules[module_name] = module
        setattr(package, module_name.split(".")[1], module)


# ---- fixtures ------------------------------------------------------------------------------

MINI = {
    "nc": 3,
    "depth_multiple": 1.0,
    "width_multiple": 0.25,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]],
    "backbone": [
        [-1, 1, "Conv", [32, 3, 2, None, 1, "nn.LeakyReLU(0.1)"]],  # 0-P1/2
        [-1, 1, "RepConv", [32, 3, 1]],  # 1 with the identity branch
        [-1, 1, "MP", []],  # 2-P2/4
        [-1, 1, "Conv", [64, 3, 1, None, 1, "nn.ReLU()"]],  # 3
        [-1, 1, "RepConv", [64, 3, 2]],  # 4-P3/8, strided: no identity branch
        [-1, 1, "SP", [5]],
        [[-1, -2], 1, "Concat", [1]],
        [-1, 1, "SPPCSPC", [64]],  # 7
    ],
    "head": [
        [-1, 1, "Conv", [64, 1, 1, None, 1, False]],  # 8
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 3], 1, "Concat", [1]],
        [-1, 1, "RepConv", [64, 3, 1]],  # 11
        [[11, 8], 1, "IDetect", ["nc", "anchors"]],
    ],
}


def shipped(name, nc=80, width=None):
    with open(os.path.join(CONFIGS, name)) as f:
        cfg = yaml.safe_load(f)
    cfg["nc"] = nc
    if width is not None:
        cfg["width_multiple"] = width
    return cfg


def summary():
    import thop

    for name in ["yolov7.yaml", "yolov7x.yaml", "yolov7-tiny.yaml"]:
        model = Model(shipped(name)).eval()
        params = sum(p.numel() for p in model.parameters())
        stride = max(int(model.stride.max()), 32)
        macs = thop.profile(copy.deepcopy(model), inputs=(torch.zeros(1, 3, stride, stride),), verbose=False)[0]
        gflops = macs / 1e9 * 2 * (640 / stride) ** 2
        print(f"{name}: {params} parameters, {gflops:.4f} GFLOPs at 640 (nc=80)")


def move_statistics(model):
    """BatchNorm affine parameters and running statistics away from 1/0 (a few training
    passes produce the statistics), and the implicit knowledge far from 0/1."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1.0 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.1 * torch.randn_like(m.bias))
                m.momentum = 0.3
            elif isinstance(m, ImplicitA):
                m.implicit.normal_(0.0, 0.2)
            elif isinstance(m, ImplicitM):
                m.implicit.normal_(1.0, 0.2)
        model.train()
        for _ in range(4):
            model(torch.rand(2, 3, 64, 64) * 2.0 - 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.03
    model.eval()


def outputs(model, images):
    """Eval outputs, unfused and after yolov7's fuse."""
    with torch.no_grad():
        z, raw = model(images)
        fused_z, fused_raw = copy.deepcopy(model).fuse()(images)
    out = {"images": images, "z": z, "fused.z": fused_z}
    out.update({f"raw.{i}": r.contiguous() for i, r in enumerate(raw)})
    out.update({f"fused.raw.{i}": r.contiguous() for i, r in enumerate(fused_raw)})
    return out


def state_dict(model, dtype):
    return {k: v.to(dtype).contiguous() for k, v in model.state_dict().items() if "num_batches_tracked" not in k}


def build(cfg, seed):
    torch.manual_seed(seed)
    model = Model(cfg)
    move_statistics(model)
    return model.half().float()  # the weights as the fp16 files hold them


def save(name, tensors):
    save_file(tensors, os.path.join(OUT, name))


def main():
    os.makedirs(OUT, exist_ok=True)
    images = torch.rand(1, 3, 96, 64, generator=torch.Generator().manual_seed(7))

    tiny = build(shipped("yolov7-tiny.yaml", nc=3), seed=0)
    save("yolov7-tiny.safetensors", state_dict(tiny, torch.float16))
    save("yolov7-tiny.out.safetensors", outputs(tiny, images))
    tiny_silu = copy.deepcopy(tiny)
    for m in tiny_silu.modules():
        if isinstance(m, Conv):
            m.act = nn.SiLU()
    save("yolov7-tiny-silu.out.safetensors", outputs(tiny_silu, images))

    w25 = build(shipped("yolov7.yaml", nc=3, width=0.25), seed=1)
    save("yolov7-w25.safetensors", state_dict(w25, torch.float16))
    save("yolov7-w25.out.safetensors", outputs(w25, images))

    mini = build(copy.deepcopy(MINI), seed=2)
    mini.names, mini.nc, mini.gr, mini.hyp = NAMES, 3, 1.0, {"lr0": 0.01, "loss_ota": 0}
    mini.class_weights = torch.tensor([0.5, 1.0, 1.5])  # a tensor outside the state_dict
    save("mini.safetensors", state_dict(mini, torch.float32))
    save("mini.out.safetensors", outputs(mini, images))
    decoy = copy.deepcopy(mini)
    with torch.no_grad():
        for p in decoy.parameters():
            p.add_(0.5)
    ckpt = {"epoch": -1, "best_fitness": None, "training_results": None, "model": decoy.half(),
            "ema": copy.deepcopy(mini).half(), "updates": 0, "optimizer": None, "wandb_id": None}
    torch.save(ckpt, os.path.join(OUT, "mini.pt"))
    for name, model in [("yolov7-tiny", tiny), ("yolov7-w25", w25), ("mini", mini)]:
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    register_class_paths()
    summary() if "--summary" in sys.argv[1:] else main()

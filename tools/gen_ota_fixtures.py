#!/usr/bin/env python3
"""Golden fixtures for yolov7's OTA loss: `actyolo::train::loss::YoloLoss` with
`Assignment::Ota`, whose positives `actyolo::train::ota::assign` picks.

yolov7 is not on PyPI, so its `ComputeLossOTA` is re-implemented below, operation for
operation, following WongKinYiu/yolov7 `utils/loss.py` at commit
a207844b1ce82d204ab36d87d496728d3d2348e7 (`ComputeLossOTA.__call__`, `build_targets`,
`find_3_positive`) and `bbox_iou`, `box_iou`, `xywh2xyxy` from `utils/general.py` of the
same commit. `FocalLoss` and `smooth_BCE` are identical in yolov7 and the `yolov5` package,
and are taken from the package. Departures, none of which changes a number: an empty level
is built on the targets' device (upstream hard-codes 'cuda:0'); the `.float()` casts of the
class cost follow the run's dtype (upstream's would mix float32 into the float64 run);
`build_targets` records its decisions, so that this script can check their margins; and the
selection of each target's k cheapest candidates is a parameter (below). Checked once
against upstream's own class (that commit's utils/ on CPU, float32): the same loss and
components to the last bit on all three cases.

Setup: a 64x64 input, strides 8/16/32 (grids 8x8, 4x4, 2x2), 3 anchors per level
(yolov7's default anchors scaled by 64/640), batch 3 with image 1 empty, fixed random raw
Detect maps. The targets cover: a centre on a cell corner (duplicate candidates), three
targets competing for the same candidates (a candidate taken by several targets goes to the
cheapest, which can be another target than its proposer), boxes on and near the image
borders (clamped cells), a box only the coarse level matches, and one too small for every
anchor.

Cases: hyp.scratch.tiny's loss values (scaled as train.py scales them); label smoothing,
focal loss, cls_pw/obj_pw != 1 and anchor_t 3.5 (fewer candidates); nc = 1 (no class loss;
the class cost has one column).

The expected numbers are torch's in float64 from the float32 inputs. The float32 run (the
one training makes) must pick the same positives, and every decision must clear a margin
(the top-10 IoU sum from an integer, the k-th from the (k+1)-th cost, a contested
candidate's cheapest from its second cheapest target), so that an f32 reimplementation
cannot flip one by rounding. The one exact tie allowed is between copies of a prediction
(a centre on a cell corner proposes its own cell more than once): torch's `topk` then picks
either copy arbitrarily, actyolo the first. The script runs both selections, requires the
same loss and gradients from them, and stores the positives in actyolo's order.

yolov7's `bbox_iou` (CIoU) differs from ultralytics' v7.0 `bbox_iou` (which actyolo's loss
uses) by epsilons: the script checks that the loss moves by < 1e-6 between the two.

Writes into tests/fixtures/loss/:
  - ota.json          per case: nc, imgsz, strides, anchors (stride units), base and scaled
                      hyps, targets, loss, (lbox, lobj, lcls), and the positives per level
                      ([image, anchor, gy, gx, class] and their regression targets)
  - ota.safetensors   `preds.<group>.<level>` (float32) and `grad.<case>.<level>`
                      (d total / d preds, float32 from float64)

Rerun (from the repository root), in the reference environment of ../shared/REFERENCE.md
(torch 2.15 and the yolov5 package):
    /tmp/ref/bin/python tools/gen_ota_fixtures.py
"""

import json
import math
import os
import warnings

os.environ.setdefault("YOLOV5_CONFIG_DIR", "/tmp/yolov5-config")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from yolov5.utils.loss import FocalLoss, smooth_BCE  # noqa: E402
from yolov5.utils.metrics import bbox_iou as ultralytics_bbox_iou  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "loss")

# hyp.scratch.tiny.yaml, the loss part.
BASE_HYP = {"box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0, "anchor_t": 4.0,
            "fl_gamma": 0.0, "label_smoothing": 0.0}

IMGSZ = 64
STRIDES = [8.0, 16.0, 32.0]
# yolov7's default anchors (pixels at 640), cfg/training/yolov7-tiny.yaml.
ANCHORS_640 = [[[10, 13], [16, 30], [33, 23]],
               [[30, 61], [62, 45], [59, 119]],
               [[116, 90], [156, 198], [373, 326]]]
BATCH = 3

# [image, class, cx, cy, w, h], normalised. Image 1 has no targets.
TARGETS = [
    [0, 0, 0.5, 0.5, 0.2, 0.25],      # on a cell corner at every level
    [0, 1, 0.53, 0.46, 0.17, 0.22],   # these two compete with the first
    [0, 2, 0.56, 0.55, 0.1, 0.12],
    [0, 1, 0.03, 0.96, 0.08, 0.1],    # near the bottom-left border
    [0, 0, 1.0, 0.0, 0.12, 0.1],      # on the top-right corner: clamped cells
    [0, 2, 0.78, 0.3, 0.6, 0.5],      # large: only the coarse level
    [0, 0, 0.3, 0.7, 0.002, 0.002],   # too small for every anchor
    [2, 1, 0.25, 0.25, 0.15, 0.2],
    [2, 0, 0.27, 0.26, 0.3, 0.15],
    [2, 2, 0.7, 0.75, 0.4, 0.45],
    [2, 1, 0.97, 0.5, 0.06, 0.3],     # near the right border
    [2, 0, 0.6, 0.1, 0.05, 0.05],
]

MARGIN = 1e-4


def xywh2xyxy(x):
    """utils/general.py xywh2xyxy."""
    y = x.clone()
    y[:, 0] = x[:, 0] - x[:, 2] / 2
    y[:, 1] = x[:, 1] - x[:, 3] / 2
    y[:, 2] = x[:, 0] + x[:, 2] / 2
    y[:, 3] = x[:, 1] + x[:, 3] / 2
    return y


def box_iou(box1, box2):
    """utils/general.py box_iou: (N, M) IoU of corner boxes, no epsilon."""
    area1 = (box1[:, 2] - box1[:, 0]) * (box1[:, 3] - box1[:, 1])
    area2 = (box2[:, 2] - box2[:, 0]) * (box2[:, 3] - box2[:, 1])
    inter = (torch.min(box1[:, None, 2:], box2[:, 2:]) - torch.max(box1[:, None, :2], box2[:, :2])).clamp(0).prod(2)
    return inter / (area1[:, None] + area2 - inter)


def yolov7_ciou(box1, box2, eps=1e-7):
    """utils/general.py bbox_iou(box1, box2, x1y1x2y2=False, CIoU=True): box1 is (4, n), box2 (n, 4)."""
    box2 = box2.T
    b1_x1, b1_x2 = box1[0] - box1[2] / 2, box1[0] + box1[2] / 2
    b1_y1, b1_y2 = box1[1] - box1[3] / 2, box1[1] + box1[3] / 2
    b2_x1, b2_x2 = box2[0] - box2[2] / 2, box2[0] + box2[2] / 2
    b2_y1, b2_y2 = box2[1] - box2[3] / 2, box2[1] + box2[3] / 2
    inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * \
            (torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)).clamp(0)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1_x2, b2_x2) - torch.min(b1_x1, b2_x1)
    ch = torch.max(b1_y2, b2_y2) - torch.min(b1_y1, b2_y1)
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
    v = (4 / math.pi ** 2) * torch.pow(torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps)), 2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def ultralytics_ciou(box1, box2):
    """ultralytics v7.0's CIoU (what actyolo's loss computes), in yolov7's calling convention."""
    return ultralytics_bbox_iou(box1.T, box2, xywh=True, CIoU=True).squeeze(-1)


def torch_lowest(costs, k):
    """Upstream's choice of the k cheapest candidates."""
    return torch.topk(costs, k=k, largest=False)[1]


def first_lowest(costs, k):
    """actyolo's choice: the k cheapest, the first of equal costs."""
    return costs.sort(stable=True)[1][:k]


class ComputeLossOTA:
    """yolov7's ComputeLossOTA for a model with `nc` classes, `anchors` (nl, na, 2) in stride
    units and `stride` (nl,); `ciou` is the box IoU of the loss."""

    def __init__(self, nc, anchors, stride, hyp, ciou=yolov7_ciou, lowest=None):
        bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([hyp["cls_pw"]]))
        bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([hyp["obj_pw"]]))
        self.cp, self.cn = smooth_BCE(eps=hyp.get("label_smoothing", 0.0))
        if hyp["fl_gamma"] > 0:
            bce_cls, bce_obj = FocalLoss(bce_cls, hyp["fl_gamma"]), FocalLoss(bce_obj, hyp["fl_gamma"])
        self.nl, self.na = anchors.shape[:2]
        self.balance = {3: [4.0, 1.0, 0.4]}.get(self.nl, [4.0, 1.0, 0.25, 0.06, .02])
        self.BCEcls, self.BCEobj, self.gr, self.hyp = bce_cls, bce_obj, 1.0, hyp  # train.py sets model.gr = 1.0
        self.nc, self.anchors, self.stride, self.ciou = nc, anchors, stride, ciou
        self.lowest = lowest or torch_lowest
        self.decisions = []  # not upstream: per image, what the margin checks need

    def __call__(self, p, targets, imgs):
        lcls, lbox, lobj = torch.zeros(1), torch.zeros(1), torch.zeros(1)
        bs, as_, gjs, gis, targets, anchors = self.build_targets(p, targets, imgs)
        pre_gen_gains = [torch.tensor(pp.shape)[[3, 2, 3, 2]] for pp in p]
        for i, pi in enumerate(p):
            b, a, gj, gi = bs[i], as_[i], gjs[i], gis[i]
            tobj = torch.zeros_like(pi[..., 0])
            n = b.shape[0]
            if n:
                ps = pi[b, a, gj, gi]
                grid = torch.stack([gi, gj], dim=1)
                pxy = ps[:, :2].sigmoid() * 2. - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors[i]
                pbox = torch.cat((pxy, pwh), 1)
                selected_tbox = targets[i][:, 2:6] * pre_gen_gains[i]
                selected_tbox[:, :2] -= grid
                iou = self.ciou(pbox.T, selected_tbox)
                lbox += (1.0 - iou).mean()
                tobj[b, a, gj, gi] = (1.0 - self.gr) + self.gr * iou.detach().clamp(0).type(tobj.dtype)
                selected_tcls = targets[i][:, 1].long()
                if self.nc > 1:
                    t = torch.full_like(ps[:, 5:], self.cn)
                    t[range(n), selected_tcls] = self.cp
                    lcls += self.BCEcls(ps[:, 5:], t)
            lobj += self.BCEobj(pi[..., 4], tobj) * self.balance[i]
        lbox *= self.hyp["box"]
        lobj *= self.hyp["obj"]
        lcls *= self.hyp["cls"]
        bs = tobj.shape[0]
        loss = lbox + lobj + lcls
        return loss * bs, torch.cat((lbox, lobj, lcls, loss)).detach()

    def build_targets(self, p, targets, imgs):
        indices, anch = self.find_3_positive(p, targets)
        nl = len(p)
        matching = {k: [[] for _ in p] for k in ("b", "a", "gj", "gi", "targets", "anchors")}
        for batch_idx in range(p[0].shape[0]):
            this_target = targets[targets[:, 0] == batch_idx]
            if this_target.shape[0] == 0:
                continue
            txyxy = xywh2xyxy(this_target[:, 2:6] * imgs[batch_idx].shape[1])
            pxyxys, p_cls, p_obj, from_which_layer = [], [], [], []
            all_b, all_a, all_gj, all_gi, all_anch = [], [], [], [], []
            for i, pi in enumerate(p):
                b, a, gj, gi = indices[i]
                idx = b == batch_idx
                b, a, gj, gi = b[idx], a[idx], gj[idx], gi[idx]
                all_b.append(b)
                all_a.append(a)
                all_gj.append(gj)
                all_gi.append(gi)
                all_anch.append(anch[i][idx])
                from_which_layer.append(torch.ones(size=(len(b),)) * i)
                fg_pred = pi[b, a, gj, gi]
                p_obj.append(fg_pred[:, 4:5])
                p_cls.append(fg_pred[:, 5:])
                grid = torch.stack([gi, gj], dim=1)
                pxy = (fg_pred[:, :2].sigmoid() * 2. - 0.5 + grid) * self.stride[i]
                pwh = (fg_pred[:, 2:4].sigmoid() * 2) ** 2 * anch[i][idx] * self.stride[i]
                pxyxys.append(xywh2xyxy(torch.cat([pxy, pwh], dim=-1)))
            pxyxys = torch.cat(pxyxys, dim=0)
            if pxyxys.shape[0] == 0:
                continue
            p_obj = torch.cat(p_obj, dim=0)
            p_cls = torch.cat(p_cls, dim=0)
            from_which_layer = torch.cat(from_which_layer, dim=0)
            all_b, all_a = torch.cat(all_b, dim=0), torch.cat(all_a, dim=0)
            all_gj, all_gi = torch.cat(all_gj, dim=0), torch.cat(all_gi, dim=0)
            all_anch = torch.cat(all_anch, dim=0)

            pair_wise_iou = box_iou(txyxy, pxyxys)
            pair_wise_iou_loss = -torch.log(pair_wise_iou + 1e-8)
            top_k, _ = torch.topk(pair_wise_iou, min(10, pair_wise_iou.shape[1]), dim=1)
            dynamic_ks = torch.clamp(top_k.sum(1).int(), min=1)
            num_gt = this_target.shape[0]
            dtype = torch.get_default_dtype()  # upstream: .float()
            gt_cls_per_image = (F.one_hot(this_target[:, 1].to(torch.int64), self.nc).to(dtype)
                                .unsqueeze(1).repeat(1, pxyxys.shape[0], 1))
            cls_preds_ = (p_cls.to(dtype).unsqueeze(0).repeat(num_gt, 1, 1).sigmoid_()
                          * p_obj.unsqueeze(0).repeat(num_gt, 1, 1).sigmoid_())
            y = cls_preds_.sqrt_()
            pair_wise_cls_loss = F.binary_cross_entropy_with_logits(
                torch.log(y / (1 - y)), gt_cls_per_image, reduction="none").sum(-1)
            cost = pair_wise_cls_loss + 3.0 * pair_wise_iou_loss

            matching_matrix = torch.zeros_like(cost)
            for gt_idx in range(num_gt):
                pos_idx = self.lowest(cost[gt_idx], dynamic_ks[gt_idx].item())
                matching_matrix[gt_idx][pos_idx] = 1.0
            anchor_matching_gt = matching_matrix.sum(0)
            keys = torch.stack([from_which_layer.long(), all_b, all_a, all_gj, all_gi], 1).tolist()
            self.decisions.append({"top_iou_sums": top_k.sum(1).detach(), "ks": dynamic_ks.tolist(),
                                   "keys": keys, "cost": cost.detach(),
                                   "contested": (anchor_matching_gt > 1).nonzero().flatten().tolist()})
            if (anchor_matching_gt > 1).sum() > 0:
                _, cost_argmin = torch.min(cost[:, anchor_matching_gt > 1], dim=0)
                matching_matrix[:, anchor_matching_gt > 1] *= 0.0
                matching_matrix[cost_argmin, anchor_matching_gt > 1] = 1.0
            fg_mask_inboxes = matching_matrix.sum(0) > 0.0
            matched_gt_inds = matching_matrix[:, fg_mask_inboxes].argmax(0)
            from_which_layer = from_which_layer[fg_mask_inboxes]
            chosen = {"b": all_b, "a": all_a, "gj": all_gj, "gi": all_gi, "anchors": all_anch}
            this_target = this_target[matched_gt_inds]
            for i in range(nl):
                layer_idx = from_which_layer == i
                for k, v in chosen.items():
                    matching[k][i].append(v[fg_mask_inboxes][layer_idx])
                matching["targets"][i].append(this_target[layer_idx])
        for k, levels in matching.items():
            for i in range(nl):
                levels[i] = torch.cat(levels[i], dim=0) if levels[i] else torch.tensor([], dtype=torch.int64)
        m = matching
        return m["b"], m["a"], m["gj"], m["gi"], m["targets"], m["anchors"]

    def find_3_positive(self, p, targets):
        na, nt = self.na, targets.shape[0]
        indices, anch = [], []
        gain = torch.ones(7).long()
        ai = torch.arange(na).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.repeat(na, 1, 1), ai[:, :, None]), 2)
        g = 0.5
        off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]]).float() * g
        for i in range(self.nl):
            anchors = self.anchors[i]
            gain[2:6] = torch.tensor(p[i].shape)[[3, 2, 3, 2]]
            t = targets * gain
            if nt:
                r = t[:, :, 4:6] / anchors[:, None]
                j = torch.max(r, 1. / r).max(2)[0] < self.hyp["anchor_t"]
                t = t[j]
                gxy = t[:, 2:4]
                gxi = gain[[2, 3]] - gxy
                j, k = ((gxy % 1. < g) & (gxy > 1.)).T
                l, m = ((gxi % 1. < g) & (gxi > 1.)).T
                j = torch.stack((torch.ones_like(j), j, k, l, m))
                t = t.repeat((5, 1, 1))[j]
                offsets = (torch.zeros_like(gxy)[None] + off[:, None])[j]
            else:
                t = targets[0]
                offsets = 0
            b = t[:, 0].long()
            gxy = t[:, 2:4]
            gij = (gxy - offsets).long()
            gi, gj = gij.T
            a = t[:, 6].long()
            indices.append((b, a, gj.clamp_(0, gain[3] - 1), gi.clamp_(0, gain[2] - 1)))
            anch.append(anchors[a])
        return indices, anch


def scaled(hyp, nl, nc, imgsz):
    """train.py's scaling of the loss gains."""
    h = dict(hyp)
    h["box"] *= 3 / nl
    h["cls"] *= nc / 80 * 3 / nl
    h["obj"] *= (imgsz / 640) ** 2 * 3 / nl
    return h


def anchors_in_stride_units():
    """yolov7's default anchors scaled to the 64 px input, in stride units (as Detect holds them)."""
    return torch.tensor(ANCHORS_640, dtype=torch.float32) * (IMGSZ / 640) / torch.tensor(STRIDES)[:, None, None]


def run(nc, anchors, hyp, preds, targets, dtype, ciou=yolov7_ciou, lowest=torch_lowest):
    """Loss, components, gradients, positives and the assignment's decisions in `dtype`."""
    torch.set_default_dtype(dtype)  # the loss's accumulators and constants follow it
    try:
        loss_fn = ComputeLossOTA(nc, anchors.to(dtype), torch.tensor(STRIDES), hyp, ciou, lowest)
        p = [x.to(dtype).clone().requires_grad_(True) for x in preds]
        imgs = torch.zeros(BATCH, 3, IMGSZ, IMGSZ)  # ComputeLossOTA reads only their size
        total, items = loss_fn(p, targets.to(dtype), imgs)
        total.sum().backward()
        decisions = list(loss_fn.decisions)
        b, a, gj, gi, matched, _ = loss_fn.build_targets(p, targets.to(dtype), imgs)
        positives = []
        for i, pi in enumerate(p):
            tbox = matched[i][:, 2:6] * torch.tensor(pi.shape)[[3, 2, 3, 2]] if len(b[i]) else torch.zeros(0, 4)
            if len(b[i]):
                tbox[:, :2] -= torch.stack([gi[i], gj[i]], dim=1)
            cells = torch.stack([b[i], a[i], gj[i], gi[i], matched[i][:, 1].long()], 1) if len(b[i]) else torch.zeros(0, 5)
            positives.append({"cells": cells.long().tolist(), "tbox": tbox.tolist()})
        foreign = foreign_matches(loss_fn, p, b, a, gj, gi, matched)
        return {"loss": total.item(), "items": items[:3].tolist(), "grads": [x.grad for x in p],
                "positives": positives, "decisions": decisions, "foreign": foreign}
    finally:
        torch.set_default_dtype(torch.float32)


def foreign_matches(loss_fn, p, b, a, gj, gi, matched):
    """How many positives regress a target that did not propose them (find_3_positive of
    that target alone does not reach their anchor and cell)."""
    count = 0
    for i in range(len(p)):
        for row in range(len(b[i])):
            _, own_a, own_gj, own_gi = loss_fn.find_3_positive(p, matched[i][row][None])[0][i]
            own = set(zip(own_a.tolist(), own_gj.tolist(), own_gi.tolist()))
            count += (a[i][row].item(), gj[i][row].item(), gi[i][row].item()) not in own
    return count


def check_margins(name, decisions):
    """Every decision clears MARGIN, so that rounding in another f32 implementation cannot flip it."""
    for d in decisions:
        for s in d["top_iou_sums"].tolist():
            # k = max(1, trunc(s)): only an integer >= 2 is a border.
            assert s < 2 - MARGIN or abs(s - round(s)) > MARGIN, f"{name}: top-10 IoU sum {s} is on an integer"
        for row, k in zip(d["cost"], d["ks"]):
            ordered, order = row.sort(stable=True)
            if k < len(ordered):
                duplicates = d["keys"][order[k]] == d["keys"][order[k - 1]] and ordered[k] == ordered[k - 1]
                assert duplicates or ordered[k] - ordered[k - 1] > MARGIN, f"{name}: costs {ordered[k - 1]} and {ordered[k]} tie at k = {k}"
        for column in d["contested"]:
            ordered = d["cost"][:, column].sort().values
            assert ordered[1] - ordered[0] > MARGIN, f"{name}: contested candidate {column}'s two cheapest targets tie"


def same_positives(a, b, in_order=True):
    """Whether two runs' positives agree (as multisets unless `in_order`)."""
    def rows(level):
        r = [c + t for c, t in zip(level["cells"], level["tbox"])]
        return r if in_order else sorted(r)
    return all(len(x["cells"]) == len(y["cells"]) and torch.allclose(torch.tensor(rows(x)), torch.tensor(rows(y)), atol=1e-5)
               for x, y in zip(a, b))


def case(name, nc, hyp_changes, preds, store):
    hyp = dict(BASE_HYP, **hyp_changes)
    h = scaled(hyp, len(STRIDES), nc, IMGSZ)
    anchors = anchors_in_stride_units()
    targets = torch.tensor(TARGETS, dtype=torch.float32)
    if nc == 1:
        targets[:, 1] = 0
    r64 = run(nc, anchors, h, preds, targets, torch.float64)
    first64 = run(nc, anchors, h, preds, targets, torch.float64, lowest=first_lowest)
    first32 = run(nc, anchors, h, preds, targets, torch.float32, lowest=first_lowest)
    ultralytics = run(nc, anchors, h, preds, targets, torch.float64, ultralytics_ciou)
    assert same_positives(first32["positives"], first64["positives"]), f"{name}: float32 and float64 pick different positives"
    assert same_positives(r64["positives"], first64["positives"], in_order=False), f"{name}: topk's choice among equal costs matters"
    assert abs(r64["loss"] - first64["loss"]) <= 1e-12 and all(torch.allclose(g, f, rtol=0, atol=1e-12) for g, f in zip(r64["grads"], first64["grads"])), \
        f"{name}: topk's choice among equal costs changes the loss"
    check_margins(name, first32["decisions"])
    check_margins(name, first64["decisions"])
    loss = r64["loss"]
    r32 = first32
    assert abs(r32["loss"] - loss) <= 1e-5 * (1 + abs(loss)), f"{name}: float32 {r32['loss']} vs float64 {loss}"
    assert abs(ultralytics["loss"] - loss) <= 1e-6 * (1 + abs(loss)), f"{name}: ultralytics' CIoU moves the loss to {ultralytics['loss']}"
    for i, g in enumerate(r64["grads"]):
        store[f"grad.{name}.{i}"] = g.float().contiguous()
    ks = [k for d in r64["decisions"] for k in d["ks"]]
    contested = sum(len(d["contested"]) for d in r64["decisions"])
    print(f"{name}: loss {loss:.6f} (box, obj, cls) {[round(x, 6) for x in r64['items']]}, "
          f"positives per level {[len(level['cells']) for level in r64['positives']]}, dynamic k {ks}, "
          f"contested {contested}, foreign {r64['foreign']}, "
          f"|ultralytics' CIoU - yolov7's| on the loss {abs(ultralytics['loss'] - loss):.2e}")
    return {
        "name": name,
        "nc": nc,
        "preds": f"nc{nc}",
        "imgsz": IMGSZ,
        "strides": STRIDES,
        "anchors": anchors.tolist(),
        "hyp": hyp,
        "scaled_hyp": h,
        "targets": targets.tolist(),
        "loss": loss,
        "items": r64["items"],
        "positives": first64["positives"],
        "coverage": {"dynamic_k": ks, "contested": contested, "foreign": r64["foreign"]},
    }


def random_preds(nc):
    """Random raw maps, where the candidates of the competing targets (image 0's first three)
    are made to predict their boxes roughly, so that those targets get IoUs that add up to k > 1."""
    torch.set_default_dtype(torch.float32)
    preds = [torch.randn(BATCH, len(ANCHORS_640[0]), IMGSZ // int(s), IMGSZ // int(s), nc + 5) * 1.5 for s in STRIDES]
    loss_fn = ComputeLossOTA(nc, anchors_in_stride_units(), torch.tensor(STRIDES), BASE_HYP)
    logit = lambda p: torch.logit(p.clamp(0.02, 0.98))  # noqa: E731
    for row in TARGETS[:3]:
        target = torch.tensor([row])
        indices, anch = loss_fn.find_3_positive(preds, target)
        for pi, (b, a, gj, gi), anchors in zip(preds, indices, anch):
            gain = torch.tensor(pi.shape)[[3, 2]]
            gxy, gwh = target[:, 2:4] * gain, target[:, 4:6] * gain
            xy = (gxy - torch.stack([gi, gj], 1) + 0.5) / 2  # the sigmoid that decodes to the centre
            wh = (gwh / anchors).sqrt() / 2  # ... and to the size
            pi[b, a, gj, gi, :4] = logit(torch.cat([xy, wh], 1)) + 0.3 * torch.randn(len(b), 4)
    return preds


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    preds3 = random_preds(3)
    preds1 = random_preds(1)
    store = {f"preds.nc3.{i}": p.contiguous() for i, p in enumerate(preds3)}
    store.update({f"preds.nc1.{i}": p.contiguous() for i, p in enumerate(preds1)})
    cases = [
        case("default", 3, {}, preds3, store),
        case("variants", 3, {"label_smoothing": 0.1, "fl_gamma": 1.5, "cls_pw": 1.7, "obj_pw": 0.6, "anchor_t": 3.5}, preds3, store),
        case("nc1", 1, {}, preds1, store),
    ]
    coverage = cases[0]["coverage"]
    assert coverage["contested"] > 0 and coverage["foreign"] > 0 and max(coverage["dynamic_k"]) > 1, \
        f"the default case no longer exercises contested candidates, foreign matches and k > 1: {coverage}"
    with open(os.path.join(OUT, "ota.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
    save_file(store, os.path.join(OUT, "ota.safetensors"))


if __name__ == "__main__":
    main()

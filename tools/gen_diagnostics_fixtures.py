#!/usr/bin/env python3
"""Golden fixtures for the activation diagnostics (`actyolo::act::probe::measure`), from
PyTorch: for a pre-activation z of shape (2, 6, 5, 5) (seeded normal, channel 1 shifted
down by 8, channel 4 up by 8) and each activation f:

  - limits      f(-1e4) and f(1e4), each where f is flat there (|f'| < 1e-6) and finite
                below 1e3 in magnitude, else none
  - dead        the fraction of channels whose output is <= max(0, lower limit) everywhere
  - saturated   the fraction of outputs within 0.01 * max(1, |limit|) of a limit where
                |f'(z)| < 0.01 (f' by autograd in float64)
  - mean, std   of z, population std

Writes tests/fixtures/diagnostics.json.

Rerun (from the repository root), in the reference environment (torch 2.x):
    /tmp/ref/bin/python tools/gen_diagnostics_fixtures.py
"""

import json
import os

import torch
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "diagnostics.json")

ACTS = {
    "nn.ReLU()": nn.ReLU(),
    "nn.SiLU()": nn.SiLU(),
    "nn.Sigmoid()": nn.Sigmoid(),
    "nn.Tanh()": nn.Tanh(),
    "nn.Hardtanh()": nn.Hardtanh(),
    "nn.ReLU6()": nn.ReLU6(),
    "nn.ELU()": nn.ELU(),
    "nn.LeakyReLU(0.1)": nn.LeakyReLU(0.1),
    "nn.Hardsigmoid()": nn.Hardsigmoid(),
}


def slope(f, x):
    x = x.detach().double().requires_grad_(True)
    f(x).sum().backward()
    return x.grad


def limit(f, at):
    x = torch.tensor([at], dtype=torch.float64)
    value = f(x).item()
    flat = abs(slope(f, x).item()) < 1e-6
    return value if flat and abs(value) < 1e3 else None


def main():
    torch.manual_seed(0)
    z = torch.randn(2, 6, 5, 5) * 2.0
    z[:, 1] -= 8.0
    z[:, 4] += 8.0
    cases = []
    for name, f in ACTS.items():
        y = f(z)
        lower, upper = limit(f, -1e4), limit(f, 1e4)
        level = max(0.0, lower) if lower is not None else 0.0
        dead = (y.amax(dim=(0, 2, 3)) <= level).float().mean().item()
        near = torch.zeros_like(y, dtype=torch.bool)
        for lim in (lower, upper):
            if lim is not None:
                near |= (y.double() - lim).abs() <= 0.01 * max(1.0, abs(lim))
        flat = slope(f, z).abs() < 0.01
        saturated = (near & flat).float().mean().item()
        cases.append(
            {
                "act": name,
                "lower": lower,
                "upper": upper,
                "dead": dead,
                "saturated": saturated,
                "mean": z.double().mean().item(),
                "std": z.double().std(unbiased=False).item(),
            }
        )
    with open(OUT, "w") as f:
        json.dump({"shape": list(z.shape), "z": z.flatten().tolist(), "cases": cases}, f, indent=1)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()

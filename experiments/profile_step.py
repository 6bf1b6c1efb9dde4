"""Where the time of one training step goes, by operator (torch.profiler, self CPU time).

    python experiments/profile_step.py [--variants bayes:feedback,bayes:rrr,det:rrr] [--steps 20] [--threads 1]
                                       [--table 25]

The steps are those of ``benchmark_modes.py`` (exact training steps on real Decoy MNIST batches),
plus ``torch:none`` and ``torch:feedback``: the hand-written objective in plain PyTorch
(``pyro_ebnn.bnn.negative_elbo``, the reference of ``benchmark_step.py``) with torch Adam.
Per variant: ms per step, and the share of the profiled self time of the operator groups that
dominate a LeNet step on the CPU (convolutions and their backward, max pooling, the Gaussian noise
draws of the LRT, matrix products, the optimizer) and of everything else.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import profile

from benchmark_modes import CONFIG, TRAIN_SIZE, load_batches, make_step
from pyro_ebnn.bnn import negative_elbo
from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config

GROUPS = {
    "convolution (fwd + bwd)": ("convolution", "conv2d"),
    "max pool (fwd + bwd)": ("max_pool2d", "MaxPool2x2", "aten::maximum", "aten::gt", "aten::logical_"),
    "noise draws (normal_)": ("aten::normal_",),
    "matmul (fwd + bwd)": ("aten::mm", "aten::addmm", "aten::bmm"),
    "optimizer (Adam)": ("Optimizer.step", "_foreach_", "adam"),
}


def group_of(name: str) -> str:
    for group, keys in GROUPS.items():
        if any(k in name for k in keys):
            return group
    return "other (elementwise, Pyro, autograd)"


def reference_step(variant: str, device, seed: int = 0):
    """``torch:none`` / ``torch:feedback``: the plain PyTorch step of the same objective."""
    mode = variant.split(":")[1]
    torch.manual_seed(seed)
    cfg = load_config(CONFIG, {"mode": "none"})
    net = build_model(cfg, (1, 28, 28), 10).net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)

    def step(x, y, m):
        opt.zero_grad(set_to_none=True)
        loss = negative_elbo(net, x, y, TRAIN_SIZE, m if mode == "feedback" else None, cfg.lam)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="bayes:none,bayes:feedback,bayes:rrr,det:none,det:rrr")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--table", type=int, default=0, help="also print the N operators with the most self time")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device("cpu")
    batches = load_batches(a.batch, a.steps, device)
    print(f"self CPU time per step by operator group, LeNet, batch {a.batch}, {a.threads} thread(s), {len(batches)} steps")
    for variant in a.variants.split(","):
        step = reference_step(variant, device) if variant.startswith("torch:") else make_step(variant, device)
        for b in batches[:3]:
            step(*b)
        t = time.perf_counter()
        for b in batches:
            step(*b)
        wall = (time.perf_counter() - t) / len(batches) * 1000
        with profile() as prof:
            for b in batches:
                step(*b)
        totals: dict[str, float] = {}
        for e in prof.key_averages():
            g = group_of(e.key)
            totals[g] = totals.get(g, 0.0) + e.self_cpu_time_total
        total = sum(totals.values())
        parts = ", ".join(f"{g} {100 * v / total:.0f}%" for g, v in sorted(totals.items(), key=lambda kv: -kv[1]))
        print(f"  {variant:15s} {wall:6.2f} ms/step (unprofiled): {parts}")
        if a.table:
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.table))


if __name__ == "__main__":
    main()

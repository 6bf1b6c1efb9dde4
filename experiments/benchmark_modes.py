"""Cost of one training step of every mode, against the plain Bayesian step without feedback.

    python experiments/benchmark_modes.py [--batch 128] [--threads 2] [--repeats 100] [--rounds 5]
                                          [--device cpu|cuda] [--variants bayes:none,det:rrr,...]

Variants: the Bayesian model (the negative ELBO through TraceMeanField_ELBO, Adam, validation
off: the step of ``train``) in every mode (none, feedback, augment and the penalties); and the
deterministic LeNet (``network: deterministic``: plain PyTorch loss, the same training loop) in
every mode but feedback, i.e. each penalty in its own paper's setting. Every variant
runs the same number of steps per epoch, so the step-time ratios are the epoch-time ratios. LeNet, real Decoy MNIST batches (config decoy_mnist_rrr.yaml, masks
kept on mask_fraction of the images as in training), penalty weights at their defaults.

Time: median over rounds of the mean time per step, the variants interleaved within each round.
Peak memory of a step (tensors only): on CUDA, torch.cuda.max_memory_allocated above what was
allocated before the step; on CPU, the peak of the "Total Allocated" counter of PyTorch's CPU
allocator during one profiled step (torch.profiler with profile_memory=True; the counter starts at
0 with the profiler, so it is the step's own high-water mark). tracemalloc does not see PyTorch's
allocator, and getrusage / RSS deltas read 0 here because a step reuses heap pages that the data
loading already touched, so neither can measure a step on CPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import pyro
import torch

from pyro_ebnn.baselines import replace_with_noise
from pyro_ebnn.data import keep_fraction_of_masks, load_dataset
from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.training import Trainer

BAYES = ("none", "feedback", "augment", "rrr", "l1grad", "cdep", "eg", "rrr_gradcam", "hint", "rbr")
DET = ("none", "augment", "rrr", "l1grad", "cdep", "eg", "rrr_gradcam", "hint", "rbr")
ALL = [f"bayes:{m}" for m in BAYES] + [f"det:{m}" for m in DET]
REFERENCE = "bayes:none"
CONFIG = "configs/decoy_mnist_rrr.yaml"
TRAIN_SIZE = 40000  # the size of a [000] training fold: sets the N/B scale only


def make_step(variant: str, device, seed: int = 0):
    """A closure ``step(x, y, mask) -> loss`` for one variant."""
    kind, mode = variant.split(":")
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    network = "deterministic" if kind == "det" else "bayesian"
    cfg = load_config(CONFIG, {"mode": mode, "network": network})
    model = build_model(cfg, (1, 28, 28), 10)
    model.net.to(device)
    trainer = Trainer(cfg, model, cfg.lr, device)  # exactly the step of `python -m pyro_ebnn.run train`

    def step(x, y, m):
        if mode == "augment":
            x, m = replace_with_noise(x, m, gen), None
        elif mode == "none":
            m = None
        return trainer.step(x, y, m, TRAIN_SIZE)
    return step


def load_batches(batch: int, count: int, device, seed: int = 0):
    cfg = load_config(CONFIG, {"max_train_images": max(batch * count, batch)})
    trainval, _ = load_dataset(cfg)
    masks = trainval.masks & keep_fraction_of_masks(len(trainval), cfg.mask_fraction, seed + 17).view(-1, 1, 1, 1)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(trainval), generator=g)
    out = []
    for s in range(0, len(perm) - batch + 1, batch):
        i = perm[s:s + batch]
        out.append((trainval.images[i].to(device), trainval.labels[i].to(device), masks[i].to(device)))
    return out


def cycle(batches):
    while True:
        yield from batches


def time_variants(variants, batches, device, rounds: int, repeats: int, warmup: int):
    steps = {v: make_step(v, device) for v in variants}
    data = cycle(batches)
    times = {v: [] for v in variants}
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for v, step in steps.items():
            for _ in range(warmup):
                step(*next(data))
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(per_round):
                loss = step(*next(data))
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[v].append((time.perf_counter() - t0) / per_round * 1e3)
            if loss != loss:
                raise RuntimeError(f"{v}: the loss is NaN")
    return {v: statistics.median(t) for v, t in times.items()}, times


def cuda_peak_mb(variant, batches, device, steps: int = 3):
    step = make_step(variant, device)
    data = cycle(batches)
    step(*next(data))  # first step: optimizer state, cuDNN plans
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps):
        step(*next(data))
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20


def cpu_peak_mb(variant, batches, steps: int = 2):
    """High-water mark of PyTorch's CPU allocations during one step (after ``steps`` warm-up steps)."""
    from torch.profiler import ProfilerActivity, profile
    step = make_step(variant, torch.device("cpu"))
    data = cycle(batches)
    for _ in range(steps):
        step(*next(data))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(*next(data))
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/trace.json"
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0]
    return max(totals, default=0) / 2 ** 20


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=100, help="timed steps per variant (over all rounds)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per variant and round")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in ALL]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {','.join(ALL)}")
    if REFERENCE not in variants:
        variants.insert(0, REFERENCE)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batches = load_batches(args.batch, 16, device)
    med, raw = time_variants(variants, batches, device, args.rounds, args.repeats, args.warmup)

    peak = {}
    if not args.no_memory:
        if device.type == "cuda":
            peak = {v: cuda_peak_mb(v, batches, device) for v in variants}
        else:
            peak = {v: cpu_peak_mb(v, batches) for v in variants}

    ref_t, ref_m = med[REFERENCE], peak.get(REFERENCE)
    print(f"per training step, LeNet, batch {args.batch}, {args.device}, {args.threads} threads; "
          f"median of {args.rounds} rounds x {max(1, args.repeats // args.rounds)} steps; ratios to {REFERENCE}")
    print(f"  {'variant':16s} {'ms/step':>9s} {'x time':>7s} {'peak MB':>9s} {'x mem':>7s}")
    for v in variants:
        mem = peak.get(v)
        mem_s = f"{mem:9.1f}" if mem is not None else f"{'-':>9s}"
        ratio_m = f"{mem / ref_m:7.2f}" if mem is not None and ref_m else f"{'-':>7s}"
        print(f"  {v:16s} {med[v]:9.2f} {med[v] / ref_t:7.2f} {mem_s} {ratio_m}")
    result = {
        "ms_per_step": med, "time_over_reference": {v: med[v] / ref_t for v in variants},
        "peak_mb": peak, "peak_over_reference": {v: peak[v] / ref_m for v in peak} if ref_m else {},
        "rounds_ms": raw, "reference": REFERENCE,
        "setup": {"batch": args.batch, "threads": args.threads, "device": args.device, "rounds": args.rounds,
                  "repeats": args.repeats, "warmup": args.warmup, "config": CONFIG,
                  "memory": "cuda max_memory_allocated" if device.type == "cuda" else "profiler CPU Total Allocated peak",
                  "torch": torch.__version__, "pyro": pyro.__version__},
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

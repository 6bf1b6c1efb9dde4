"""Time of the posterior predictive (pyro_ebnn.bnn.predictive_probs) per chunking of the images.

    python experiments/benchmark_predictive.py [--images 2000] [--samples 10] [--threads 1] [--rounds 3]

Each pass of Predictive draws ``sample_batch`` samples for ``batch_size`` images, so a pass holds
batch_size x sample_batch LRT forwards. LeNet (config decoy_mnist_rrr.yaml, its initial weights: the
time does not depend on their values), random 28 x 28 images; the chunkings are interleaved within
each round and the median over rounds is printed.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.bnn import predictive_probs

CHUNKS = ((1000, 10), (500, 10), (256, 10), (128, 10), (64, 10))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bnn = build_model(load_config("configs/decoy_mnist_rrr.yaml"), (1, 28, 28), 10)
    x = torch.rand(args.images, 1, 28, 28)
    times = {c: [] for c in CHUNKS}
    predictive_probs(bnn, x[:256], args.samples)  # warm-up
    for _ in range(args.rounds):
        for batch, sample_batch in CHUNKS:
            t0 = time.perf_counter()
            predictive_probs(bnn, x, args.samples, batch_size=batch, sample_batch=sample_batch)
            times[(batch, sample_batch)].append(time.perf_counter() - t0)
    print(f"posterior predictive, LeNet, {args.images} images x {args.samples} samples, {args.threads} thread(s); "
          f"median of {args.rounds} rounds")
    ref = statistics.median(times[CHUNKS[0]])
    for (batch, sample_batch), t in times.items():
        m = statistics.median(t)
        print(f"  batch {batch:5d} x {sample_batch:2d} samples per pass: {m:6.2f} s  ({ref / m:4.2f}x the speed of 1000 x 10)")


if __name__ == "__main__":
    main()

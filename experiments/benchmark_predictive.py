"""Speed of the posterior predictive and of validation, in images per second.

    python experiments/benchmark_predictive.py [--images 2000] [--samples 10] [--threads 1] [--rounds 3]
                                               [--clock cpu|wall] [--device cpu|cuda] [--json FILE]

Three ways, interleaved within each round (median over rounds; by default the CPU time of the
process, which at one thread leaves out the time it waits for a core on a machine shared with
other work; use the wall clock with more threads):
  Predictive        ``pyro.infer.Predictive(model, guide, parallel=True)`` on 128 images and 10
                    samples per call (what predictive_probs ran before);
  predictive_probs  pyro_ebnn.bnn.predictive_probs: all S samples of ``batch`` images in one pass
                    (FeedbackBNN.predictive_logits), for several batch sizes;
  mean_probs        the posterior-mean network (validation), for several batch sizes.
LeNet (config decoy_mnist_position.yaml, its initial weights: the time does not depend on their
values), random 28 x 28 images. ``--device cuda``: the network and the images on the GPU, the wall
clock read after ``torch.cuda.synchronize()``; ``--json`` writes the images per second of every way
with the device's name.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from pyro.infer import Predictive

from pyro_ebnn.bnn import LOGITS_SITE, mean_probs, predictive_probs
from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config
from benchmark_step import cpu_name

BATCHES = (16, 32, 64, 128, 256)
MEAN_BATCHES = (256, 512, 2000)


@torch.no_grad()
def predictive_by_pyro(bnn, images, num_samples, batch_size=128, sample_batch=10):
    """S x N x K probabilities through ``pyro.infer.Predictive``, ``sample_batch`` samples per call."""
    bnn.net.train()
    out = []
    for start in range(0, len(images), batch_size):
        x, parts, left = images[start:start + batch_size], [], num_samples
        while left > 0:
            s = min(sample_batch, left)
            pred = Predictive(bnn.model, guide=bnn.guide, num_samples=s, parallel=True, return_sites=[LOGITS_SITE])(x)
            parts.append(pred[LOGITS_SITE].reshape(s, len(x), -1).softmax(-1))
            left -= s
        out.append(torch.cat(parts))
    return torch.cat(out, dim=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clock", choices=("cpu", "wall"), default=None,
                    help="default: cpu on the CPU, wall (after a synchronize) on CUDA")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible; use --device cpu")
    if args.device == "cuda" and args.clock == "cpu":
        ap.error("--clock cpu does not see the GPU's work; use --clock wall with --device cuda")
    args.clock = args.clock or ("wall" if args.device == "cuda" else "cpu")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bnn = build_model(load_config("configs/decoy_mnist_position.yaml"), (1, 28, 28), 10)
    bnn.net.to(device)
    x = torch.rand(args.images, 1, 28, 28, device=device)
    ways = {"Predictive, 128 images x 10 samples per call": lambda: predictive_by_pyro(bnn, x, args.samples)}
    ways.update({f"predictive_probs, batch {b:4d} ({b * args.samples} draws per pass)":
                 (lambda b=b: predictive_probs(bnn, x, args.samples, batch_size=b)) for b in BATCHES})
    ways.update({f"mean_probs, batch {b:4d}": (lambda b=b: mean_probs(bnn, x, batch_size=b)) for b in MEAN_BATCHES})
    for way in ways.values():  # warm-up
        way()
    def clock():
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.process_time() if args.clock == "cpu" else time.perf_counter()
    times = {k: [] for k in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            t0 = clock()
            way()
            times[name].append(clock() - t0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    rates = {k: args.images / statistics.median(t) for k, t in times.items()}
    print(f"LeNet, {args.images} images, {args.samples} posterior samples, {args.threads} thread(s), {name}; "
          f"images/s, median of {args.rounds} rounds ({args.clock} clock)")
    for way, rate in rates.items():
        print(f"  {way:55s} {rate:8.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images_per_second": rates, "setup": {**vars(args), "device": name, "device_type": device.type,
                                                             "torch": torch.__version__}}, f, indent=2)


if __name__ == "__main__":
    main()

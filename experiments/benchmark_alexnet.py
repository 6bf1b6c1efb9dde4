"""AlexNet at 224 pixels on this machine: the training step of the Pyro model against a plain
PyTorch step of the same LRT objective, and images per second of the posterior predictive and of
Grad-CAM.

    python experiments/benchmark_alexnet.py [--batch 16] [--threads 2] [--repeats 4] [--rounds 3]
                                            [--samples 20] [--images 32] [--json FILE]
                                            [--device cpu|cuda] [--steps eager,graph]

Three steps are interleaved in rounds in one run (medians reported): the Pyro step is the one
``train`` runs (``Trainer.step``: the negative ELBO through ``TraceMeanField_ELBO`` with feedback
evidence, the weights' closed-form KL as one factor site, Adam); "Pyro, weight sites" is the same
model with ``analytic_kl=False`` (every weight drawn and scored as a site); the plain step is the hand-derived objective of ``pyro_ebnn/bnn/objective.py``
(its own straightforward two-convolution LRT forward) with ``torch.optim.Adam``. [000]'s AlexNet
(torchvision layout, evidence on the last convolution, 256 x 13 x 13), ImageNet normalization in
front, 2 classes, random weights and images (the timing does not depend on them); a 60 x 60 mask
in one corner of every image. ``--device cuda`` runs everything on the GPU (the clock read after
``torch.cuda.synchronize()``); ``--steps eager,graph`` (CUDA) adds "pyro, graph", the Pyro step
captured whole as a CUDA graph (``step: graph``). The JSON records the device's name and training
images per second of every step (batch / seconds per step).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from pyro_ebnn.bnn import negative_elbo, predictive_probs
from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.steps import WARMUP_STEPS
from pyro_ebnn.experiment.training import Trainer
from pyro_ebnn.explain import explain
from benchmark_step import cpu_name

N = 20000  # the training-set size the data plate is scaled by


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=4, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=20, help="posterior predictive samples")
    ap.add_argument("--images", type=int, default=32, help="images for the predictive and Grad-CAM")
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--steps", default="eager", help="eager, or eager,graph (with --device cuda)")
    args = ap.parse_args()
    steps = [k.strip() for k in args.steps.split(",") if k.strip()]
    if set(steps) - {"eager", "graph"} or ("graph" in steps and args.device != "cuda"):
        ap.error(f"--steps takes eager and graph (with --device cuda); got {args.steps!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible; use --device cpu")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(None, {"architecture": "alexnet", "image_size": 224, "channels": 3, "normalize": "imagenet",
                             "rho_init": -3.8, "mode": "feedback", "lam": 1e-5, "lr": 1e-4, "batch_size": args.batch,
                             "step": "eager"})
    shape = (3, 224, 224)
    pyro_model, plain_model, sites_model = (build_model(cfg, shape, 2) for _ in range(3))
    for model in (pyro_model, plain_model, sites_model):
        model.net.to(device)
    sites_model.analytic_kl = False  # weight sites: every weight drawn and scored, the KL taken in closed form
    trainer = Trainer(cfg, pyro_model, cfg.lr, device)
    sites_trainer = Trainer(cfg, sites_model, cfg.lr, device)
    plain_net = plain_model.net.train()
    optimizer = torch.optim.Adam(plain_net.parameters(), lr=cfg.lr)
    x = torch.rand(args.batch, *shape, device=device)
    y = torch.randint(0, 2, (args.batch,), device=device)
    mask = torch.zeros(args.batch, 1, 224, 224, dtype=torch.bool, device=device)
    mask[:, :, :60, :60] = True

    def pyro_step():
        pyro_model.net.train()
        return trainer.step(x, y, mask, N)

    def sites_step():
        sites_model.net.train()
        return sites_trainer.step(x, y, mask, N)

    def plain_step():
        optimizer.zero_grad(set_to_none=True)
        loss = negative_elbo(plain_net, x, y, N, mask, cfg.lam)
        loss.backward()
        optimizer.step()
        return loss.item()

    variants = {"torch": plain_step, "pyro": pyro_step, "pyro, weight sites": sites_step}
    if "graph" in steps:
        graph_model = build_model(cfg, shape, 2)
        graph_model.net.to(device)
        graph_trainer = Trainer(dataclasses.replace(cfg, step="graph"), graph_model, cfg.lr, device)

        def graph_step():
            graph_model.net.train()
            return graph_trainer.step(x, y, mask, N)
        for _ in range(WARMUP_STEPS):  # the eager steps before the capture: not timed as the graph's
            graph_step()
        variants["pyro, graph"] = graph_step

    def clock():
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()
    times = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            step()  # warm-up
            t0 = clock()
            for _ in range(args.repeats):
                step()
            times[name].append((clock() - t0) / args.repeats)
    seconds = {k: statistics.median(v) for k, v in times.items()}
    images = torch.rand(args.images, *shape)
    labels = torch.randint(0, 2, (args.images,))
    predictive_probs(pyro_model, images[:2], args.samples)  # warm-up (cuDNN, allocator)
    t0 = clock()
    predictive_probs(pyro_model, images, args.samples)
    predictive = args.images / (clock() - t0)
    t0 = clock()
    explain(pyro_model.net, images, labels, "gradcam", progress=False)
    gradcam = args.images / (clock() - t0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    result = {"seconds_per_step": seconds, "pyro_over_torch": seconds["pyro"] / seconds["torch"],
              "weight_sites_over_pyro": seconds["pyro, weight sites"] / seconds["pyro"],
              "training_images_per_second": {k: args.batch / v for k, v in seconds.items()},
              "predictive_images_per_second": predictive, "gradcam_images_per_second": gradcam,
              "step_kind": {"pyro": trainer.step_kind,
                            **({"pyro, graph": graph_trainer.step_kind} if "graph" in steps else {})},
              "setup": {"batch": args.batch, "threads": args.threads, "samples": args.samples, "images": args.images,
                        "torch": torch.__version__, "device": name, "device_type": device.type, "steps": steps}}
    if "graph" in steps:
        result["graph_over_eager"] = seconds["pyro, graph"] / seconds["pyro"]
    print(f"AlexNet, 224 px, batch {args.batch}, {args.threads} threads, {name} (median of {args.rounds} rounds):")
    print(f"  s/step plain PyTorch LRT   {seconds['torch']:7.3f}")
    print(f"  s/step Pyro model          {seconds['pyro']:7.3f}")
    print(f"  s/step Pyro, weight sites  {seconds['pyro, weight sites']:7.3f}")
    if "graph" in steps:
        print(f"  s/step Pyro, graph         {seconds['pyro, graph']:7.3f}")
    print(f"  Pyro / PyTorch             {result['pyro_over_torch']:7.3f}")
    print("  training images/s          " + ", ".join(f"{k} {v:.1f}" for k, v in result["training_images_per_second"].items()))
    print(f"  posterior predictive       {predictive:7.2f} images/s ({args.samples} samples)")
    print(f"  Grad-CAM                   {gradcam:7.2f} images/s (posterior mean)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

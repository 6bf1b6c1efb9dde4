"""AlexNet at 224 pixels on this machine: the training step of the Pyro model against a plain
PyTorch step of the same LRT objective, and images per second of the posterior predictive and of
Grad-CAM.

    python experiments/benchmark_alexnet.py [--batch 16] [--threads 2] [--repeats 4] [--rounds 3]
                                            [--samples 20] [--images 32] [--json FILE]

Three steps are interleaved in rounds in one run (medians reported): the Pyro step is the one
``train`` runs (``Trainer.step``: the negative ELBO through ``TraceMeanField_ELBO`` with feedback
evidence, the weights' closed-form KL as one factor site, Adam); "Pyro, weight sites" is the same
model with ``analytic_kl=False`` (every weight drawn and scored as a site); the plain step is the hand-derived objective of ``pyro_ebnn/bnn/objective.py``
(its own straightforward two-convolution LRT forward) with ``torch.optim.Adam``. [000]'s AlexNet
(torchvision layout, evidence on the last convolution, 256 x 13 x 13), ImageNet normalization in
front, 2 classes, random weights and images (the timing does not depend on them); a 60 x 60 mask
in one corner of every image.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from pyro_ebnn.bnn import negative_elbo, predictive_probs
from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.training import Trainer
from pyro_ebnn.explain import explain

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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(None, {"architecture": "alexnet", "image_size": 224, "channels": 3, "normalize": "imagenet",
                             "rho_init": -3.8, "mode": "feedback", "lam": 1e-5, "lr": 1e-4})
    shape = (3, 224, 224)
    pyro_model, plain_model, sites_model = (build_model(cfg, shape, 2) for _ in range(3))
    sites_model.analytic_kl = False  # weight sites: every weight drawn and scored, the KL taken in closed form
    trainer = Trainer(cfg, pyro_model, cfg.lr, torch.device("cpu"))
    sites_trainer = Trainer(cfg, sites_model, cfg.lr, torch.device("cpu"))
    plain_net = plain_model.net.train()
    optimizer = torch.optim.Adam(plain_net.parameters(), lr=cfg.lr)
    x = torch.rand(args.batch, *shape)
    y = torch.randint(0, 2, (args.batch,))
    mask = torch.zeros(args.batch, 1, 224, 224, dtype=torch.bool)
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
    times = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            step()  # warm-up
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                step()
            times[name].append((time.perf_counter() - t0) / args.repeats)
    seconds = {k: statistics.median(v) for k, v in times.items()}
    images = torch.rand(args.images, *shape)
    labels = torch.randint(0, 2, (args.images,))
    t0 = time.perf_counter()
    predictive_probs(pyro_model, images, args.samples)
    predictive = args.images / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    explain(pyro_model.net, images, labels, "gradcam", progress=False)
    gradcam = args.images / (time.perf_counter() - t0)
    result = {"seconds_per_step": seconds, "pyro_over_torch": seconds["pyro"] / seconds["torch"],
              "weight_sites_over_pyro": seconds["pyro, weight sites"] / seconds["pyro"],
              "predictive_images_per_second": predictive, "gradcam_images_per_second": gradcam,
              "setup": {"batch": args.batch, "threads": args.threads, "samples": args.samples, "images": args.images,
                        "torch": torch.__version__}}
    print(f"AlexNet, 224 px, batch {args.batch}, {args.threads} threads (median of {args.rounds} rounds):")
    print(f"  s/step plain PyTorch LRT   {seconds['torch']:7.3f}")
    print(f"  s/step Pyro model          {seconds['pyro']:7.3f}")
    print(f"  s/step Pyro, weight sites  {seconds['pyro, weight sites']:7.3f}")
    print(f"  Pyro / PyTorch             {result['pyro_over_torch']:7.3f}")
    print(f"  posterior predictive       {predictive:7.2f} images/s ({args.samples} samples)")
    print(f"  Grad-CAM                   {gradcam:7.2f} images/s (posterior mean)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

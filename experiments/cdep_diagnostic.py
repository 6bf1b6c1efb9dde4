"""How a trained network meets the CDEP penalty: contextual decomposition of its logits on masked
test images into beta (from the masked pixels) and gamma (the rest).

    python experiments/cdep_diagnostic.py RUN_DIR [RUN_DIR ...] [--images 1000]

Per run: test accuracy of the full logits and of gamma alone, the CDEP penalty (mean over images
and classes of softmax([beta_c, gamma_c])[0]), the mean of beta and gamma, and the spread of beta
over the classes (how much the masked pixels still move one class against another). A penalty
near 0 with gamma far above beta and beta still spread over the classes means the penalty was met
by inflating gamma, not by ignoring the masked pixels.
"""
from __future__ import annotations

import argparse

import torch

from pyro_ebnn.baselines import cd_decompose, cdep_penalty
from pyro_ebnn.data import load_dataset
from pyro_ebnn.experiment.rundir import load_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--images", type=int, default=1000, help="first N test images (all carry a mask)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'run':60s} {'acc':>6s} {'acc(γ)':>7s} {'penalty':>8s} {'mean β':>7s} {'mean γ':>7s} {'sd_c β':>7s}")
    for run in args.runs:
        bnn, cfg, _ = load_model(run)
        _, tests = load_dataset(cfg)
        t = tests["test"]
        keep = t.masks.flatten(1).any(1).nonzero().squeeze(1)[: args.images]
        x, y, m = t.images[keep], t.labels[keep], t.masks[keep]
        with torch.no_grad():
            beta, gamma = cd_decompose(bnn.net, x, m)
            penalty = cdep_penalty(bnn.net, x, m).mean().item()
        acc = ((beta + gamma).argmax(1) == y).float().mean().item()
        acc_gamma = (gamma.argmax(1) == y).float().mean().item()
        print(f"{run:60s} {acc:6.3f} {acc_gamma:7.3f} {penalty:8.3f} {beta.mean():7.2f} {gamma.mean():7.2f} "
              f"{beta.std(1).mean():7.2f}")


if __name__ == "__main__":
    main()

"""How a network meets the feedback evidence: the scale of its evidence-layer pre-activations.

    python experiments/evidence_scale.py RUN_DIR [RUN_DIR ...] [--images 256] [--threads 1] [--seed 0]

Runs whose directories differ only in a trailing ``foldN`` form one row: mean ± std over the folds.

For each trained run (train or finetune output), on the first ``--images`` training images of its
fold that carry a mask: the median |mu_U| and sigma_U of the last convolution's LRT Gaussian in the
cells that the feedback conditions on zero (``mask_pool`` of the run's config) and in all other
cells, and the Frobenius norm of the mean weights of the first head layer. The moments are those
the evidence sees in training: the network in training mode, so the layers below the evidence
layer pass one LRT draw (seeded by ``--seed``, the same draw for every run). The evidence term
log N(0; mu_U, sigma_U^2) grows without bound as mu_U and sigma_U shrink, and a ReLU head can undo a
shrunken layer by larger weights: when the unmasked cells shrink as much as the masked ones and
the head grows, the evidence was met by rescaling the layer rather than by silencing the cells.

With ``--posterior-scales`` a second table gives the median posterior standard deviation
softplus(rho) of each Bayesian layer's weights (the noise that q(w) puts on the predictions).
"""
from __future__ import annotations

import argparse
import re
from collections import defaultdict

import torch

from pyro_ebnn.experiment.tables import mean_std
from pyro_ebnn.bnn import FeedbackEvidence
from pyro_ebnn.bnn import BayesianLayer
from pyro_ebnn.experiment.rundir import load_model
from pyro_ebnn.experiment.protocol import prepare_split


def scale_of(run_dir: str, images: int, seed: int = 0) -> dict:
    bnn, cfg, _ = load_model(run_dir, "cpu")
    bnn.net.train()  # as in training: the body below the evidence layer samples its activations
    cfg.mask_fraction = 1.0  # every training image keeps its mask here
    split = prepare_split(cfg)
    has_mask = split.train.masks.flatten(1).any(1)
    x, m = split.train.images[has_mask][:images], split.train.masks[has_mask][:images]
    evidence = FeedbackEvidence(pool=cfg.mask_pool)
    torch.manual_seed(seed)
    with torch.no_grad():
        mean, std = bnn.net.evidence_moments(x)
        cells = evidence.irrelevant_cells(m, mean, bnn.net)
    head = next(l for l in bnn.net.head.modules() if isinstance(l, BayesianLayer))
    return {"masked_mu": mean[cells].abs().median().item(), "masked_sigma": std[cells].median().item(),
            "other_mu": mean[~cells].abs().median().item(), "other_sigma": std[~cells].median().item(),
            "head_norm": head.weight_loc.norm().item(), "cells": cells.float().mean().item(),
            "posterior_sd": posterior_scales(bnn.net)}


def posterior_scales(net: torch.nn.Module) -> dict:
    """Median softplus(rho) of the weights, per Bayesian layer (by module name)."""
    return {name: torch.nn.functional.softplus(m.weight_rho).median().item()
            for name, m in net.named_modules() if isinstance(m, BayesianLayer)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed of the LRT draw below the evidence layer")
    p.add_argument("--posterior-scales", action="store_true", help="also the median posterior sd per layer")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    groups = defaultdict(list)
    for run in a.runs:
        groups[re.sub(r"/fold\d+/?$", "", run.rstrip("/"))].append(scale_of(run, a.images, a.seed))
    keys = ("masked_mu", "masked_sigma", "other_mu", "other_sigma", "head_norm")
    print("| runs | folds | masked |mu_U| | masked sigma_U | other |mu_U| | other sigma_U | head norm |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in groups.items():
        cells = [mean_std([r[k] for r in rows])[0] for k in keys]
        print(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    if a.posterior_scales:
        layers = list(dict.fromkeys(l for rows in groups.values() for r in rows for l in r["posterior_sd"]))
        print("\nmedian posterior sd softplus(rho) of the weights")
        print("| runs | folds | " + " | ".join(layers) + " |")
        print("|---|---|" + "---|" * len(layers))
        for name, rows in groups.items():
            cells = [mean_std([r["posterior_sd"][l] for r in rows])[0]
                     if all(l in r["posterior_sd"] for r in rows) else "n/a" for l in layers]
            print(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

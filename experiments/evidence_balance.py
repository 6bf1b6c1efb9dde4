"""How the three terms of the negative ELBO weigh against each other, epoch by epoch.

    python experiments/evidence_balance.py --config CONFIG [--set KEY=VALUE ...] [--epochs 3] [--images 256]

Builds the run a config describes (its fold, masks and lambda; ``lam: auto`` needs ``--set
lam=...``), and before training and after each of ``--epochs`` epochs evaluates on a fixed batch of
``--images`` masked training images, in the network's training mode (one LRT draw, seeded):

* ``kl``: KL(q(w) || P(w)), the weights' term of [000] Eq. (3);
* ``data``: N x the mean cross-entropy, the likelihood term for the whole training set (the head
  sees a_F = 0 on the masked cells, as in training);
* ``evidence``: N x lambda x the mean over images of -sum_F log N(0; mu_U, sigma_U^2), Eq. (4)'s
  explanation term, and its share ``evidence/data``;
* ``cells``: observed pre-activations per image; ``per_entry``: the mean -log N(0; mu_U, sigma_U^2)
  of one observed entry, about (mu_U / sigma_U)^2 / 2, which grows as sigma_U shrinks;
* ``val``: the validation score after the epoch.

Prints one line per epoch and, with ``--json``, writes them. The point: lambda multiplies a sum over
observed entries whose size depends on the image size, the marked area and 1 / sigma_U^2, so one
lambda weighs very differently on two data sets (docs/method.md, "Choosing lambda").
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import tempfile

import torch
import torch.nn.functional as F

from pyro_ebnn.bnn.objective import network_kl
from pyro_ebnn.data import in_memory
from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config, parse_sets
from pyro_ebnn.experiment.protocol import prepare_split, set_seed
from pyro_ebnn.experiment.training import Trainer


def terms(model, x, y, m, n_train: int, lam: float, prior_scale: float) -> dict:
    """The negative ELBO's terms on one batch (module docstring)."""
    net = model.net
    net.train()
    with torch.no_grad():
        mean, std = net.evidence_moments(x)
        cells = model.evidence.irrelevant_cells(m, mean, net)
        a = (mean + std * torch.randn_like(std)) * ~cells
        ce = F.cross_entropy(net.classify(a), y).item()
        neg_log = 0.5 * (mean / std) ** 2 + std.log() + 0.5 * math.log(2 * math.pi)
        per_image = (neg_log * cells).flatten(1).sum(1)
        observed = cells.flatten(1).sum(1).float()
        kl = network_kl(net, prior_scale).item()
    data, evidence = n_train * ce, n_train * lam * per_image.mean().item()
    return {"kl": kl, "data": data, "evidence": evidence, "evidence/data": evidence / data,
            "cells": observed.mean().item(), "per_entry": (per_image.sum() / observed.sum().clamp_min(1)).item()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load_config(a.config, {**parse_sets(a.sets), "mode": "feedback"})
    if cfg.lam == "auto":
        p.error("the config says lam: auto; pass --set lam=<number> to weigh one lambda")
    set_seed(cfg.seed)
    split = prepare_split(cfg)
    split.train, split.val = in_memory(split.train), in_memory(split.val)
    train = split.train
    masked = train.has_mask
    x, y, m = (t[masked][: a.images] for t in (train.images, train.labels, train.masks))
    model = build_model(cfg, train.image_shape, train.num_classes)
    trainer = Trainer(cfg, model, cfg.lr, torch.device("cpu"))
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for epoch in range(a.epochs + 1):
            if epoch:
                trainer.fit(split, epoch, Path(out), use_masks=True, progress=False)
            torch.manual_seed(cfg.seed)
            row = {"epoch": epoch, **terms(model, x, y, m, len(train), cfg.lam, cfg.prior_scale),
                   "val": trainer.history[-1].get(f"val_{cfg.select_metric}") if epoch else None}
            rows.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"config": cfg.to_dict(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

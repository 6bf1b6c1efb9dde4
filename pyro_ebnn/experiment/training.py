"""The training loop, shared by the Bayesian model and the point networks: minimize the model's
loss with Adam and an exponential learning-rate decay per epoch, validate, keep the best model,
checkpoint every epoch so that an interrupted run resumes exactly.

The Bayesian loss is Pyro's own ``elbo.differentiable_loss(model, guide, ...)`` (the negative ELBO
of [000] Eq. 3 with the Eq. 4 likelihood), stepped by a plain torch optimizer, the pattern Pyro
documents for custom training loops; a point network's loss is its cross-entropy plus penalty. A
step costs the same as ``pyro.infer.SVI.step`` with one optimizer over all parameters (measured
with ``experiments/benchmark_step.py``) and lets both kinds of model share this loop, its
checkpoints and its optimizer state.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from ..baselines import PointModel, replace_with_noise
from ..bnn import mean_probs
from ..data import Split
from ..errors import TrainingError
from ..metrics import classification_metrics
from .build import build_elbo
from .config import Config
from .rundir import CHECKPOINT, MODEL, atomic_write, save_model

__all__ = ["training_loss", "Trainer"]


def training_loss(cfg: Config, model) -> Callable:
    """``(x, y, mask, data_size) -> (loss to minimize, its value for the record)``: the negative ELBO
    (an estimate for the whole training set, through Pyro) of a Bayesian model; the mean cross-entropy
    plus penalty of a point model, recorded summed over the batch."""
    if isinstance(model, PointModel):
        def point_loss(x, y, mask, data_size):
            loss = model.loss(x, y, mask)
            return loss, loss.item() * len(x)
        return point_loss
    elbo = build_elbo(cfg)

    def negative_elbo(x, y, mask, data_size):
        with pyro.validation_enabled(False), model.for_torch_optimizer():  # inputs were validated on load
            loss = elbo.differentiable_loss(model.model, model.guide, x, y, mask, data_size=data_size)
        return loss, loss.item()
    return negative_elbo


def _fused_adam(device):
    """Adam's fused kernel (one for all parameters: 0.16 instead of 0.60 ms per LeNet step on the
    CPU, 4% of a step) where torch has it, CUDA and the CPU from torch 2.4; else torch's choice."""
    kind = torch.device(device).type
    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    return True if kind == "cuda" or (kind == "cpu" and version >= (2, 4)) else None


class Trainer:
    def __init__(self, cfg: Config, model, lr: float, device):
        self.cfg, self.model, self.device = cfg, model, device
        self.loss = training_loss(cfg, model)
        self.optimizer = torch.optim.Adam(model.net.parameters(), lr=lr, weight_decay=cfg.weight_decay,
                                          fused=_fused_adam(device))
        self.schedule = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, cfg.lr_decay)
        self.epoch, self.best_score, self.best_epoch, self.stale = 0, -math.inf, -1, 0
        self.checked_best = -math.inf  # the best score at the last end-of-epoch validation (patience)
        self.history = []

    def step(self, x, y, mask, data_size) -> float:
        """One gradient step on a batch; returns the loss for the record."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, value = self.loss(x, y, mask, data_size)
        loss.backward()
        self.optimizer.step()
        return value

    # checkpoint of everything needed to resume: network, optimizer, schedule, RNG, history
    def state(self):
        return {"net": self.model.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "epoch": self.epoch, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "stale": self.stale, "history": self.history,
                "checked_best": self.checked_best,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                "config": self.cfg.to_dict()}

    def load_state(self, st):
        self.model.net.load_state_dict(st["net"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.schedule.load_state_dict(st["schedule"])
        self.epoch, self.best_score, self.best_epoch = st["epoch"], st["best_score"], st["best_epoch"]
        self.stale, self.history, self.checked_best = st["stale"], st["history"], st["checked_best"]
        torch.set_rng_state(st["rng"]["torch"])
        np.random.set_state(st["rng"]["numpy"])
        if st["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["rng"]["cuda"])

    def fit(self, split: Split, epochs: int, out: Path, use_masks: bool, progress: bool = True,
            augment: bool = False):
        """``use_masks``: hand the feedback masks to the model (evidence or a loss penalty);
        ``augment``: counterexamples instead, masked pixels replaced by fresh U(0, 1) noise."""
        cfg, model = self.cfg, self.model
        train = split.train.to(self.device)
        n, bs = len(train), cfg.batch_size
        ckpt = out / CHECKPOINT
        bar = tqdm(total=epochs, initial=self.epoch, desc=f"{cfg.name} [{cfg.mode}]", unit="epoch",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        tty = progress and sys.stderr.isatty()
        while self.epoch < epochs:
            model.net.train()
            perm = torch.randperm(n, device=self.device)
            total, t0, within = 0.0, time.time(), []
            steps = range(0, n, bs)
            for step, start in enumerate(tqdm(steps, leave=False, disable=not tty, unit="batch", desc=f"epoch {self.epoch + 1}")):
                idx = perm[start:start + bs]
                mask = train.masks[idx] if use_masks else None
                x = replace_with_noise(train.images[idx], train.masks[idx]) if augment else train.images[idx]
                loss = self.step(x, train.labels[idx], mask, n)
                if not math.isfinite(loss):
                    bar.close()
                    raise TrainingError(
                        f"the loss became {loss} at epoch {self.epoch + 1}, step {step + 1}; lower the learning "
                        f"rate (--set lr={cfg.lr / 10:g}) or the initial scale (--set rho_init={cfg.rho_init - 1:g}), "
                        "and check the inputs; no results were written")
                total += loss
                if cfg.val_every_steps and split.val is not None and (step + 1) % cfg.val_every_steps == 0 \
                        and step + 1 < len(steps):
                    at = round(self.epoch + (step + 1) / len(steps), 3)
                    within.append({"epoch": at, f"val_{cfg.select_metric}": self._validate(split, out, train, at)})
                    model.net.train()
            self.schedule.step()
            self.epoch += 1
            record = {"epoch": self.epoch, "loss": total / n, "seconds": time.time() - t0}
            if within:
                record["validations_within_epoch"] = within
            if split.val is not None and (self.epoch % cfg.val_every == 0 or self.epoch == epochs):
                record[f"val_{cfg.select_metric}"] = self._validate(split, out, train, self.epoch)
                # patience counts these validations: did any validation since the last one improve?
                self.stale = 0 if self.best_score > self.checked_best else self.stale + 1
                self.checked_best = self.best_score
            elif split.val is None:
                save_model(out / MODEL, model, cfg, train.images.shape[1:], train.num_classes, {"epoch": self.epoch})
                self.best_epoch = self.epoch
            self.history.append(record)
            atomic_write(ckpt, lambda p: torch.save(self.state(), p))
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", val=f"{record.get(f'val_{cfg.select_metric}', float('nan')):.4f}",
                            best=f"{self.best_score:.4f}@{self.best_epoch}")
            if cfg.patience is not None and self.stale >= cfg.patience:
                tqdm.write(f"early stop: no validation gain in {cfg.patience} validations", file=sys.stderr)
                break
        bar.close()

    def _validate(self, split: Split, out: Path, train, epoch) -> float:
        """Score the model on the validation set; save it as the selected model when it is the best
        so far (``epoch`` may have a fraction for validations inside an epoch)."""
        cfg = self.cfg
        probs = mean_probs(self.model, split.val.images, device=self.device)
        score = classification_metrics(split.val.labels.numpy(), probs.numpy())[cfg.select_metric]
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            save_model(out / MODEL, self.model, cfg, train.images.shape[1:], train.num_classes,
                       {"epoch": epoch, f"val_{cfg.select_metric}": score})
        return score

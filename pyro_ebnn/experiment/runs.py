"""The two ways to make a model, each a run directory (:mod:`~pyro_ebnn.experiment.rundir`):
``train`` from scratch ([000] protocol) and ``finetune`` a trained run on a small annotated budget
([001] protocol); both end with the evaluation of the selected model."""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from ..baselines import PENALTY_MODES
from ..bnn import fit_standardization, mean_probs, standardization_of
from ..data import Split
from ..errors import ConfigError
from ..metrics import classification_metrics
from .build import build_model, resolve_device
from .config import Config
from .evaluation import evaluate_sets
from .protocol import prepare_split, set_seed, use_threads
from .rundir import MODEL, load_model, prepare_run_dir, save_model, write_config, write_metrics
from .training import Trainer

__all__ = ["train", "finetune"]


def train(cfg: Config, out, resume: bool = True, progress: bool = True, split: Optional[Split] = None) -> dict:
    """Train from scratch ([000] protocol) and evaluate; writes metrics.json, model.pt, checkpoint.pt."""
    out = Path(out)
    device = resolve_device(cfg.device)
    use_threads(cfg.threads)
    set_seed(cfg.seed)
    split = split or prepare_split(cfg)
    model = build_model(cfg, split.train.images.shape[1:], split.train.num_classes)
    extra = fit_standardization(model.net, split.train.images) if cfg.standardize else None
    model.net.to(device)
    trainer = Trainer(cfg, model, cfg.lr, device)
    state = prepare_run_dir(out, cfg, resume)
    if state is not None:
        trainer.load_state(state)
        tqdm.write(f"resuming {out} from epoch {trainer.epoch}", file=sys.stderr)
    write_config(out, cfg)
    t0 = time.time()
    trainer.fit(split, cfg.epochs, out, use_masks=cfg.mode in ("feedback",) + PENALTY_MODES, progress=progress,
                augment=cfg.mode == "augment")
    return _finish(out, cfg, split, device, trainer, time.time() - t0, progress, extra)


def finetune(run_dir, cfg: Config, out, resume: bool = True, progress: bool = True) -> dict:
    """[001] protocol: load a trained model and fine-tune it with feedback on an annotated budget
    of training images chosen uniformly at random. A budget of 0 is the matched control: the same
    fine-tuning (data, epochs, steps, selection) without any annotated image, run as mode ``none``."""
    out = Path(out)
    device = resolve_device(cfg.device)
    use_threads(cfg.threads)
    set_seed(cfg.seed)
    lam = cfg.finetune_lam if cfg.finetune_lam is not None else cfg.lam
    if cfg.network != "bayesian":
        raise ConfigError("fine-tuning with feedback needs a Bayesian run (network: bayesian); "
                          f"{run_dir} holds a {cfg.network} network")
    with_feedback = cfg.finetune_budget > 0
    if with_feedback and not lam > 0:
        raise ConfigError(f"fine-tuning with feedback needs finetune_lam > 0, got {lam}")
    cfg = dataclasses.replace(cfg, mode="feedback" if with_feedback else "none")
    split = prepare_split(cfg, annotated=cfg.finetune_budget)
    model, _, payload = load_model(run_dir, device, cfg, lam=lam)
    if tuple(payload["input_shape"]) != tuple(split.train.images.shape[1:]):
        raise ConfigError(f"the model in {run_dir} takes {payload['input_shape']} inputs but the data are "
                          f"{tuple(split.train.images.shape[1:])}")
    trainer = Trainer(cfg, model, cfg.finetune_lr or cfg.lr, device)
    state = prepare_run_dir(out, cfg, resume)
    if state is not None:
        trainer.load_state(state)
    write_config(out, cfg)
    # the starting point is a candidate for model selection too
    before = classification_metrics(split.val.labels.numpy(), mean_probs(model, split.val.images, device=device).numpy())
    if state is None:
        trainer.best_score, trainer.best_epoch = before[cfg.select_metric], 0
        trainer.checked_best = trainer.best_score
        save_model(out / MODEL, model, cfg, split.train.images.shape[1:], split.train.num_classes, {"epoch": 0})
    t0 = time.time()
    trainer.fit(split, cfg.finetune_epochs, out, use_masks=with_feedback, progress=progress)
    return _finish(out, cfg, split, device, trainer, time.time() - t0, progress,
                   {**standardization_of(model.net), "finetuned_from": str(run_dir),
                    "finetune_lam": lam if with_feedback else None,
                    f"val_{cfg.select_metric}_before_finetune": before[cfg.select_metric]})


def _finish(out, cfg, split, device, trainer, train_seconds, progress, extra=None):
    """Evaluate the selected model and write metrics.json (last: its presence marks a finished run)."""
    best, _, _ = load_model(out / MODEL, device, cfg)
    t0 = time.time()
    metrics = {"name": cfg.name, "rule": cfg.rule, "network": cfg.network, "mode": cfg.mode, "fold": cfg.fold,
               "seed": cfg.seed, **evaluate_sets(best, split, cfg, device, progress)}
    epochs = trainer.history
    metrics.update({
        "best_epoch": trainer.best_epoch, "epochs_run": trainer.epoch,
        f"val_{cfg.select_metric}": trainer.best_score if math.isfinite(trainer.best_score) else None,
        "n_train": len(split.train), "n_train_with_mask": int(split.train.masks.flatten(1).any(1).sum()),
        "n_val": len(split.val) if split.val is not None else 0, "n_test": len(split.test),
        "train_seconds": train_seconds,
        "seconds_per_epoch": sum(h["seconds"] for h in epochs) / len(epochs) if epochs else None,
        "eval_seconds": time.time() - t0, "device": str(device), "threads": torch.get_num_threads(), **(extra or {}),
        "config": cfg.to_dict(),
    })
    write_metrics(out, metrics)
    return metrics

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

from ..baselines import PENALTY_MODES
from ..bnn import fit_standardization, mean_probs, standardization_of
from ..data import Split, batches
from ..errors import ConfigError
from ..metrics import classification_metrics
from .build import build_evidence, build_model, resolve_device
from .config import AUTO, Config
from .distributed import join
from .evaluation import evaluate_sets, posterior_mean_scores
from .holes import HOLES_DECIDE_CLASS, look_at_holes
from .protocol import images_of, prepare_split, set_seed, use_threads
from .report import hole_warning, run_warnings
from .rundir import CHECKPOINT, MODEL, load_model, prepare_run_dir, save_model, write_config, write_metrics, writing
from .training import Trainer

__all__ = ["train", "finetune"]


def _start(cfg: Config, out, resume: bool, trainer_of, group, device) -> Trainer:
    """The trainer of a run, resumed from ``out`` when it holds a checkpoint of the same config
    (process 0 checks and clears ``out``; the others wait)."""
    use_threads(cfg.threads)
    trainer = trainer_of(group, device)
    state = prepare_run_dir(out, cfg, resume) if group.is_main else None
    group.barrier()
    if not group.is_main and (Path(out) / CHECKPOINT).exists():
        state = torch.load(Path(out) / CHECKPOINT, map_location="cpu", weights_only=False)
    if state is not None:
        trainer.load_state(state)
    elif group.size > 1:
        torch.manual_seed(cfg.seed * 1000 + group.rank)  # the same model everywhere, its own LRT noise each
    if group.is_main:
        write_config(out, cfg)
    return trainer


def train(cfg: Config, out, resume: bool = True, progress: bool = True, split: Optional[Split] = None,
          lam: Optional[float] = None, evaluate: bool = True, extra: Optional[dict] = None) -> dict:
    """Train from scratch ([000] protocol) and evaluate; writes metrics.json, model.pt, checkpoint.pt.
    Under ``torchrun`` the processes train one model together and process 0 writes; the others
    return an empty dict. ``lam``: the feedback weight when the config says ``lam: auto`` (chosen by
    :mod:`~pyro_ebnn.experiment.search`). ``evaluate=False`` stops after training and returns the
    validation record only (``val_<select_metric>``, ``best_epoch``), on every process; ``extra`` goes into metrics.json."""
    out = Path(out)
    set_seed(cfg.seed)
    lam = _feedback_weight(cfg, cfg.lam, lam)
    split = split or prepare_split(cfg, progress=progress)
    # seeded again: reading the images draws from torch's generator, and a split passed in (lam: auto's
    # candidates) must give the network a split prepared here gives (the no-feedback candidate is `none`)
    set_seed(cfg.seed)
    train_set = split.train
    model = build_model(cfg, train_set.image_shape, train_set.num_classes, lam=lam)
    standardization = fit_standardization(model.net, images_of(train_set, cfg.workers)) if cfg.standardize else None

    holes = look_at_holes(cfg, model, train_set, lam) if evaluate or cfg.evidence_holes == AUTO else {}
    if progress and "evidence_holes" in holes:
        print(f"evidence_holes: auto -> {holes['evidence_holes']} (shared holes tell the class "
              f"{holes['hole_information'] or 0:.2f}; {HOLES_DECIDE_CLASS} or more shows the head no holes)",
              file=sys.stderr)
    warning = hole_warning(holes.get("hole_information"), holes.get("evidence_holes", cfg.evidence_holes))
    if evaluate and warning:
        print(f"warning: {warning}", file=sys.stderr)

    def trainer_of(group, device):
        model.net.to(device)
        return Trainer(cfg, model, cfg.lr, device, group)
    group, device = join(resolve_device(cfg.device))
    with writing(out, claim=group.is_main):
        trainer = _start(cfg, out, resume, trainer_of, group, device)
        if trainer.epoch and group.is_main:
            print(f"resuming {out} from epoch {trainer.epoch}", file=sys.stderr)
        t0 = time.time()
        trainer.fit(split, cfg.epochs, out, use_masks=cfg.mode in ("feedback",) + PENALTY_MODES, progress=progress,
                    augment=cfg.mode == "augment")
        if not evaluate:
            return _validation_record(cfg, trainer, cfg.epochs)
        return _finish(out, cfg, split, device, trainer, time.time() - t0, progress,
                       {**(standardization or {}), **_lam_record(cfg, lam), **(split.feedback or {}), **holes,
                        **(extra or {})})


def finetune(run_dir, cfg: Config, out, resume: bool = True, progress: bool = True, lam: Optional[float] = None,
             evaluate: bool = True, extra: Optional[dict] = None) -> dict:
    """[001] protocol: load a trained model and fine-tune it with feedback on an annotated budget
    of training images chosen uniformly at random. A budget of 0 is the matched control: the same
    fine-tuning (data, epochs, steps, selection) without any annotated image, run as mode ``none``.
    With ``cfg.finetune_feedback`` (a feedback store), the annotated images and their masks are an
    annotator's instead (:mod:`~pyro_ebnn.experiment.feedback`); metrics.json counts their decisions.
    ``lam``, ``evaluate``, ``extra``: as for :func:`train` (``lam`` replaces ``finetune_lam: auto``)."""
    out = Path(out)
    set_seed(cfg.seed)
    requested = cfg.finetune_lam if cfg.finetune_lam is not None else cfg.lam
    if cfg.network != "bayesian":
        raise ConfigError("fine-tuning with feedback needs a Bayesian run (network: bayesian); "
                          f"{run_dir} holds a {cfg.network} network")
    split = prepare_split(cfg, annotated=cfg.finetune_budget, feedback=cfg.finetune_feedback, progress=progress)
    with_feedback = split.feedback["feedback_irrelevant"] > 0 if split.feedback else cfg.finetune_budget > 0
    cfg = dataclasses.replace(cfg, mode="feedback" if with_feedback else "none")
    lam = _feedback_weight(cfg, requested, lam) if with_feedback else None
    if with_feedback and not lam > 0:
        raise ConfigError(f"fine-tuning with feedback needs finetune_lam > 0, got {lam}")
    model, _, payload = load_model(run_dir, "cpu", cfg, lam=lam)
    if tuple(payload["input_shape"]) != tuple(split.train.image_shape):
        raise ConfigError(f"the model in {run_dir} takes {payload['input_shape']} inputs but the data are "
                          f"{tuple(split.train.image_shape)}")
    if cfg.evidence_holes == AUTO and model.evidence is not None:   # chosen on the images it fine-tunes on
        model.evidence = build_evidence(cfg, lam, holes="shared")
    holes = look_at_holes(cfg, model, split.train, lam) if evaluate or cfg.evidence_holes == AUTO else {}

    def trainer_of(group, device):
        model.net.to(device)
        return Trainer(cfg, model, cfg.finetune_lr or cfg.lr, device, group)
    group, device = join(resolve_device(cfg.device))
    with writing(out, claim=group.is_main):
        trainer = _start(cfg, out, resume, trainer_of, group, device)
        # the starting point is a candidate for model selection too
        before = None
        if group.is_main:
            probs = torch.cat([mean_probs(model, x, device=device) for x, _, _ in batches(split.val, 1000)])
            before = classification_metrics(split.val.labels.numpy(), probs.numpy())[cfg.select_metric]
            if trainer.epoch == 0:
                save_model(out / MODEL, model, cfg, split.train.image_shape, split.train.num_classes, {"epoch": 0})
        before = group.broadcast(before)
        if trainer.epoch == 0:
            trainer.best_score, trainer.best_epoch = before, 0
            trainer.checked_best = trainer.best_score
        t0 = time.time()
        trainer.fit(split, cfg.finetune_epochs, out, use_masks=with_feedback, progress=progress)
        if not evaluate:
            return _validation_record(cfg, trainer, cfg.finetune_epochs, start=before)
        return _finish(out, cfg, split, device, trainer, time.time() - t0, progress,
                       {**standardization_of(model.net), "finetuned_from": str(run_dir),
                        "finetune_lam": lam if with_feedback else None,
                        f"val_{cfg.select_metric}_before_finetune": before, **split.feedback, **holes,
                        **(extra or {})})


def _feedback_weight(cfg: Config, requested, lam: Optional[float]) -> Optional[float]:
    """The lambda a feedback run trains with: ``lam`` when given, else the config's number; ``auto``
    needs it given (:mod:`~pyro_ebnn.experiment.search` chooses it)."""
    if cfg.mode != "feedback":
        return None
    if lam is not None:
        return float(lam)
    if requested == AUTO:
        raise ConfigError("lam: auto is chosen on validation by the train and finetune commands "
                          "(pyro_ebnn.experiment.search); set lam to a number to call this function directly")
    return float(requested)


def _lam_record(cfg: Config, lam: Optional[float]) -> dict:
    """metrics.json's ``lam``: the weight the run trained with (a number also when the config says auto)."""
    return {"lam": lam} if cfg.mode == "feedback" else {}


def _validation_record(cfg: Config, trainer: Trainer, epochs: int, start: Optional[float] = None) -> dict:
    """What a run that is not evaluated returns: its best validation score and epoch up to ``epochs``,
    process 0's on every process of a group (a search over settings compares them everywhere alike).

    A run resumed from a checkpoint beyond ``epochs`` (a search restarted after a kill asks each
    candidate for its score at an earlier budget again) reports the best of its validations up to
    ``epochs``, as if it had stopped there, not a later epoch's; ``start``: the score before the first
    epoch, which fine-tuning counts as epoch 0."""
    key = f"val_{cfg.select_metric}"
    score, best = trainer.best_score, trainer.best_epoch
    if best > epochs:
        seen = [(h[key], h["epoch"]) for h in trainer.history if h["epoch"] <= epochs and h.get(key) is not None]
        seen += [(w[key], w["epoch"]) for h in trainer.history for w in h.get("validations_within_epoch", ())
                 if w["epoch"] <= epochs]
        seen += [(start, 0)] if start is not None else []
        score, best = max(seen, key=lambda s: (s[0], -s[1])) if seen else (-math.inf, -1)  # ties: the earlier
    record = {key: score, "best_epoch": best, "epochs_run": min(trainer.epoch, epochs)} if trainer.group.is_main \
        else None
    return trainer.group.broadcast(record)


def _finish(out, cfg, split, device, trainer, train_seconds, progress, extra=None) -> dict:
    """Evaluate the selected model and write metrics.json (last: its presence marks a finished run);
    on process 0 of a group only. The other processes wait for it at a barrier: one that left the
    group (its exit closes it) while process 0 still evaluated could abort in the group's teardown."""
    if not trainer.group.is_main:
        trainer.group.barrier()
        return {}
    best, _, _ = load_model(out / MODEL, device, cfg)
    t0 = time.time()
    metrics = {"name": cfg.name, "rule": cfg.rule, "network": cfg.network, "mode": cfg.mode, "fold": cfg.fold,
               "seed": cfg.seed, **evaluate_sets(best, split, cfg, device, progress)}
    if trainer.best_epoch != trainer.epoch:  # the last network too, for the warnings' side-by-side numbers
        plugin = torch.cat([mean_probs(trainer.model, x, device=device) for x, _, _ in batches(split.test, 1000)])
        metrics.update(posterior_mean_scores(split.test, plugin, prefix="last_"))
    epochs = trainer.history
    metrics.update({
        "best_epoch": trainer.best_epoch, "epochs_run": trainer.epoch,
        f"val_{cfg.select_metric}": trainer.best_score if math.isfinite(trainer.best_score) else None,
        "n_train": len(split.train), "n_train_with_mask": int(split.train.has_mask.sum()),
        "n_val": len(split.val) if split.val is not None else 0, "n_test": len(split.test),
        "train_seconds": train_seconds,
        "seconds_per_epoch": sum(h["seconds"] for h in epochs) / len(epochs) if epochs else None,
        "eval_seconds": time.time() - t0, "device": str(device), "threads": torch.get_num_threads(),
        "world_size": trainer.group.size, **(extra or {}), "config": cfg.to_dict(),
    })
    metrics["warnings"] = run_warnings(metrics, trainer.history, cfg.mode, cfg.select_metric)
    for line in metrics["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    write_metrics(out, metrics)
    trainer.group.barrier()
    return metrics

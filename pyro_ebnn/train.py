"""Training with SVI: from scratch ([000] protocol) or fine-tuning a saved model ([001] protocol)."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pyro
import pyro.optim
import torch
import yaml
from pyro.infer import SVI
from tqdm.auto import tqdm

from .build import build_elbo, build_model, resolve_device
from .baselines import replace_with_noise
from .config import PENALTY_MODES, Config, saved_config
from .data import Split, fold_split, keep_fraction_of_masks, load_dataset
from .errors import ConfigError, TrainingError
from .explain import REFERENCE_METHODS, channel_mean, overlap_metrics, parse_methods
from .metrics import classification_metrics
from .nets import fit_standardization, standardization_of
from .optim import JointOptim
from .predict import mean_probs, predictive_probs

CHECKPOINT = "checkpoint.pt"   # resumable training state (rewritten every epoch)
MODEL = "model.pt"             # the selected model (best validation score)
METRICS = "metrics.json"


# -- data ---------------------------------------------------------------------------------------
def prepare_split(cfg: Config, annotated: Optional[float] = None) -> Split:
    """Fold ``cfg.fold`` of the [000] protocol. Feedback masks are kept on ``cfg.mask_fraction`` of
    the training images, or, when fine-tuning, on an ``annotated`` budget chosen uniformly at random
    (a fraction if < 1, else a count)."""
    trainval, tests = load_dataset(cfg)
    train_idx, val_idx = fold_split(len(trainval), cfg.num_folds, cfg.fold, cfg.data_seed)
    train = trainval.subset(train_idx)
    val = (tests.pop("validation") if "validation" in tests else trainval).subset(val_idx)
    if annotated is None:
        train.masks = keep_fraction_of_masks(train.masks, cfg.mask_fraction, cfg.seed + 17)
    else:
        count = int(round(annotated * len(train))) if annotated < 1 else int(annotated)
        train.masks = keep_fraction_of_masks(train.masks, min(count, len(train)) / len(train), cfg.seed + 29)
    test = tests.pop("test")
    return Split(train, val, test, tests)


# -- I/O ----------------------------------------------------------------------------------------
def _atomic_write(path: Path, write):
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_model(path: Path, bnn, cfg: Config, input_shape, num_classes, extra=None):
    payload = {"net": bnn.net.state_dict(), "config": cfg.to_dict(), "input_shape": tuple(input_shape),
               "num_classes": num_classes, **(extra or {})}
    _atomic_write(path, lambda p: torch.save(payload, p))


def load_model(path, device="cpu", cfg: Optional[Config] = None, lam=None):
    """Rebuild a saved model in a fresh process. ``cfg`` may change the mode / lam (fine-tuning)."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    if not path.exists():
        raise ConfigError(f"no saved model at {path}; pass the --out directory of a finished train run")
    payload = torch.load(path, map_location=device, weights_only=False)
    saved = saved_config(payload["config"])
    cfg = cfg or Config(**payload["config"])
    for key in ("architecture", "standardize"):  # the keys that shape the saved network
        if getattr(cfg, key) != saved[key]:
            raise ConfigError(f"the model in {path.parent} was trained with {key}: {saved[key]}, the config asks for "
                              f"{getattr(cfg, key)}; drop the override or use the run's own config.yaml")
    bnn = build_model(cfg, payload["input_shape"], payload["num_classes"], lam=lam)
    bnn.net.load_state_dict(payload["net"])
    bnn.net.to(device)
    return bnn, cfg, payload


def write_metrics(out: Path, metrics: dict):
    _atomic_write(out / METRICS, lambda p: p.write_text(json.dumps(metrics, indent=2, default=float)))


# -- the loop -------------------------------------------------------------------------------------
def set_seed(seed: int):
    pyro.set_rng_seed(seed)  # seeds torch, numpy and random


class Trainer:
    def __init__(self, cfg: Config, bnn, lr: float, device):
        self.cfg, self.bnn, self.device = cfg, bnn, device
        self.scheduler = JointOptim(torch.optim.Adam, {"lr": lr, "weight_decay": getattr(cfg, "weight_decay", 0.0)},
                                    gamma=cfg.lr_decay)
        if getattr(cfg, "network", "bayesian") == "deterministic":
            from .point import PointStep
            self.svi = PointStep(bnn, self.scheduler)
        else:
            self.svi = SVI(bnn.model, bnn.guide, self.scheduler, loss=build_elbo(cfg))
        self.epoch, self.best_score, self.best_epoch, self.stale = 0, -math.inf, -1, 0
        self.checked_best = -math.inf  # the best score at the last end-of-epoch validation (patience)
        self.history = []

    # checkpoint of everything needed to resume: module, Pyro param store, optimiser, RNG, history
    def state(self):
        return {"net": self.bnn.net.state_dict(), "param_store": pyro.get_param_store().get_state(),
                "optim": self.scheduler.get_state(), "epoch": self.epoch, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "stale": self.stale, "history": self.history,
                "checked_best": self.checked_best,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                "config": self.cfg.to_dict()}

    def load_state(self, st):
        # the param store holds the trained tensors; make the module use those very tensors
        pyro.get_param_store().set_state(st["param_store"])
        pyro.module(self.bnn.name, self.bnn.net, update_module_params=True)
        self.scheduler.set_state(st["optim"])
        self.epoch, self.best_score, self.best_epoch = st["epoch"], st["best_score"], st["best_epoch"]
        self.stale, self.history = st["stale"], st["history"]
        self.checked_best = st.get("checked_best", self.best_score)  # checkpoints from before the key
        torch.set_rng_state(st["rng"]["torch"])
        np.random.set_state(st["rng"]["numpy"])
        if st["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["rng"]["cuda"])

    def fit(self, split: Split, epochs: int, out: Path, use_masks: bool, progress: bool = True,
            augment: bool = False):
        """``use_masks``: hand the feedback masks to the model (evidence or a loss penalty);
        ``augment``: counterexamples instead, masked pixels replaced by fresh U(0, 1) noise."""
        cfg, bnn = self.cfg, self.bnn
        train = split.train.to(self.device)
        n, bs = len(train), cfg.batch_size
        ckpt = out / CHECKPOINT
        bar = tqdm(total=epochs, initial=self.epoch, desc=f"{cfg.name} [{cfg.mode}]", unit="epoch",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        tty = progress and sys.stderr.isatty()
        while self.epoch < epochs:
            bnn.net.train()
            perm = torch.randperm(n, device=self.device)
            total, t0, within = 0.0, time.time(), []
            steps = range(0, n, bs)
            for step, start in enumerate(tqdm(steps, leave=False, disable=not tty, unit="batch", desc=f"epoch {self.epoch + 1}")):
                idx = perm[start:start + bs]
                mask = train.masks[idx] if use_masks else None
                x = replace_with_noise(train.images[idx], train.masks[idx]) if augment else train.images[idx]
                with pyro.validation_enabled(False):  # inputs were validated on load
                    loss = self.svi.step(x, train.labels[idx], mask, data_size=n)
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
                    bnn.net.train()
            self.scheduler.step()
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
                save_model(out / MODEL, bnn, cfg, train.images.shape[1:], train.num_classes, {"epoch": self.epoch})
                self.best_epoch = self.epoch
            self.history.append(record)
            _atomic_write(ckpt, lambda p: torch.save(self.state(), p))
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
        probs = mean_probs(self.bnn, split.val.images, device=self.device)
        score = classification_metrics(split.val.labels.numpy(), probs.numpy())[cfg.select_metric]
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            save_model(out / MODEL, self.bnn, cfg, train.images.shape[1:], train.num_classes,
                       {"epoch": epoch, f"val_{cfg.select_metric}": score})
        return score


def evaluate_sets(bnn, split: Split, cfg: Config, device, progress=True, attributions: Optional[bool] = None,
                  methods=None, attribution_samples: int = 0, max_images: Optional[int] = None,
                  keep: Optional[dict] = None) -> dict:
    """Posterior predictive metrics on the test set (unprefixed) and the extra test sets (prefixed,
    e.g. ``decoy_swap_accuracy``): classification (scikit-learn) plus calibration and uncertainty
    (nll, brier, ece, predictive_entropy, mutual_information; pyro_ebnn.uncertainty), and
    plugin_nll, plugin_brier, plugin_ece of the posterior-mean network (no averaging over q).

    With ``attributions`` (default: the config key ``eval_attributions``) also the attribution
    overlap with the feedback masks on the test set, ``overlap_<method>`` ([001] Eq. 17), for
    ``methods`` (default all four), at the posterior mean or averaged over ``attribution_samples``
    weight samples, on the first ``max_images`` masked test images (default all).
    ``keep`` (a dict) receives the predictive probabilities and attributions for figures."""
    from .uncertainty import plugin_metrics, uncertainty_metrics
    metrics = {}
    sets = {"test": split.test, **split.extra_tests}
    bar = tqdm(total=sum(len(s) for s in sets.values()), desc="posterior predictive", unit="img",
               disable=not progress, file=sys.stderr, leave=False)
    t0 = time.time()
    for name, data in sets.items():
        probs = predictive_probs(bnn, data.images, cfg.eval_samples, device=device, progress=bar)
        m = classification_metrics(data.labels.numpy(), probs.mean(0).numpy())
        m.update(uncertainty_metrics(data.labels, probs))
        m.update(plugin_metrics(data.labels, mean_probs(bnn, data.images, device=device)))
        if name == "test":
            metrics.update(m)
        else:
            metrics.update({f"{name}_{k}": v for k, v in m.items() if k != "confusion_matrix"})
        if keep is not None:
            keep.setdefault("sets", {})[name] = {"probs": probs, "labels": data.labels}
    bar.close()
    metrics["predictive_seconds"] = time.time() - t0
    if attributions is None:
        attributions = bool(getattr(cfg, "eval_attributions", False))
    if attributions:
        t0 = time.time()
        kept = {} if keep is not None else None
        metrics.update(overlap_metrics(bnn.net, split.test, methods, samples=attribution_samples,
                                       max_images=max_images, device=device, progress=progress,
                                       seed=cfg.seed, keep=kept, baseline=attribution_baseline(cfg, split)))
        metrics["attribution_baseline"] = cfg.attribution_baseline
        metrics["attribution_seconds"] = time.time() - t0
        if keep is not None and kept:
            keep["attributions"] = kept
    return metrics


def attribution_baseline(cfg: Config, split: Split):
    """DeepLIFT's reference / Occlusion's fill for ``cfg.attribution_baseline``: None (black) for
    ``zero``; the per-channel mean of the training images for ``mean``."""
    if cfg.attribution_baseline == "zero":
        return None
    return channel_mean(split.train.images)


def drop_stale_overlaps(metrics: dict, baseline: str) -> dict:
    """Remove from an earlier ``metrics`` dict the overlaps that were taken against another
    attribution baseline than ``baseline`` (runs from before the key count as ``zero``)."""
    if metrics.get("attribution_baseline", "zero") != baseline:
        for m in REFERENCE_METHODS:
            metrics.pop(f"overlap_{m}", None)
        metrics["attribution_baseline"] = baseline
    return metrics


def _prepare_out(out: Path, cfg: Config, resume: bool):
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    if ckpt.exists() and resume:
        st = torch.load(ckpt, map_location="cpu", weights_only=False)
        ignore = ("epochs", "device", "threads")
        now = {k: v for k, v in cfg.to_dict().items() if k not in ignore}
        # keys newer than the checkpoint count as their default value; keys since removed are dropped
        saved = {k: v for k, v in saved_config(st["config"]).items() if k in now}
        if saved != now:
            diff = sorted(k for k in set(now) | set(saved) if saved.get(k) != now.get(k))
            raise ConfigError(f"{out} holds a run with a different config ({', '.join(diff)}); "
                              "choose another --out or pass --no-resume to start over")
        return st
    for name in (CHECKPOINT, MODEL, METRICS):
        (out / name).unlink(missing_ok=True)
    return None


def use_threads(cfg: Config):
    """Run torch's CPU operations on ``cfg.threads`` threads (None: torch's choice)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def train(cfg: Config, out, resume: bool = True, progress: bool = True, split: Optional[Split] = None) -> dict:
    """Train from scratch ([000] protocol) and evaluate; writes metrics.json, model.pt, checkpoint.pt."""
    out = Path(out)
    device = resolve_device(cfg.device)
    use_threads(cfg)
    set_seed(cfg.seed)
    split = split or prepare_split(cfg)
    pyro.clear_param_store()
    bnn = build_model(cfg, split.train.images.shape[1:], split.train.num_classes)
    extra = fit_standardization(bnn.net, split.train.images) if cfg.standardize else None
    bnn.net.to(device)
    trainer = Trainer(cfg, bnn, cfg.lr, device)
    state = _prepare_out(out, cfg, resume)
    if state is not None:
        trainer.load_state(state)
        tqdm.write(f"resuming {out} from epoch {trainer.epoch}", file=sys.stderr)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    t0 = time.time()
    trainer.fit(split, cfg.epochs, out, use_masks=cfg.mode in ("feedback",) + PENALTY_MODES, progress=progress,
                augment=cfg.mode == "augment")
    train_seconds = time.time() - t0
    return finish(out, cfg, split, device, trainer, train_seconds, progress, extra)


def finish(out, cfg, split, device, trainer, train_seconds, progress, extra=None):
    best, _, payload = load_model(out / MODEL, device, cfg)
    t0 = time.time()
    metrics = {"name": cfg.name, "rule": cfg.rule, "network": cfg.network, "mode": cfg.mode, "fold": cfg.fold,
               "seed": cfg.seed, **evaluate_sets(best, split, cfg, device, progress)}
    metrics.update({
        "best_epoch": trainer.best_epoch, "epochs_run": trainer.epoch,
        f"val_{cfg.select_metric}": trainer.best_score if math.isfinite(trainer.best_score) else None,
        "n_train": len(split.train), "n_train_with_mask": int(split.train.masks.flatten(1).any(1).sum()),
        "n_val": len(split.val) if split.val is not None else 0, "n_test": len(split.test),
        "train_seconds": train_seconds, "seconds_per_epoch": (sum(h["seconds"] for h in trainer.history) / len(trainer.history)
                              if trainer.history else None),
        "eval_seconds": time.time() - t0, "device": str(device), "threads": torch.get_num_threads(), **(extra or {}),
        "config": cfg.to_dict(),
    })
    write_metrics(out, metrics)
    return metrics


def finetune(run_dir, cfg: Config, out, resume: bool = True, progress: bool = True) -> dict:
    """[001] protocol: load a trained model and fine-tune it with feedback on an annotated budget
    of training images chosen uniformly at random. A budget of 0 is the matched control: the same
    fine-tuning (data, epochs, steps, selection) without any annotated image, run as mode ``none``."""
    out = Path(out)
    device = resolve_device(cfg.device)
    use_threads(cfg)
    set_seed(cfg.seed)
    lam = cfg.finetune_lam if cfg.finetune_lam is not None else cfg.lam
    if cfg.network != "bayesian":
        raise ConfigError("fine-tuning with feedback needs a Bayesian run (network: bayesian); "
                          f"{run_dir} holds a {cfg.network} network")
    with_feedback = cfg.finetune_budget > 0
    cfg.mode = "feedback" if with_feedback else "none"
    if with_feedback and not lam > 0:
        raise ConfigError(f"fine-tuning with feedback needs finetune_lam > 0, got {lam}")
    split = prepare_split(cfg, annotated=cfg.finetune_budget)
    pyro.clear_param_store()
    bnn, _, payload = load_model(run_dir, device, cfg, lam=lam)
    if tuple(payload["input_shape"]) != tuple(split.train.images.shape[1:]):
        raise ConfigError(f"the model in {run_dir} takes {payload['input_shape']} inputs but the data are "
                          f"{tuple(split.train.images.shape[1:])}")
    trainer = Trainer(cfg, bnn, cfg.finetune_lr or cfg.lr, device)
    state = _prepare_out(out, cfg, resume)
    if state is not None:
        trainer.load_state(state)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    # the starting point is a candidate for model selection too
    before = classification_metrics(split.val.labels.numpy(), mean_probs(bnn, split.val.images, device=device).numpy())
    if state is None:
        trainer.best_score, trainer.best_epoch = before[cfg.select_metric], 0
        trainer.checked_best = trainer.best_score
        save_model(out / MODEL, bnn, cfg, split.train.images.shape[1:], split.train.num_classes, {"epoch": 0})
    t0 = time.time()
    trainer.fit(split, cfg.finetune_epochs, out, use_masks=with_feedback, progress=progress)
    return finish(out, cfg, split, device, trainer, time.time() - t0, progress,
                  {**standardization_of(bnn.net), "finetuned_from": str(run_dir),
                   "finetune_lam": lam if with_feedback else None,
                   f"val_{cfg.select_metric}_before_finetune": before[cfg.select_metric]})


def add_overlap(run_dir, methods=("saliency",), max_images: Optional[int] = 2000, device=None,
                progress: bool = True) -> dict:
    """Add the attribution overlap ``overlap_<method>`` of a finished run to its metrics.json
    (the other metrics are kept; nothing is re-trained). Methods already there are skipped, unless
    they were taken against another attribution baseline than the run's config names."""
    from .config import load_config
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / METRICS).read_text())
    cfg = load_config(str(run_dir / "config.yaml"), {"device": device} if device else None)
    drop_stale_overlaps(metrics, cfg.attribution_baseline)
    todo = [m for m in parse_methods(methods) if metrics.get(f"overlap_{m}") is None]
    if not todo:
        return metrics
    dev = resolve_device(cfg.device)
    split = prepare_split(cfg)
    bnn, _, _ = load_model(run_dir, dev, cfg)
    t0 = time.time()
    metrics.update(overlap_metrics(bnn.net, split.test, todo, max_images=max_images, device=dev,
                                   progress=progress, seed=cfg.seed, baseline=attribution_baseline(cfg, split)))
    metrics["attribution_baseline"] = cfg.attribution_baseline
    metrics["overlap_seconds"] = time.time() - t0
    write_metrics(run_dir, metrics)
    return metrics


def evaluate_run(run_dir, out, sets=(), device=None, progress=True, attributions: bool = True, methods=None,
                 samples: int = 0, max_images: Optional[int] = None, figures: bool = True,
                 figure_images: int = 8, weights: str = "selected") -> dict:
    """Re-evaluate a saved run on its test sets (same data rule and fold as it was trained on):
    classification, calibration and uncertainty metrics, the attribution overlap (``attributions``,
    see :func:`evaluate_sets`) and, with ``figures``, reliability diagrams, mutual-information
    histograms, attribution grids of ``figure_images`` test images and the validation curve, all
    written into ``out``. ``weights``: the model selected on validation (``model.pt``), or the
    network after the last training epoch (``"last"``, from ``checkpoint.pt``)."""
    from .config import load_config, parse_sets
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / MODEL).exists():
        raise ConfigError(f"no saved model in {run_dir}; pass the --out directory of a finished train run")
    if weights not in ("selected", "last"):
        raise ConfigError(f"--weights must be 'selected' or 'last', got {weights!r}")
    if weights == "last":
        if not (run_dir / CHECKPOINT).exists():
            raise ConfigError(f"no {CHECKPOINT} in {run_dir}, so there is no last-epoch network to evaluate; "
                              "use --weights selected")
        if out.resolve() == run_dir.resolve():
            raise ConfigError("--weights last would mix the last epoch's metrics into the selected model's "
                              "metrics.json; pass another --out")
    if samples < 0:
        raise ConfigError(f"--samples must be >= 0 (0 = attributions at the posterior mean), got {samples}")
    if max_images is not None and max_images < 1:
        raise ConfigError(f"--max-images must be >= 1, got {max_images}")
    methods = parse_methods(methods)
    overrides = parse_sets(sets)
    if device:
        overrides["device"] = device
    cfg = load_config(str(run_dir / "config.yaml"), overrides)
    dev = resolve_device(cfg.device)
    set_seed(cfg.seed)
    split = prepare_split(cfg)
    bnn, _, payload = load_model(run_dir, dev, cfg)
    # memory-mapped: only the tensors used are read (the history, and the network for "last")
    checkpoint = torch.load(run_dir / CHECKPOINT, map_location="cpu", mmap=True, weights_only=False) \
        if (run_dir / CHECKPOINT).exists() and (figures or weights == "last") else None
    if weights == "last":
        bnn.net.load_state_dict(checkpoint["net"])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    keep = {} if figures else None
    metrics = {"name": cfg.name, "rule": cfg.rule, "network": cfg.network, "mode": cfg.mode, "fold": cfg.fold,
               "seed": cfg.seed, **evaluate_sets(bnn, split, cfg, dev, progress, attributions=attributions, methods=methods,
                               attribution_samples=samples, max_images=max_images, keep=keep),
               "n_test": len(split.test), "eval_seconds": time.time() - t0, "device": str(dev),
               "threads": torch.get_num_threads(), "evaluated_run": str(run_dir), "evaluated_weights": weights,
               "evaluated_epoch": checkpoint["epoch"] if weights == "last" else payload.get("epoch"),
               "config": cfg.to_dict()}
    if figures:
        from .figures import evaluation_figures, validation_curve
        t1 = time.time()
        paths = evaluation_figures(out, keep, split.test.images, split.test.masks, split.test.labels,
                                   run_name=f"{cfg.name} [{cfg.mode}]", n_images=figure_images, samples=samples,
                                   baseline=cfg.attribution_baseline)
        if checkpoint is not None and checkpoint.get("history"):
            paths += validation_curve(checkpoint["history"], cfg.select_metric, out / "validation_curve",
                                      selected=payload.get("epoch"), title=f"{cfg.name} [{cfg.mode}]")
        metrics["figures"] = sorted(Path(p).name for p in paths)
        metrics["figure_seconds"] = time.time() - t1
    if out.resolve() == run_dir.resolve() and (out / METRICS).exists():
        # evaluating in place: keep what training recorded (epochs, timings) next to the new metrics
        old = json.loads((out / METRICS).read_text())
        if attributions:
            drop_stale_overlaps(old, cfg.attribution_baseline)
        metrics = {**old, **metrics}
    write_metrics(out, metrics)
    return metrics

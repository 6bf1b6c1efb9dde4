"""The training loop, shared by the Bayesian model and the point networks: minimize the model's
loss with Adam and an exponential learning-rate decay per epoch, validate, keep the best model,
checkpoint every epoch so that an interrupted run resumes exactly.

The Bayesian loss is Pyro's own ``elbo.differentiable_loss(model, guide, ...)`` (the negative ELBO
of [000] Eq. 3 with the Eq. 4 likelihood), stepped by a plain torch optimizer, the pattern Pyro
documents for custom training loops; a point network's loss is its cross-entropy plus penalty. It
lets both kinds of model share this loop, its checkpoints and its optimizer state.
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import pyro
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..baselines import PointModel, replace_with_noise
from ..bnn import FeedbackBNN, bayesian_layers, mean_probs
from ..data import ImageSet, Split, batches
from ..errors import TrainingError
from ..metrics import classification_metrics
from ..progress import progress_bar
from .build import build_elbo
from .config import Config
from .distributed import Group
from .rundir import CHECKPOINT, MODEL, atomic_write, save_model
from .steps import CaptureError, CompiledStep, GraphedStep, resolve_step, sync_free

__all__ = ["training_loss", "device_loss", "chance_level", "at_chance", "Trainer", "CHANCE_EPOCHS"]

#: validations after which a model whose validation balanced accuracy never rose above chance,
#: while the KL term made most of its loss, is stopped as one that cannot learn
CHANCE_EPOCHS = 5


def training_loss(cfg: Config, model, on_device: bool = False) -> Callable:
    """``(x, y, mask, data_size) -> (loss to minimize, its value for the record)``: the negative ELBO
    (an estimate for the whole training set, through Pyro) of a Bayesian model; the mean cross-entropy
    plus penalty of a point model, recorded summed over the batch.

    ``on_device``: read nothing back to the host (what a CUDA graph can capture): the record is a
    tensor on the device, and Pyro's ELBO runs under :func:`~pyro_ebnn.experiment.steps.sync_free`
    (the same loss and gradient); otherwise the record is a float."""
    record = (lambda t: t.detach()) if on_device else (lambda t: t.item())
    if isinstance(model, PointModel):
        def point_loss(x, y, mask, data_size):
            loss = model.loss(x, y, mask)
            return loss, record(loss) * len(x)
        return point_loss
    elbo = build_elbo(cfg)
    quiet = sync_free if on_device else nullcontext

    def negative_elbo(x, y, mask, data_size):
        with pyro.validation_enabled(False), model.for_torch_optimizer(), quiet():  # inputs were validated on load
            loss = elbo.differentiable_loss(model.model, model.guide, x, y, mask, data_size=data_size)
        return loss, record(loss)
    return negative_elbo


def device_loss(cfg: Config, model) -> Callable:
    """:func:`training_loss` that reads nothing back to the host (``on_device=True``)."""
    return training_loss(cfg, model, on_device=True)


def chance_level(num_classes: int, n: int) -> float:
    """The balanced accuracy below which a validation score is "at chance": 1/K plus two standard
    errors of the accuracy of a guess among K classes on ``n`` images (at least 0.02).

    >>> round(chance_level(2, 900), 3)
    0.533
    """
    p = 1 / num_classes
    return p + max(0.02, 2 * math.sqrt(p * (1 - p) / max(n, 1)))


def at_chance(score: float, num_classes: int, n: int) -> bool:
    """Whether a balanced accuracy is within :func:`chance_level`'s band around 1/K. Far *below*
    chance is not "not learning": a network that reads a shortcut which the validation images
    reverse (ColorMNIST's colours, a decoy of the test rule) is systematically wrong.

    >>> at_chance(0.51, 2, 900), at_chance(0.60, 2, 900), at_chance(0.001, 10, 10000)
    (True, False, False)
    """
    p = 1 / num_classes
    return abs(score - p) <= chance_level(num_classes, n) - p


def _fused_adam(device):
    """Adam's fused kernel (one for all parameters: 0.16 instead of 0.60 ms per LeNet step on the
    CPU, 4% of a step) where torch has it, CUDA and the CPU from torch 2.4; else torch's choice.
    ``torch.__version__`` is a ``TorchVersion``, which compares with tuples."""
    kind = torch.device(device).type
    return True if kind == "cuda" or (kind == "cpu" and torch.__version__ >= (2, 4)) else None


class Trainer:
    """Fits ``model`` (a :class:`~pyro_ebnn.bnn.FeedbackBNN` or a point model) with Adam and an
    exponential learning-rate decay per epoch. ``group``: the processes that train it together
    (:mod:`~pyro_ebnn.experiment.distributed`; one by default). ``cfg.step`` says how the full
    batches are stepped (:mod:`~pyro_ebnn.experiment.steps`): eagerly, replayed from a CUDA graph,
    or with a compiled loss; ``step_kind`` is what runs (eager after a capture that failed)."""

    def __init__(self, cfg: Config, model, lr: float, device, group: Group = Group()):
        self.cfg, self.model, self.device, self.group = cfg, model, device, group
        self.loss = training_loss(cfg, model)
        self.step_kind, why = resolve_step(cfg.step, device, distributed=group.size > 1)
        if why:
            self._eager_because(why)
        self.optimizer = torch.optim.Adam(model.net.parameters(), lr=lr, weight_decay=cfg.weight_decay,
                                          fused=_fused_adam(device), capturable=self.step_kind == "graph")
        self._fast = None  # the step of full batches when it is not eager
        if self.step_kind == "graph":
            self._fast = GraphedStep(self._whole_step(device_loss(cfg, model)), self.optimizer)
        elif self.step_kind == "compile":
            self._fast = CompiledStep(self._whole_step, device_loss(cfg, model))
        self.schedule = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, cfg.lr_decay)
        self.epoch, self.best_score, self.best_epoch, self.stale = 0, -math.inf, -1, 0
        self.checked_best = -math.inf  # the best score at the last end-of-epoch validation (patience)
        self.history = []

    def step(self, x, y, mask, data_size):
        """One gradient step on a batch (averaged over the group's batches); returns the loss for
        the record: a float, or, for a full batch stepped by a graph or a compiled loss, a 0-d
        tensor on the device (``float()`` reads it; the training loop reads it once the next step
        is launched)."""
        if self._fast is not None and len(x) == self.cfg.batch_size:
            try:
                return self._fast((x, y, mask), (data_size,))
            except CaptureError as e:
                self._fast = None
                what = "the CUDA graph capture" if self.step_kind == "graph" else "torch.compile"
                self._eager_because(f"{what} failed ({e})")
                self.step_kind = "eager"
        self.optimizer.zero_grad(set_to_none=True)
        loss, value = self.loss(x, y, mask, data_size)
        loss.backward()
        self.group.average_gradients(self.model.net.parameters())
        self.optimizer.step()
        return value

    def _whole_step(self, loss: Callable) -> Callable:
        """The step of :meth:`step` around a loss of :func:`device_loss`: nothing read back."""
        def whole_step(x, y, mask, data_size):
            self.optimizer.zero_grad(set_to_none=True)
            value, record = loss(x, y, mask, data_size)
            value.backward()
            self.group.average_gradients(self.model.net.parameters())
            self.optimizer.step()
            return record
        return whole_step

    def _eager_because(self, why: str):
        if self.group.is_main:
            print(f"step: {self.cfg.step}: {why}; training steps eagerly", file=sys.stderr)

    # checkpoint of everything needed to resume: network, optimizer, schedule, RNG, history
    def state(self):
        """The training state; the random states of every process of the group (all must call it)."""
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
               "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}
        return {"net": self.model.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "epoch": self.epoch, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "stale": self.stale, "history": self.history,
                "checked_best": self.checked_best, "rng": self.group.gather(rng), "world_size": self.group.size,
                "config": self.cfg.to_dict()}

    def load_state(self, st):
        if st["world_size"] != self.group.size:
            raise TrainingError(f"the checkpoint was written by {st['world_size']} process(es) and this run has "
                                f"{self.group.size}; resume with --nproc_per_node {st['world_size']}, or pass "
                                "--no-resume to start over")
        self.model.net.load_state_dict(st["net"])
        self.optimizer.load_state_dict(st["optimizer"])
        for group in self.optimizer.param_groups:  # how this run steps, not how the checkpoint's did
            group["capturable"] = self.step_kind == "graph"
        self.schedule.load_state_dict(st["schedule"])
        self.epoch, self.best_score, self.best_epoch = st["epoch"], st["best_score"], st["best_epoch"]
        self.stale, self.history, self.checked_best = st["stale"], st["history"], st["checked_best"]
        rng = st["rng"][self.group.rank]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        if rng.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    # -- one epoch's batches ----------------------------------------------------------------------
    def _order(self, n: int) -> torch.Tensor:
        """This process's training images for the epoch, in order: a random permutation of all of
        them on one process; its share of a permutation common to the group otherwise."""
        if self.group.size == 1:
            return torch.randperm(n, device=self.device)
        sampler = DistributedSampler(range(n), num_replicas=self.group.size, rank=self.group.rank, shuffle=True,
                                     seed=self.cfg.seed)
        sampler.set_epoch(self.epoch)
        return torch.tensor(list(sampler), device=self.device)

    def _batches(self, train, order: torch.Tensor):
        """(images, labels, masks) on the device: sliced from memory, or streamed from disk by a
        DataLoader with ``cfg.workers`` processes."""
        if isinstance(train, ImageSet):
            yield from batches(train, self.cfg.batch_size, order)
            return
        loader = DataLoader(train, batch_size=self.cfg.batch_size, sampler=order.tolist(), num_workers=self.cfg.workers,
                            pin_memory=self.device.type == "cuda")
        for x, y, m in loader:
            yield (x.to(self.device, non_blocking=True), torch.as_tensor(y).to(self.device, non_blocking=True),
                   m.to(self.device, non_blocking=True))

    def fit(self, split: Split, epochs: int, out: Path, use_masks: bool, progress: bool = True,
            augment: bool = False):
        """``use_masks``: hand the feedback masks to the model (evidence or a loss penalty);
        ``augment``: counterexamples instead, masked pixels replaced by fresh U(0, 1) noise."""
        cfg, model, main = self.cfg, self.model, self.group.is_main
        train = split.train.to(self.device) if isinstance(split.train, ImageSet) else split.train
        n = len(train)
        ckpt = out / CHECKPOINT
        bar = progress_bar(total=epochs, initial=self.epoch, desc=f"{cfg.name} [{cfg.mode}]", unit="epoch",
                           disable=not (progress and main))
        tty = progress and main and sys.stderr.isatty()
        while self.epoch < epochs:
            model.net.train()
            order = self._order(n)
            n_steps = math.ceil(len(order) / cfg.batch_size)
            total, t0, within = 0.0, time.time(), []
            steps = progress_bar(self._batches(train, order), total=n_steps, leave=False, disable=not tty,
                                 unit="batch", desc=f"epoch {self.epoch + 1}")
            unread = []  # (step, loss) not added yet: a loss on the device is read once the next step is launched
            for step, (x, y, m) in enumerate(steps):
                mask = m if use_masks else None
                if augment:
                    x = replace_with_noise(x, m)
                unread.append((step, self.step(x, y, mask, n)))
                ready = len(unread) - 1 if torch.is_tensor(unread[-1][1]) else len(unread)
                total += self._read_losses(unread[:ready], bar)
                del unread[:ready]
                if cfg.val_every_steps and split.val is not None and (step + 1) % cfg.val_every_steps == 0 \
                        and step + 1 < n_steps:
                    at = round(self.epoch + (step + 1) / n_steps, 3)
                    within.append({"epoch": at, f"val_{cfg.select_metric}": self._validate(split, out, at)[0]})
                    model.net.train()
            total += self._read_losses(unread, bar)
            self.schedule.step()
            self.epoch += 1
            record = {"epoch": self.epoch, "loss": sum(self.group.gather(total)) / n, "seconds": time.time() - t0}
            if within:
                record["validations_within_epoch"] = within
            if split.val is not None and (self.epoch % cfg.val_every == 0 or self.epoch == epochs):
                score, chance, others = self._validate(split, out, self.epoch)
                record[f"val_{cfg.select_metric}"] = score
                record["val_at_chance"] = chance
                record.update(others)
                # patience counts these validations: did any validation since the last one improve?
                self.stale = 0 if self.best_score > self.checked_best else self.stale + 1
                self.checked_best = self.best_score
            elif split.val is None and main:
                save_model(out / MODEL, model, cfg, train.image_shape, train.num_classes, {"epoch": self.epoch})
                self.best_epoch = self.epoch
            self.history.append(record)
            state = self.state()
            if main:
                atomic_write(ckpt, lambda p: torch.save(state, p))
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", val=f"{record.get(f'val_{cfg.select_metric}', float('nan')):.4f}",
                            best=f"{self.best_score:.4f}@{self.best_epoch}")
            self._check_learning(total / max(n_steps, 1), n)
            if cfg.patience is not None and self.stale >= cfg.patience:
                if main:
                    bar.write(f"early stop: no validation gain in {cfg.patience} validations", file=sys.stderr)
                break
        bar.close()
        self.group.barrier()

    def _read_losses(self, losses, bar) -> float:
        """The sum of the ``(step, loss)`` pairs' losses as floats; stops the run at a loss that is
        not finite."""
        total = 0.0
        for step, loss in losses:
            loss = float(loss)
            if not math.isfinite(loss):
                bar.close()
                cfg = self.cfg
                raise TrainingError(
                    f"the loss became {loss} at epoch {self.epoch + 1}, step {step + 1}; lower the learning "
                    f"rate (--set lr={cfg.lr / 10:g}) or the initial scale (--set rho_init={cfg.rho_init - 1:g}), "
                    "and check the inputs; no results were written")
            total += loss
        return total

    def _scores(self, images) -> dict:
        """Classification metrics of the posterior-mean network on a validation set."""
        probs = torch.cat([mean_probs(self.model, x, device=self.device)
                           for x, _, _ in batches(images, 1000, workers=self.cfg.workers)])
        return classification_metrics(images.labels.numpy(), probs.numpy())

    def _validate(self, split: Split, out: Path, epoch) -> tuple[float, bool, dict]:
        """Score the model on the validation set (process 0; the others receive the score) and save it
        as the selected model when it is the best so far (``epoch`` may have a fraction for
        validations inside an epoch). Returns the score, whether the validation balanced accuracy is
        at chance (on the ordinary images when the validation images are counterfactual), and the
        scores on the other validation sets (``split.extra_val``, e.g. the ordinary images beside
        counterfactual ones: ``val_ordinary_<metric>``)."""
        cfg, train = self.cfg, split.train
        result = None
        if self.group.is_main:
            m = self._scores(split.val)
            extra = {name: self._scores(images) for name, images in split.extra_val.items()}
            others = {f"val_{name}_{cfg.select_metric}": e[cfg.select_metric] for name, e in extra.items()}
            # whether the network learns at all is asked of the images as they are: a network that reads
            # the marked pattern is at chance (or below) on counterfactual ones, yet it learns
            ordinary = split.extra_val.get("ordinary", split.val)
            learning = extra.get("ordinary", m)["balanced_accuracy"]
            result = (m[cfg.select_metric], at_chance(learning, train.num_classes, len(ordinary)), others)
            if result[0] > self.best_score:
                save_model(out / MODEL, self.model, cfg, train.image_shape, train.num_classes,
                           {"epoch": epoch, f"val_{cfg.select_metric}": result[0]})
        score, chance, others = self.group.broadcast(result)
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
        return score, chance, others

    def _check_learning(self, loss_per_step: float, n: int):
        """Stop a Bayesian model that is not learning: every validation of the first
        :data:`CHANCE_EPOCHS` epochs (or more) at chance while the KL term is most of the loss means
        that the posterior cannot leave the prior on ``n`` training images; while the loss is
        negative, that the feedback evidence outweighs the labels."""
        checks = [h["val_at_chance"] for h in self.history if "val_at_chance" in h]
        if not isinstance(self.model, FeedbackBNN) or self.epoch < CHANCE_EPOCHS or len(checks) < 2 \
                or not all(checks):
            return
        lam = getattr(self.model.evidence, "lam", None)
        if loss_per_step <= 0 and lam is not None:  # only the observed zeros' density can make it negative
            raise TrainingError(
                f"validation balanced accuracy stayed at chance for {self.epoch} epochs while the feedback "
                f"evidence outweighs the labels (the loss per step is {loss_per_step:.3g}: the observed zeros are "
                f"all the network fits); lower its weight (--set lam={lam / 10:.2g}) or let validation choose it "
                "(--set lam=auto)")
        try:
            with torch.no_grad():
                kl = self.model.kl_scale * float(self.model.kl())
        except NotImplementedError:  # a prior without a closed-form KL
            return
        if kl > 0.5 * loss_per_step:
            cfg = self.cfg
            if float(torch.nn.functional.softplus(torch.tensor(float(cfg.rho_init)))) >= 0.5 * cfg.prior_scale:
                fix = f"start from a smaller posterior scale (--set rho_init={cfg.rho_init - 3:g}) or a pretrained network"
            else:  # the scales start well below the prior's: the KL is large because the network is
                weights = sum(layer.weight_loc.numel() + layer.bias_loc.numel()
                              for layer in bayesian_layers(self.model.net).values())
                fix = (f"the network's ~{weights:,} Bayesian weights are too many for them; start from pretrained "
                       f"weights (pretrained: true), temper their KL (--set kl_scale={min(cfg.kl_scale * 1e-3, 1e-4):g}) "
                       "or use a smaller network (architecture: lenet)")
            raise TrainingError(
                f"validation balanced accuracy stayed at chance for {self.epoch} epochs while the KL term is "
                f"{kl / loss_per_step:.0%} of the loss: the posterior cannot leave the prior on {n} training "
                f"images; {fix}, and check the labels")

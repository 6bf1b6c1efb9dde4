"""``lam: auto``: the weight of the feedback evidence chosen on the validation images.

How strongly the evidence pulls depends on more than lambda: the term is lambda times a sum over
every observed pre-activation of -log N(0; mu_U, sigma_U^2), so it grows with the marked area,
with the image size (the cells of the last convolution) and with 1 / sigma_U^2 (the posterior's
initial scale). Measured on LeNet at the start of training, the evidence with lambda = 1e-3 is 0.2%
of the likelihood term on Decoy MNIST (28 px, rho_init -2) and 150 times the likelihood term on a
64-px photograph task with rho_init -5; the lambda that helps most differs by a factor of 100
between two such photograph tasks (docs/method.md, "Choosing lambda"). No single number carries
over, so the default is to choose it.

The search is successive halving (Jamieson & Talwalkar 2016) over :data:`GRID`, values of lambda
per image relative to the size of the evidence layer: lambda = g / (C u v), so that g is the weight
of an image whose mask covers the whole layer, whatever the image size. ``train`` adds a fifth
candidate, no feedback at all (:data:`NO_FEEDBACK`, g = 0). The candidates train for about a sixth
of the epochs, the better half (rounded up) continues to a third, and the best one goes on to the
full run, which is the run itself (no retraining). A candidate's score is its best validation
score so far (``select_metric``, the score that selects the model); ties go to the smaller lambda
(no feedback first). Any other candidate of the second budget whose accuracy lies within one
standard error of the best one's (:func:`indistinguishable`: the validation images cannot tell the
two apart) goes on to the full run as well, and the better one at the end is kept.

No feedback goes on to the full run whatever its rank on the way (the ``reference`` of
:func:`successive_halving`), and it is kept unless the best lambda beats it there by more than one
standard error: an early lead is not always kept (on a task whose marked regions the label does
not depend on, feedback led no feedback by 0.035 at a sixth of the epochs and ended 0.029 below it
at the end, and 0.166 below on the test images; docs/results/own-images.md). When no feedback is
kept, the run is trained without the evidence and says so (a warning in the log and in
``metrics.json``), instead of making a dataset whose marked regions the network does not read
worse. On 20 epochs the search of ``train`` trains 40 to 57 epochs in all (5 x 3, then 3 or 4 x 4,
then 13 for the best lambda and 13 for no feedback), 2.0 to 2.85 times a plain run, and 13 more
for each further finalist. ``finetune``, whose feedback a
person gave on purpose, has no no-feedback candidate but one more decade up (:data:`FINETUNE_GRID`),
and its lambda is relative to the share of training images that carry a mask as well: lambda =
g / (C u v x share). A person annotates a few images or, with propagation, most of them; without
the share the best value lay outside the grid on one rule or the other (79 against 1,963 masked
images of the two Decoy MNIST rules, docs/results/annotation.md).

The validation images decide, so they must show the shortcut failing: ``validation_decoys:
exchange`` (the folder configs' default) puts the marked pattern on the other classes' images.

Each candidate is an ordinary run directory under ``OUT/lam_search/`` (resumable); the search's
record is ``OUT/lam_search.json`` (the grid, every candidate's scores, the choice, the time) and
goes into ``metrics.json`` as ``lam_search``; the candidates' directories are removed once the
chosen one is copied to ``OUT``. Running the command again reuses the record, unless it was made
by another rule of the search (:data:`RULE`) or for another config.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import ConfigError
from .build import build_net, resolve_device
from .config import AUTO, Config, config_difference
from .distributed import join
from .protocol import prepare_split
from .rundir import CHECKPOINT, MODEL, atomic_write, resumable_state, writing
from .runs import finetune, train

__all__ = ["GRID", "FINETUNE_GRID", "NO_FEEDBACK", "RECORD", "evidence_entries", "rungs", "successive_halving",
           "indistinguishable", "train_choosing_lam",
           "finetune_choosing_lam"]

#: lambda per image, relative to the evidence layer's size: lambda = g / (channels x height x width)
GRID = (0.003, 0.03, 0.3, 3.0)
#: ``finetune``'s grid: one decade further up. It starts from a network that has learned the
#: shortcut, and [001] fine-tunes with lambda = 1 (g = 1,936 on LeNet at 28 px)
FINETUNE_GRID = GRID + (30.0,)
#: the candidate of ``train``'s search that observes nothing: lambda = 0, the run without evidence
NO_FEEDBACK = 0.0
RECORD = "lam_search.json"
#: the rule a record was made by: a record of another rule is not reused (the search runs again)
RULE = "successive halving; no feedback to the full budget, kept unless beaten by more than one standard error"
SEARCH_DIR = "lam_search"


def evidence_entries(cfg: Config, input_shape, num_classes: int) -> int:
    """C x u x v: the number of pre-activations of the evidence layer for one image.

    >>> evidence_entries(Config(), (1, 28, 28), 10)          # LeNet: 16 x 11 x 11
    1936
    """
    net = build_net(dataclasses.replace(cfg, pretrained=False, init_from=None), input_shape, num_classes,
                    initialize=False).eval()
    with torch.no_grad():
        mean, _ = net.evidence_moments(torch.zeros(1, *input_shape))
    return mean[0].numel()


def rungs(epochs: int) -> list[int]:
    """The epochs at which successive halving compares its candidates: about a sixth and a third of
    ``epochs``, then ``epochs``.

    >>> rungs(20), rungs(3), rungs(1)
    ([3, 7, 20], [1, 2, 3], [1])
    """
    first = max(1, round(epochs / 6))
    second = max(first + 1, round(epochs / 3))
    return sorted({min(first, epochs), min(second, epochs), epochs})


def successive_halving(candidates: list, fit: Callable[[object, int], float], budgets: list[int],
                       echo: Callable[[str], None] = lambda s: None,
                       close: Optional[Callable[[float, float], bool]] = None,
                       reference: Optional[object] = None) -> tuple[object, dict]:
    """Fit every candidate to ``budgets[0]`` epochs, keep the better half (rounded up), fit those to
    the next budget, and so on; the last budget fits the best one, and with it every candidate of
    the budget before whose score is ``close`` to the best one's (validation cannot tell them
    apart; default: none).
    ``reference`` (one of ``candidates``) goes on to every budget whatever its rank, and is chosen
    at the end unless the best candidate's score is above its own and not ``close`` to it: the
    others must beat it where it counts, at the full budget, by more than validation's error.
    ``fit(candidate, epochs)`` resumes a candidate and returns its score (higher is better). Returns
    the best candidate and every score ``{candidate: {epochs: score}}``.

    >>> scores = {1: [0.5, 0.6, 0.9], 2: [0.7, 0.8, 0.85], 3: [0.4, 0.45, 0.5], 4: [0.6, 0.9, 0.95]}
    >>> best, seen = successive_halving([1, 2, 3, 4], lambda c, e: scores[c][e - 1], [1, 2, 3])
    >>> best, seen[4], seen[1]
    (4, {1: 0.6, 2: 0.9, 3: 0.95}, {1: 0.5})
    >>> best, seen = successive_halving([1, 2, 3, 4], lambda c, e: scores[c][e - 1], [1, 2, 3],
    ...                                 close=lambda a, b: abs(a - b) <= 0.1)
    >>> best, seen[2]                               # 0.8 is close to 0.9: both go on to the end
    (4, {1: 0.7, 2: 0.8, 3: 0.85})
    >>> best, seen = successive_halving([1, 2, 3, 4], lambda c, e: scores[c][e - 1], [1, 2, 3],
    ...                                 close=lambda a, b: abs(a - b) <= 0.06, reference=1)
    >>> best, seen[1]                               # last at epoch 1, 0.9 at the end: 4's 0.95 is too close
    (1, {1: 0.5, 2: 0.6, 3: 0.9})
    """
    if reference is not None and reference not in candidates:
        raise ValueError(f"the reference {reference!r} must be one of the candidates {list(candidates)!r}")
    alive, seen = list(candidates), {c: {} for c in candidates}
    rank = {c: i for i, c in enumerate(candidates)}
    for k, epochs in enumerate(budgets):
        for c in alive:
            seen[c][epochs] = fit(c, epochs)
            echo(f"lam search: {c} at epoch {epochs}: validation {seen[c][epochs]:.4f}")
        order = sorted(alive, key=lambda c: (-seen[c][epochs], rank[c]))  # ties: the one listed first
        if k == len(budgets) - 2:  # the last budget: the best, and whichever validation cannot tell from it
            best = seen[order[0]][epochs]
            alive = order[:1] + [c for c in order[1:] if close is not None and close(best, seen[c][epochs])]
        else:
            alive = order[: max(1, math.ceil(len(order) / 2))]
        if reference is not None and reference not in alive and k < len(budgets) - 1:
            alive.append(reference)
    winner = alive[0]
    if reference is not None and winner != reference:
        mine, theirs = seen[reference][budgets[-1]], seen[winner][budgets[-1]]
        if theirs <= mine or (close is not None and close(theirs, mine)):
            winner = reference
    return winner, seen


def indistinguishable(a: float, b: float, n: int) -> bool:
    """Whether two accuracies measured on the same ``n`` validation images lie within one standard
    error of their difference, binomial and as if independent (which errs towards "yes"): the rule
    by which successive halving takes both finalists to the last budget.

    >>> indistinguishable(0.931, 0.927, 2000), indistinguishable(0.931, 0.905, 2000)
    (True, False)
    """
    return abs(a - b) <= math.sqrt((a * (1 - a) + b * (1 - b)) / max(n, 1))


def _echo(s: str):
    print(s, file=sys.stderr)


def _warn_if_ordinary_validation(cfg: Config):
    if cfg.validation_decoys == "train":
        _echo("warning: lam: auto chooses lambda on the validation images as they are (validation_decoys: train), "
              "where the marked pattern predicts the label as in training; set validation_decoys: exchange")


#: the scores whose sampling error the binomial one of :func:`indistinguishable` stands for: a
#: proportion's, and about that of macro F1, precision and recall on classes of similar size
PROPORTIONS = ("accuracy", "balanced_accuracy", "f1_macro", "precision_macro", "recall_macro")


def _close(cfg: Config, n_val: int):
    """When two candidates' validation scores count as one (:func:`indistinguishable` on ``n_val``
    images) for a score of :data:`PROPORTIONS`; for another ``select_metric``, never."""
    if cfg.select_metric not in PROPORTIONS or not n_val:
        return None
    return lambda a, b: indistinguishable(a, b, n_val)


def _search(cfg: Config, out: Path, entries: float, epochs: int, fit, resume: bool, progress: bool,
            grid: tuple = GRID, per: str = "pre-activations", close=None) -> tuple[float, dict]:
    """Choose lambda for ``cfg`` (``fit(lam, epochs, where) -> validation score``); returns it and the
    record, leaving the chosen candidate's checkpoint and model in ``out`` to be resumed."""
    out = Path(out)
    record_file = out / RECORD
    if resume and record_file.exists():
        record = json.loads(record_file.read_text())
        changed = config_difference(record["config"], cfg.to_dict(),
                                    ignore=("epochs", "finetune_epochs", "device", "threads", "workers"))
        if record.get("grid") != list(grid) or record.get("entries") != entries:
            changed.append("the grid of lambda")
        if not changed and record.get("rule") == RULE:
            return float(record["lam"]), record
        if progress:
            why = (f"for another config ({', '.join(changed)})" if changed else
                   f"by an earlier rule of the search ({record.get('rule', 'no feedback stopped by rank')})")
            _echo(f"lam: auto: {record_file} was made {why}; searching again")
    group, _ = join(resolve_device(cfg.device))
    # nobody else trains into OUT meanwhile (under torchrun, process 0 holds it and writes for the
    # group); train claims it again afterwards
    with writing(out, claim=group.is_main):
        return _halve(cfg, out, entries, epochs, fit, progress and group.is_main, group, grid, per, close)


def _halve(cfg: Config, out: Path, entries: float, epochs: int, fit, progress: bool, group,
           candidates: tuple, per: str = "pre-activations", close=None) -> tuple[float, dict]:
    if progress:
        _warn_if_ordinary_validation(cfg)
    record_file = out / RECORD
    grid = {g: g / entries for g in candidates}
    where = {g: out / SEARCH_DIR / f"g{g:g}" for g in candidates}
    t0 = time.time()
    budgets = rungs(epochs)
    echo = _echo if progress else (lambda s: None)
    echo(f"lam: auto: {len(candidates)} values of lambda, {', '.join(f'{v:.3g}' for v in grid.values())} "
         f"(per image: {', '.join(f'{g:g}' for g in candidates)} / {entries:.6g} {per}"
         f"{'; 0 is no feedback' if NO_FEEDBACK in candidates else ''}), compared at epochs "
         f"{', '.join(map(str, budgets))} on the validation images")
    reference = NO_FEEDBACK if NO_FEEDBACK in candidates else None
    best, seen = successive_halving(list(candidates), lambda g, e: fit(grid[g], e, where[g]), budgets,
                                    echo=lambda s: echo(s.replace("lam search: ", "lam search: g=")), close=close,
                                    reference=reference)
    winner = where[best]
    record = {"lam": grid[best], "per_image": best, "entries": entries, "grid": list(candidates),
              "epochs": budgets, "scores": {f"{g:g}": {str(e): s for e, s in seen[g].items()} for g in candidates},
              "finalists": [g for g in candidates if budgets[-1] in seen[g]],
              "epochs_trained": sum(max(seen[g]) for g in candidates if seen[g]),
              "seconds": time.time() - t0, "rule": RULE, "config": cfg.to_dict()}
    if group.is_main:
        for name in (CHECKPOINT, MODEL):
            shutil.copyfile(winner / name, out / name)
        atomic_write(record_file, lambda p: p.write_text(json.dumps(record, indent=2)))
        shutil.rmtree(out / SEARCH_DIR, ignore_errors=True)
    group.barrier()
    chose = ("no feedback (lambda = 0): no lambda did better on the validation images by more than their "
             "standard error" if best == NO_FEEDBACK else f"lambda = {grid[best]:.3g} (per image {best:g})")
    chose += f" in {record['seconds']:.0f} s"
    if reference is not None:
        final = {g: seen[g][budgets[-1]] for g in candidates if budgets[-1] in seen[g]}
        lead = max((g for g in final if g != reference), key=final.get, default=None)
        if lead is not None:
            chose += (f" (validation at epoch {budgets[-1]}: no feedback {final[reference]:.4f}, the best lambda, "
                      f"per image {lead:g}, {final[lead]:.4f})")
    echo(f"lam: auto chose {chose}; training it on to epoch {epochs}")
    return grid[best], record


def train_choosing_lam(cfg: Config, out, resume: bool = True, progress: bool = True, split=None) -> dict:
    """:func:`~pyro_ebnn.experiment.runs.train`, with lambda chosen on the validation images first
    when the config says ``lam: auto`` and ``mode: feedback`` (module docstring)."""
    if cfg.lam != AUTO or cfg.mode != "feedback":
        return train(cfg, out, resume=resume, progress=progress, split=split)
    out = Path(out)
    split = split or prepare_split(cfg, progress=progress)
    if split.val is None:
        raise ConfigError("lam: auto chooses lambda on validation images and this data has none; set lam to a number")
    if not resume:
        (out / RECORD).unlink(missing_ok=True)
        shutil.rmtree(out / SEARCH_DIR, ignore_errors=True)
    if resume:
        resumable_state(out, cfg)  # a run of another config in ``out`` is refused before anything is trained
    entries = evidence_entries(cfg, split.train.image_shape, split.train.num_classes)

    def fit(lam, epochs, where):
        return train(dataclasses.replace(cfg, epochs=epochs), where, resume=True, progress=progress, split=split,
                     lam=lam, evaluate=False)[f"val_{cfg.select_metric}"]
    lam, record = _search(cfg, out, entries, cfg.epochs, fit, resume, progress, grid=(NO_FEEDBACK,) + GRID,
                          close=_close(cfg, len(split.val)))
    record = {k: v for k, v in record.items() if k != "config"}
    return train(cfg, out, resume=True, progress=progress, split=split, lam=lam, extra={"lam_search": record})


def finetune_choosing_lam(run_dir, cfg: Config, out, resume: bool = True, progress: bool = True) -> dict:
    """:func:`~pyro_ebnn.experiment.runs.finetune`, with the fine-tuning lambda chosen on the
    validation images first when it is ``auto`` (``finetune_lam``, or ``lam`` when that is null)."""
    lam = cfg.finetune_lam if cfg.finetune_lam is not None else cfg.lam
    if lam != AUTO:
        return finetune(run_dir, cfg, out, resume=resume, progress=progress)
    out = Path(out)
    if not resume:
        (out / RECORD).unlink(missing_ok=True)
        shutil.rmtree(out / SEARCH_DIR, ignore_errors=True)
    split = prepare_split(cfg, annotated=cfg.finetune_budget, feedback=cfg.finetune_feedback, progress=progress)
    if not (split.feedback["feedback_irrelevant"] > 0 if split.feedback else cfg.finetune_budget > 0):
        return finetune(run_dir, cfg, out, resume=resume, progress=progress)  # no feedback: nothing to weigh
    if resume:  # as finetune trains it: with feedback; a run of another config in ``out`` is refused
        resumable_state(out, dataclasses.replace(cfg, mode="feedback"))
    # lambda = g / (C u v x the share of training images with a mask): the evidence of a few annotated
    # images weighs against the likelihood of all of them as that of many does
    # (no annotated image with a mask: no evidence to weigh, any lambda is the same run)
    share = float(split.train.has_mask.float().mean()) or 1.0
    entries = evidence_entries(cfg, split.train.image_shape, split.train.num_classes) * share
    per = f"pre-activations x {share:.3g}, the share of training images with a mask"

    def fit(value, epochs, where):
        return finetune(run_dir, dataclasses.replace(cfg, finetune_epochs=epochs), where, resume=True,
                        progress=progress, lam=value, evaluate=False)[f"val_{cfg.select_metric}"]
    chosen, record = _search(cfg, out, entries, cfg.finetune_epochs, fit, resume, progress, grid=FINETUNE_GRID,
                             per=per, close=_close(cfg, len(split.val) if split.val is not None else 0))
    record = {k: v for k, v in record.items() if k != "config"}
    return finetune(run_dir, cfg, out, resume=True, progress=progress, lam=chosen, extra={"lam_search": record})

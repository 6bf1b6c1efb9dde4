"""The data and random state of one run: the fold of the [000] protocol, the masks it keeps, seeds
and threads."""
from __future__ import annotations

from typing import Optional

import pyro
import torch

from ..data import Split, fold_split, keep_fraction_of_masks, load_dataset
from .config import Config

__all__ = ["prepare_split", "set_seed", "use_threads"]


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


def set_seed(seed: int):
    pyro.set_rng_seed(seed)  # seeds torch, numpy and random


def use_threads(threads: Optional[int]):
    """Run torch's CPU operations on ``threads`` threads (None: torch's choice)."""
    if threads:
        torch.set_num_threads(threads)

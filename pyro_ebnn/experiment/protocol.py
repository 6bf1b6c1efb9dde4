"""The data and random state of one run: the fold of the [000] protocol, the masks it keeps, seeds
and threads."""
from __future__ import annotations

from typing import Optional

import pyro
import torch

from ..data import ImageSet, LabelledImages, Split, batches, fold_split, keep_fraction_of_masks, load_dataset
from .config import Config

__all__ = ["prepare_split", "images_of", "set_seed", "use_threads"]


def prepare_split(cfg: Config, annotated: Optional[float] = None) -> Split:
    """Fold ``cfg.fold`` of the [000] protocol. Feedback masks are kept on ``cfg.mask_fraction`` of
    the training images, or, when fine-tuning, on an ``annotated`` budget chosen uniformly at random
    (a fraction if < 1, else a count)."""
    trainval, tests = load_dataset(cfg)
    train_idx, val_idx = fold_split(len(trainval), cfg.num_folds, cfg.fold, cfg.data_seed)
    train = trainval.subset(train_idx)
    val = (tests.pop("validation") if "validation" in tests else trainval).subset(val_idx)
    if annotated is None:
        train = train.keep_masks(keep_fraction_of_masks(len(train), cfg.mask_fraction, cfg.seed + 17))
    else:
        count = int(round(annotated * len(train))) if annotated < 1 else int(annotated)
        train = train.keep_masks(keep_fraction_of_masks(len(train), min(count, len(train)) / len(train), cfg.seed + 29))
    test = tests.pop("test")
    return Split(train, val, test, tests)


def images_of(images: LabelledImages, workers: int = 0, batch_size: int = 256):
    """The images of a set: the tensor of an in-memory set, or an iterator over batches of a set
    read from disk (for statistics such as the standardization's mean and std)."""
    if isinstance(images, ImageSet):
        return images.images
    return (x for x, _, _ in batches(images, batch_size, workers=workers))


def set_seed(seed: int):
    pyro.set_rng_seed(seed)  # seeds torch, numpy and random


def use_threads(threads: Optional[int]):
    """Run torch's CPU operations on ``threads`` threads (None: torch's choice)."""
    if threads:
        torch.set_num_threads(threads)

"""The data and random state of one run: the fold of the [000] protocol, the masks it keeps, the
validation images it selects on, seeds and threads."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pyro
import torch

from ..data import (ImageSet, LabelledImages, Split, batches, counterfactual, fold_split, in_memory,
                    keep_fraction_of_masks, load_dataset)
from ..data.noise import with_feedback_noise
from ..data.streamed import check_decodes
from .config import Config
from .feedback import training_feedback

__all__ = ["COUNTERFACTUAL_SEED", "FEEDBACK_NOISE_SEED", "IN_MEMORY_BYTES", "prepare_split", "read_small_sets", "marked_replaced", "training_indices", "images_of", "set_seed", "use_threads"]

#: offset of the counterfactual validation seed from data_seed
COUNTERFACTUAL_SEED = 7919
#: offset of the seed of feedback_noise's draws from the run's seed
FEEDBACK_NOISE_SEED = 41
#: image sets on disk whose decoded pixels come to at most this many bytes are read into memory once
IN_MEMORY_BYTES = 2 * 1024 ** 3


def prepare_split(cfg: Config, annotated: Optional[float] = None, feedback=None, progress: bool = True) -> Split:
    """Fold ``cfg.fold`` of the [000] protocol (or, when the dataset has a validation set of its
    own, all train+val images for training and that set for validation). Feedback masks are kept
    on ``cfg.mask_fraction`` of the training images, or are those of ``cfg.feedback_store``, or,
    when fine-tuning, on an ``annotated``
    budget chosen uniformly at random (a fraction if < 1, else a count), then made incomplete or
    wrong as ``cfg.feedback_noise`` says (:mod:`pyro_ebnn.data.noise`; the validation images' masks
    too, which the counterfactual validation replaces), or are an annotator's: the
    answers of the ``feedback`` store (:func:`~pyro_ebnn.experiment.feedback.training_feedback`;
    ``split.feedback`` then counts the decisions).

    ``cfg.validation_decoys``: ``train`` validates on the images as they are; ``test`` (Decoy
    MNIST) on the same digits with the decoys of the test rule; ``noise`` / ``swap`` on the
    validation images with their masked regions replaced (:mod:`pyro_ebnn.data.counterfactual`).
    In the last three cases ``split.val`` is the altered set and ``split.extra_val["ordinary"]``
    the images as they are.

    Images read from disk are all decoded first (:func:`~pyro_ebnn.data.streamed.check_decodes`,
    with a progress bar unless ``progress`` is false), so that a bad file stops a run before it
    trains or writes anything."""
    trainval, sets = load_dataset(cfg)
    check_decodes([trainval, *sets.values()], cfg.workers, progress)
    trainval, sets = read_small_sets(trainval, sets, cfg.workers)
    train_idx = training_indices(cfg, trainval, sets)
    test = sets.pop("test")
    sets.update(marked_replaced(test, cfg.data_seed + COUNTERFACTUAL_SEED + 1))
    own_val, other_rule = sets.pop("val", None), sets.pop("validation", None)
    if own_val is not None:
        train, val = trainval, own_val
        altered = None
    else:
        val_idx = np.setdiff1d(np.arange(len(trainval)), train_idx)
        train, val = trainval.subset(train_idx), trainval.subset(val_idx)
        altered = other_rule.subset(val_idx) if other_rule is not None else None
    val = with_feedback_noise(val, cfg.feedback_noise, cfg.seed + FEEDBACK_NOISE_SEED + 1)  # the user's masks there too
    if cfg.validation_decoys in ("noise", "swap", "exchange"):
        altered = counterfactual(val, cfg.validation_decoys, cfg.data_seed + COUNTERFACTUAL_SEED)
    if feedback is None and annotated is None:
        feedback = cfg.feedback_store  # training on a store's masks (fine-tuning names its own)
    if feedback is not None:
        train, used = training_feedback(feedback, cfg, trainval, train_idx, train)
    else:
        train, used = train.keep_masks(_kept_masks(cfg, len(train), annotated)), {}
        train = with_feedback_noise(train, cfg.feedback_noise, cfg.seed + FEEDBACK_NOISE_SEED)
    if altered is None:
        return Split(train, val, test, sets, feedback=used)
    return Split(train, altered, test, sets, {"ordinary": val}, feedback=used)


def read_small_sets(trainval: LabelledImages, sets: dict, workers: int = 0,
                    limit: int = IN_MEMORY_BYTES) -> tuple[LabelledImages, dict]:
    """``trainval`` and ``sets`` read into memory once when they are image files on disk whose
    decoded pixels (float32) and masks come to at most ``limit`` bytes together; larger data stays
    streamed from disk, epoch by epoch. Reading once spares every epoch its decoding and its
    DataLoader start-up: on 2 CPU cores a 64-px LeNet epoch of 2,000 photographs read from PNG files
    took 5.6 s with 2 DataLoader workers, and the whole data set reads once in a few seconds."""
    every = [trainval, *sets.values()]
    if all(isinstance(s, ImageSet) for s in every):
        return trainval, sets
    pixels = sum(len(s) * (4 * math.prod(s.image_shape) + math.prod(s.image_shape[1:])) for s in every)
    if pixels > limit:
        return trainval, sets
    return in_memory(trainval, workers=workers), {k: in_memory(v, workers=workers) for k, v in sets.items()}


def marked_replaced(test: LabelledImages, seed: int) -> dict:
    """The shortcut report's extra test sets: the test images with their marked regions replaced by
    noise (``marked_noise``) and by another class's pixels (``marked_swap``), when any test image
    has a mask (:mod:`pyro_ebnn.data.counterfactual`)."""
    if not bool(test.has_mask.any()):
        return {}
    kinds = ("noise", "swap") if len(torch.unique(test.labels)) > 1 else ("noise",)
    return {f"marked_{kind}": counterfactual(test, kind, seed) for kind in kinds}


def training_indices(cfg: Config, trainval: LabelledImages, sets: dict) -> np.ndarray:
    """The positions in train+val of the images a run of ``cfg`` trains on: all of them when the
    dataset has a validation set of its own (``sets["val"]``), else the folds other than
    ``cfg.fold``."""
    if "val" in sets:
        return np.arange(len(trainval))
    return fold_split(len(trainval), cfg.num_folds, cfg.fold, cfg.data_seed)[0]


def _kept_masks(cfg: Config, n: int, annotated: Optional[float]) -> torch.Tensor:
    """Which of the ``n`` training images keep their masks: ``cfg.mask_fraction`` of them, or an
    ``annotated`` budget (a fraction if < 1, else a count), at random."""
    if annotated is None:
        return keep_fraction_of_masks(n, cfg.mask_fraction, cfg.seed + 17)
    count = int(round(annotated * n)) if annotated < 1 else int(annotated)
    return keep_fraction_of_masks(n, min(count, n) / n, cfg.seed + 29)


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

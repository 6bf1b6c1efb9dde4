"""An annotator's feedback as the training masks of a fine-tuning run ([001] Fig. 1, step 4).

The answers live in a feedback store (:class:`~pyro_ebnn.data.store.FeedbackStore`, written by
``python -m pyro_ebnn.run annotate``). A store belongs to one dataset: its fingerprint is the data
config (:data:`~pyro_ebnn.experiment.config.DATA_KEYS`) plus the labels of the train+val images,
and its image index is the position in train+val, not in one fold, so one store serves every fold.

How each decision enters the fine-tuning (every annotator's answers, combined as
:meth:`~pyro_ebnn.data.store.FeedbackStore.combined` does):

  irrelevant  annotated, with the annotator's mask: the last convolution's pre-activations in the
              marked region are observed to be 0 ([000] Eq. 4, [001] Eq. 15)
  accepted    annotated with no mask. Feedback in this model only rejects regions ([001] §6: "only
              rejection of attribution regions are supported"), so an accepted explanation adds no
              evidence; it is counted
  skipped     not annotated

A mask propagated from one answer to other images (a mark made once on a group, a region found
again by the network's features; :mod:`pyro_ebnn.annotate.discovery`) counts like an annotator's
own "irrelevant" answer for an image that has no non-skipped answer of its own; such images are
also counted as ``feedback_propagated``.

Only the images the run trains on take part; answers about the fold's validation images are
counted (``feedback_not_in_train``) and left out.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data import LabelledImages, with_masks
from ..data.store import FeedbackStore, StoreError, dataset_fingerprint
from .config import DATA_KEYS, Config

__all__ = ["store_fingerprint", "open_store", "training_feedback"]


def store_fingerprint(cfg: Config, labels) -> str:
    """The fingerprint of a dataset's feedback store: its data config and its train+val labels.

    >>> a = store_fingerprint(Config(rule="corners"), [0, 1, 2])
    >>> a == store_fingerprint(Config(rule="position"), [0, 1, 2]), a == store_fingerprint(Config(rule="corners"), [0, 1, 1])
    (False, False)
    """
    data = json.dumps({key: getattr(cfg, key) for key in DATA_KEYS}, sort_keys=True)
    return dataset_fingerprint("pyro-ebnn feedback store", data, np.asarray(labels, dtype=np.int64))


def open_store(path, cfg: Config, trainval: LabelledImages, annotator: str = "anonymous",
               must_exist: bool = False) -> FeedbackStore:
    """The feedback store at ``path`` for the train+val images of ``cfg``'s dataset (created when
    missing, unless ``must_exist``); a store of another dataset is refused in one line."""
    path = Path(path)
    if must_exist and not path.is_file():
        raise StoreError(f"no feedback store at {path}; write one with: python -m pyro_ebnn.run annotate "
                         f"--run RUN_DIR --store {path} ...")
    return FeedbackStore(path, store_fingerprint(cfg, trainval.labels.numpy()), tuple(trainval.image_shape[1:]),
                         annotator)


def training_feedback(path, cfg: Config, trainval: LabelledImages, train_idx,
                      train: LabelledImages) -> tuple[LabelledImages, dict]:
    """``train`` (the images ``train_idx`` of ``trainval``) with the store's masks in place of the
    dataset's, and what was used: ``feedback_store``, ``feedback_irrelevant``,
    ``feedback_accepted``, ``feedback_skipped`` (training images by decision),
    ``feedback_propagated`` (of the irrelevant ones, those whose mask was propagated) and
    ``feedback_not_in_train`` (answers about images this run does not train on)."""
    with open_store(path, cfg, trainval, must_exist=True) as store:
        answers = store.combined()
    beyond = [i for i in answers if i >= len(trainval)]
    if beyond:
        raise StoreError(f"{path} answers image {max(beyond)} but the dataset has {len(trainval)} train+val images; "
                         "the store was written for other data")
    train_idx = np.asarray(train_idx)
    position = {int(i): p for p, i in enumerate(train_idx)}
    used = {position[i]: a for i, a in answers.items() if i in position}
    counts = {d: sum(a.decision == d for a in used.values()) for d in ("irrelevant", "accepted", "skipped")}
    if counts["irrelevant"] + counts["accepted"] == 0:
        raise StoreError(f"{path} holds no mask or accepted explanation of this run's training images "
                         f"({len(answers)} answers in all); annotate with this run: python -m pyro_ebnn.run annotate "
                         f"--run RUN_DIR --store {path}")
    masks = {p: a.mask for p, a in used.items() if a.decision == "irrelevant"}
    summary = {"feedback_store": str(Path(path).resolve()), **{f"feedback_{d}": n for d, n in counts.items()},
               "feedback_propagated": sum(bool(a.propagated_from) for a in used.values()),
               "feedback_not_in_train": len(answers) - len(used)}
    return with_masks(train, masks), summary

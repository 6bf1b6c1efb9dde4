"""Simulated annotators: answers from the dataset's own masks, for experiments without a person.

  truth       marks the whole true mask of the image (the decoy), as a person who paints exactly
              what is irrelevant
  candidates  marks the proposed regions that share at least one pixel with the true mask, as a
              person who only clicks the regions the page proposes: the task's ``proposals``
              (``annotate --proposals``: compact high-attribution blobs by default, or [002] §4.2's
              candidate regions)

An image whose true mask is empty, or none of whose candidate regions touches it, gets
"accepted": there is nothing to reject.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional

import numpy as np

from ..data.store import FeedbackStore
from ..explain.regions import Regions

__all__ = ["ORACLES", "oracle_answer", "answer_with_oracle"]

ORACLES = ("truth", "candidates")


def oracle_answer(oracle: str, truth: np.ndarray, regions: Optional[Regions] = None) -> tuple[str, Optional[np.ndarray]]:
    """(decision, mask) of the ``oracle`` for an image with the true mask ``truth`` (bool H x W)
    and, for ``"candidates"``, its candidate ``regions``.

    >>> truth = np.zeros((4, 4), bool); truth[0, :2] = True
    >>> oracle_answer("truth", truth)[0], oracle_answer("truth", np.zeros((4, 4), bool))
    ('irrelevant', ('accepted', None))
    """
    truth = np.asarray(truth, bool)
    if oracle == "truth":
        return ("irrelevant", truth) if truth.any() else ("accepted", None)
    if oracle != "candidates":
        raise ValueError(f"unknown oracle {oracle!r}; use one of {', '.join(ORACLES)}")
    touching = [i for i in regions.ids if truth[regions.segments == i].any()]
    return ("irrelevant", regions.mask(touching)) if touching else ("accepted", None)


def answer_with_oracle(task, store: FeedbackStore, oracle: str) -> Counter:
    """Answer every image of ``task.indices`` as the ``oracle`` would, into ``store`` (one
    transaction per answer, as a person's); returns the count of each decision."""
    decisions = Counter()
    for index in task.indices:
        regions = task.candidates(index) if oracle == "candidates" else None
        decision, mask = oracle_answer(oracle, task.true_mask(index), regions)
        store.record(index, decision, mask)
        decisions[decision] += 1
    return decisions

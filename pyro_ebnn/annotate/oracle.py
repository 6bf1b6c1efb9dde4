"""Simulated annotators: answers from the dataset's own masks, for experiments without a person.

  truth       marks the whole true mask of the image (the decoy), as a person who paints exactly
              what is irrelevant
  candidates  marks the proposed regions that share at least one pixel with the true mask, as a
              person who only clicks the regions the page proposes: the task's ``proposals``
              (``annotate --proposals``: compact high-attribution blobs by default, or [002] §4.2's
              candidate regions)

An image whose true mask is empty, or none of whose candidate regions touches it, gets
"accepted": there is nothing to reject.

Actions, counted as a person spends them (:data:`ACTIONS`, for learning curves against effort):

  painter  paints the whole true mask: one action per image (:func:`image_actions`, ``truth``)
  clicker  clicks the proposed regions that touch the true mask: one action per click, one for an
           image with nothing to click (accepting it) (:func:`image_actions`, ``candidates``)
  groups   answers per discovered group (:mod:`~pyro_ebnn.annotate.discovery`), best-ranked
           first: marks the group's region where the true masks of its members agree (the pixels
           marked in more than half of them, :func:`group_mark`), once, and the mark is propagated
           to the group's images at the same place; one action per group looked at, also where
           nothing is marked (:func:`answer_groups`, rule ``place``)
  finder   answers per discovered group as ``groups`` does, but marks the true mask of the first of
           the group's shown images that has one and has the mark found again in every pool image
           that looks the same (:func:`answer_groups`, rule ``pixels``): "mark once, find
           everywhere", for a shortcut whose place differs from image to image
"""
from __future__ import annotations

from collections import Counter
from typing import Optional

import numpy as np

from ..data.store import FeedbackStore
from ..explain.regions import Regions
from .discovery import Group, majority_mask

__all__ = ["ORACLES", "ACTIONS", "GROUP_RULES", "oracle_answer", "answer_with_oracle", "image_actions",
           "group_mark", "marked_member", "answer_groups"]

ORACLES = ("truth", "candidates")
#: the simulated annotators whose actions are counted, and the oracle each answers images as (None: per group)
ACTIONS = {"painter": "truth", "clicker": "candidates", "groups": None, "finder": None}
#: the propagation rule of each annotator that answers per group
GROUP_RULES = {"groups": "place", "finder": "pixels"}


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


def image_actions(oracle: str, truth: np.ndarray, regions: Optional[Regions] = None) -> tuple[str, Optional[np.ndarray], int]:
    """(decision, mask, actions) of ``oracle`` on one image: ``truth`` (the painter) spends one
    action; ``candidates`` (the clicker) one per proposed region it clicks, at least one (the
    accept).

    >>> from pyro_ebnn.explain.regions import Regions
    >>> segments = np.array([[0, 1], [2, 3]]); regions = Regions(segments, np.array([0, 1, 3]), None, (4,), None)
    >>> truth = np.array([[True, True], [False, False]])
    >>> image_actions("candidates", truth, regions)[2], image_actions("truth", truth)[2]
    (2, 1)
    """
    decision, mask = oracle_answer(oracle, truth, regions)
    if oracle == "truth":
        return decision, mask, 1
    touching = [i for i in regions.ids if np.asarray(truth, bool)[regions.segments == i].any()]
    return decision, mask, max(1, len(touching))


def group_mark(group: Group, true_mask) -> Optional[np.ndarray]:
    """The group oracle's mark: the pixels marked in more than half of the members' true masks
    (``true_mask(index)`` -> H x W bool), or None where they agree on none.

    >>> g = Group("c0g0", 0, (1, 2, 3), (1.0, 1.0, 1.0), np.ones((1, 2)) / 2, 0.5, 1.0)
    >>> group_mark(g, lambda i: np.array([[True, i == 1]]))
    array([[ True, False]])
    """
    mask = majority_mask([true_mask(i) for i in group.members])
    return mask if mask.any() else None


def marked_member(group: Group, true_mask) -> tuple[Optional[int], Optional[np.ndarray]]:
    """(image, mask): the first of the group's shown images (:meth:`Group.shown`) whose true mask
    is not empty, and that mask, as a person who marks the shortcut on an image that shows it;
    (None, None) where none of them has one.

    >>> g = Group("c0g0", 0, (4, 5, 6), (1.0, 1.0, 1.0), np.ones((1, 2)) / 2, 0.5, 1.0)
    >>> marked_member(g, lambda i: np.array([[i == 5, False]]))
    (5, array([[ True, False]]))
    """
    for index in group.shown():
        mask = np.asarray(true_mask(index), bool)
        if mask.any():
            return index, mask
    return None, None


def answer_groups(discovery, store: FeedbackStore, true_mask, actions: int, rule: str = "place") -> dict:
    """The group oracle: the best-ranked groups of ``discovery``, one action each, until
    ``actions`` are spent; each group's mark recorded as one answer with the masks ``rule``
    propagates it to (:meth:`FeedbackStore.record_propagated`). The mark: for ``place``, the
    :func:`group_mark` on the group's representative; for a rule that finds the mark by its look
    (``pixels``, ``features``), the true mask of the :func:`marked_member`, drawn on that image.
    Returns ``{"actions", "groups", "marked", "propagated", "images"}`` (images: those with a mask)."""
    spent, marked, propagated, images = 0, 0, 0, set()
    for group in discovery.groups()[:max(0, int(actions))]:
        spent += 1
        if rule == "place":
            source, mask = None, group_mark(group, true_mask)
        else:
            source, mask = marked_member(group, true_mask)
        if mask is None:
            continue
        drawn_on = group.representative if source is None else source
        answer, masks = store.record_propagated((drawn_on, mask), discovery.propagate(group, mask, rule, source=source))
        marked += 1
        propagated += len(masks)
        images |= {answer.index} | {m.index for m in masks}
    return {"actions": spent, "groups": spent, "marked": marked, "propagated": propagated, "images": len(images)}

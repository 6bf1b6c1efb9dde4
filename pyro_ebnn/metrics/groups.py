"""Accuracy per group: class x whether the image carries a marked region.

A shortcut is a pattern that goes with one class in training. Where it predicts nothing (a test set
with the pattern on some images of every class), a network that reads it is right on the images of
its class that carry it and wrong on the other classes' images that carry it; the mean accuracy
averages the two away. The groups are the one definition used everywhere (the shortcut report,
the worst-group accuracy of the comparison tables): every class, split by whether the image has a
non-empty feedback mask ("marked") or not, as the spurious-correlation literature splits by
class x spurious attribute (Sagawa et al. 2020).

Keys: ``accuracy_<class>_marked`` / ``accuracy_<class>_unmarked`` and ``images_<class>_marked`` /
``images_<class>_unmarked`` for each group that has images, ``worst_group_accuracy`` and
``worst_group`` ("<class>, marked").
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["GROUP_STATES", "group_accuracies", "groups_of", "marked_shares", "marked_shares_of"]

GROUP_STATES = ("marked", "unmarked")


def groups_of(metrics: dict) -> list[tuple[str, str, float, int]]:
    """``(class, state, accuracy, images)`` of every group in a metrics dict, in class order.

    >>> groups_of({"accuracy_cat_marked": 0.5, "images_cat_marked": 4, "accuracy_cat_unmarked": 1.0,
    ...            "images_cat_unmarked": 2})
    [('cat', 'marked', 0.5, 4), ('cat', 'unmarked', 1.0, 2)]
    """
    out = []
    for key, value in metrics.items():
        for state in GROUP_STATES:
            if key.startswith("accuracy_") and key.endswith(f"_{state}"):
                name = key[len("accuracy_"):-len(state) - 1]
                out.append((name, state, float(value), int(metrics.get(f"images_{name}_{state}", 0))))
    return out


def group_accuracies(labels, predicted, marked, class_names: Optional[Sequence[str]] = None) -> dict:
    """Accuracy of every (class, marked or not) group that has images, and the worst of them.

    >>> group_accuracies([0, 0, 0, 1, 1, 1], [0, 0, 1, 0, 1, 1], [True, True, False, True, False, False],
    ...                  ["cat", "dog"])["worst_group"]
    'cat, unmarked'
    """
    labels, predicted, marked = np.asarray(labels), np.asarray(predicted), np.asarray(marked, dtype=bool)
    names = list(class_names) if class_names is not None else [str(k) for k in range(int(labels.max()) + 1)]
    out, worst = {}, None
    for k, name in enumerate(names):
        for state, where in zip(GROUP_STATES, (marked, ~marked)):
            members = (labels == k) & where
            n = int(members.sum())
            if n == 0:
                continue
            acc = float((predicted[members] == k).mean())
            out[f"accuracy_{name}_{state}"], out[f"images_{name}_{state}"] = acc, n
            if worst is None or acc < worst[0]:
                worst = (acc, f"{name}, {state}")
    if worst is not None:
        out["worst_group_accuracy"], out["worst_group"] = worst
    return out


def marked_shares(labels, marked, class_names: Optional[Sequence[str]] = None) -> dict:
    """``marked_share_<class>``: the share of each class's images that carry a mark (classes without
    images left out). Marks that fall on every class alike cannot tell a network the class.

    >>> marked_shares([0, 0, 1, 1], [True, False, False, False], ["cat", "dog"])
    {'marked_share_cat': 0.5, 'marked_share_dog': 0.0}
    """
    labels, marked = np.asarray(labels), np.asarray(marked, dtype=bool)
    names = list(class_names) if class_names is not None else [str(k) for k in range(int(labels.max()) + 1)]
    return {f"marked_share_{name}": float(marked[labels == k].mean()) for k, name in enumerate(names)
            if (labels == k).any()}


def marked_shares_of(metrics: dict, prefix: str = "train_") -> dict:
    """``{class: share}`` from a metrics dict's ``<prefix>marked_share_<class>`` keys."""
    key = f"{prefix}marked_share_"
    return {k[len(key):]: float(v) for k, v in metrics.items() if k.startswith(key)}

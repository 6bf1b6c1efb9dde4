"""Counterfactual validation images: what a model sees when the marked regions stop carrying the label.

Model selection on ordinary validation images rewards a model that reads a shortcut (the decoy,
the patch), since validation images carry it as training images do. ``validation_decoys: noise``,
``swap`` or ``exchange`` validates instead on images whose masked pixels are

* ``noise``: replaced by uniform noise U(0, 1), seeded per image;
* ``swap``: transplanted from an image of another class of the same set (the same pixels of the
  donor; one donor per image, drawn at random among the other classes' images, seeded);
* ``exchange``: swapped with that image of another class: as ``swap``, and the partner, when it has
  no mask of its own, receives the marked pixels in return (at the same place; the first masked
  image that drew it gives them). When only one class carries the marked pattern (a patch on
  benign lesions, a square on one class of photographs), ``noise`` and ``swap`` only take it away
  from that class; ``exchange`` also puts it on the others, as a test set where the pattern predicts
  nothing does, so a model that reads it loses on both sides.

With ``noise`` and ``swap`` images without a mask are unchanged; masks and labels are kept. :func:`counterfactual` wraps any
image set: an :class:`~pyro_ebnn.data.base.ImageSet` gives an ``ImageSet`` (computed once, in
memory), any other :class:`~pyro_ebnn.data.base.LabelledImages` a :class:`CounterfactualImages`
that alters each image as it is read.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..errors import DataError
from .base import ImageSet, LabelledImages

__all__ = ["KINDS", "CounterfactualImages", "counterfactual", "pick_donors", "receivers_of"]

KINDS = ("noise", "swap", "exchange")


def pick_donors(labels, seed: int) -> np.ndarray:
    """For each image, the position of a donor image of another class, drawn uniformly (seeded).

    >>> donors = pick_donors([0, 0, 1, 1, 2], seed=0)
    >>> [int(d) in {0: [2, 3, 4], 1: [0, 1, 4], 2: [0, 1, 2, 3]}[y] for d, y in zip(donors, [0, 0, 1, 1, 2])]
    [True, True, True, True, True]
    """
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise DataError("validation_decoys: swap and exchange transplant regions between images of different classes, "
                        "but the validation images hold one class only; use validation_decoys: noise")
    rng = np.random.default_rng(seed)
    donors = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        mine, others = np.flatnonzero(labels == c), np.flatnonzero(labels != c)
        donors[mine] = rng.choice(others, size=len(mine))
    return donors


def receivers_of(donors: np.ndarray, has_mask: np.ndarray) -> np.ndarray:
    """For ``exchange``: for each image, the first masked image whose donor it is, if it has no
    mask of its own (it then receives that image's marked pixels); -1 otherwise.

    >>> receivers_of(np.array([2, 2, 0]), np.array([True, True, False])).tolist()
    [-1, -1, 0]
    """
    givers = np.full(len(donors), -1, dtype=np.int64)
    for i in np.flatnonzero(has_mask)[::-1]:  # reversed: the first masked image wins
        if not has_mask[donors[i]]:
            givers[donors[i]] = i
    return givers


class CounterfactualImages:
    """``base`` with each image's masked region replaced (module docstring); satisfies
    :class:`~pyro_ebnn.data.base.LabelledImages`. ``positions`` and ``keep`` index and mask-filter
    the base images (set by :meth:`subset` and :meth:`keep_masks`; the replacement always follows
    the base image's own mask)."""

    def __init__(self, base: LabelledImages, kind: str, seed: int, donors: Optional[np.ndarray] = None,
                 positions=None, keep=None):
        if kind not in KINDS:
            raise DataError(f"unknown counterfactual {kind!r}; use {' or '.join(KINDS)}")
        self.base, self.kind, self.seed = base, kind, int(seed)
        self.donors = donors if donors is not None or kind == "noise" else pick_donors(base.labels.numpy(), seed)
        self.givers = receivers_of(self.donors, base.has_mask.numpy()) if kind == "exchange" else None
        self.positions = np.arange(len(base)) if positions is None else np.asarray(positions, dtype=np.int64)
        self.keep = torch.ones(len(self.positions), dtype=torch.bool) if keep is None else torch.as_tensor(keep)
        self.name = f"{base.name}:{kind}"
        self.num_classes, self.class_names = base.num_classes, base.class_names

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def image_shape(self):
        return self.base.image_shape

    @property
    def labels(self) -> torch.Tensor:
        return self.base.labels[torch.as_tensor(self.positions)]

    @property
    def has_mask(self) -> torch.Tensor:
        return self.base.has_mask[torch.as_tensor(self.positions)] & self.keep

    def replacement(self, i: int, image: torch.Tensor) -> torch.Tensor:
        """The pixels that fill base image ``i``'s masked region."""
        if self.kind == "noise":
            noise = np.random.default_rng([self.seed, i]).random(tuple(image.shape), dtype=np.float32)
            return torch.from_numpy(noise).to(image.device)
        return self.base[int(self.donors[i])][0]

    def __getitem__(self, k: int):
        i = int(self.positions[k])
        image, label, mask = self.base[i]
        if bool(mask.any()):
            image = torch.where(mask, self.replacement(i, image), image)
        elif self.givers is not None and self.givers[i] >= 0:  # exchange: receive a marked region
            given, _, where = self.base[int(self.givers[i])]
            image = torch.where(where, given, image)
        return image, label, mask & self.keep[k]

    def subset(self, idx) -> "CounterfactualImages":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return CounterfactualImages(self.base, self.kind, self.seed, self.donors, self.positions[idx.numpy()],
                                    self.keep[idx])

    def keep_masks(self, keep) -> "CounterfactualImages":
        return CounterfactualImages(self.base, self.kind, self.seed, self.donors, self.positions,
                                    self.keep & torch.as_tensor(keep, dtype=torch.bool))


def counterfactual(images: LabelledImages, kind: str, seed: int) -> LabelledImages:
    """``images`` with their masked regions replaced by ``kind`` (``noise``, ``swap`` or ``exchange``); an
    :class:`ImageSet` stays an ``ImageSet`` (computed now), any other set is wrapped.

    >>> x = torch.zeros(2, 1, 4, 4); m = torch.zeros(2, 1, 4, 4, dtype=torch.bool); m[0, :, :2] = True
    >>> cf = counterfactual(ImageSet(x, torch.tensor([0, 1]), m, 2), "noise", seed=0)
    >>> bool((cf.images[0, :, :2] > 0).all()), bool((cf.images[0, :, 2:] == 0).all()), bool((cf.images[1] == 0).all())
    (True, True, True)
    """
    if not isinstance(images, ImageSet):
        return CounterfactualImages(images, kind, seed)
    cpu = images.to("cpu")
    wrapped = CounterfactualImages(cpu, kind, seed)
    out = cpu.images.clone()
    changed = cpu.has_mask if wrapped.givers is None else cpu.has_mask | torch.as_tensor(wrapped.givers >= 0)
    for i in changed.nonzero().flatten().tolist():
        out[i] = wrapped[i][0]
    return ImageSet(out.to(images.images.device), images.labels, images.masks, images.num_classes,
                    f"{images.name}:{kind}", images.class_names)

"""What every dataset gives: labelled images with feedback masks, one at a time or in batches.

An *image set* holds N images (C x H x W floats in [0, 1]), their integer labels and their
feedback masks (1 x H x W booleans, True = irrelevant; all False = no opinion). Two kinds exist:

* :class:`ImageSet`, tensors in memory (Decoy MNIST, ``.npz`` files);
* image sets read from disk as they are needed (:class:`~pyro_ebnn.data.streamed.DiskImages`: the
  image folders of :mod:`pyro_ebnn.data.folders` and the real-world datasets of
  :mod:`pyro_ebnn.data.real`; counterfactual versions of any set,
  :class:`~pyro_ebnn.data.counterfactual.CounterfactualImages`), which a
  ``torch.utils.data.DataLoader`` with workers streams.

Both satisfy :class:`LabelledImages`; :func:`batches` iterates over either. :func:`with_masks`
gives any set other masks (an annotator's, from a feedback store).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..errors import DataError


@runtime_checkable
class LabelledImages(Protocol):
    """The interface of an image set (see the module docstring)."""

    name: str
    num_classes: int
    class_names: Sequence[str]

    @property
    def image_shape(self) -> tuple[int, int, int]: ...      # C x H x W

    @property
    def labels(self) -> torch.Tensor: ...                    # int64 N, in memory

    @property
    def has_mask(self) -> torch.Tensor: ...                  # bool N: the image carries a non-empty mask

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]: ...  # image, label, mask

    def subset(self, idx) -> "LabelledImages": ...           # the images at ``idx``, in that order

    def keep_masks(self, keep: torch.Tensor) -> "LabelledImages": ...  # masks only where keep (bool N)


@dataclass
class ImageSet:
    """Images (float32, N x C x H x W, in [0, 1]), labels (int64, N) and masks (bool, N x 1 x H x W),
    in memory. Validated when made; bad input is one line that names the fix."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    num_classes: int
    name: str = "data"
    class_names: Optional[Sequence[str]] = None

    def __post_init__(self):
        self.validate()
        if self.class_names is None:
            self.class_names = [str(k) for k in range(self.num_classes)]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), self.masks[i]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def has_mask(self) -> torch.Tensor:
        return self.masks.flatten(1).any(1)

    def keep_masks(self, keep: torch.Tensor) -> "ImageSet":
        keep = torch.as_tensor(keep, dtype=torch.bool, device=self.masks.device)
        return ImageSet(self.images, self.labels, self.masks & keep.view(-1, 1, 1, 1), self.num_classes, self.name,
                        self.class_names)

    def validate(self):
        x, y, m, where = self.images, self.labels, self.masks, self.name
        if x.dim() != 4:
            raise DataError(f"{where}: images must be N x C x H x W, got shape {tuple(x.shape)}; "
                            "add a channel axis for grey images (N x 1 x H x W)")
        n = x.shape[0]
        if y.dim() != 1 or len(y) != n:
            raise DataError(f"{where}: labels must be a vector of length {n} (one per image), got shape {tuple(y.shape)}")
        if m.shape != (n, 1) + tuple(x.shape[2:]):
            raise DataError(f"{where}: masks must have shape {(n, 1) + tuple(x.shape[2:])} (N x 1 x H x W, "
                            f"same H x W as the images), got {tuple(m.shape)}")
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
            raise DataError(f"{where}: {bad} images contain NaN or Inf pixels; clean or drop them before training")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise DataError(f"{where}: pixel values must lie in [0, 1], found [{float(x.min()):.3g}, "
                            f"{float(x.max()):.3g}]; divide 8-bit images by 255")
        if y.dtype.is_floating_point:
            if not torch.equal(y, y.round()):
                raise DataError(f"{where}: labels must be integers, found non-integer values")
        if n and (y.min() < 0 or y.max() >= self.num_classes):
            raise DataError(f"{where}: labels must lie in 0..{self.num_classes - 1}, found "
                            f"{int(y.min())}..{int(y.max())}; fix the labels or set num_classes")
        if m.dtype != torch.bool:
            if m.dtype.is_floating_point and not torch.isfinite(m).all():
                raise DataError(f"{where}: masks contain NaN or Inf; masks must be binary (0 or 1)")
            if not ((m == 0) | (m == 1)).all():
                raise DataError(f"{where}: masks must be binary (0 = no opinion, 1 = irrelevant), found other "
                                "values; threshold them (e.g. mask > 0.5)")
        self.labels = y.long()
        self.masks = m.bool()
        self.images = x.float()

    def subset(self, idx) -> "ImageSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.masks[idx], self.num_classes, self.name,
                        self.class_names)

    def to(self, device) -> "ImageSet":
        return ImageSet(self.images.to(device), self.labels.to(device), self.masks.to(device),
                        self.num_classes, self.name, self.class_names)


def batches(images: LabelledImages, batch_size: int, indices=None, workers: int = 0,
            pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(images B x C x H x W, labels B, masks B x 1 x H x W) of ``images`` in the order of ``indices``
    (default: all, in order): sliced from memory for an :class:`ImageSet`, streamed from disk by a
    ``DataLoader`` with ``workers`` processes otherwise."""
    order = torch.arange(len(images)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    if isinstance(images, ImageSet):
        for start in range(0, len(order), batch_size):
            i = order[start:start + batch_size].to(images.labels.device)
            yield images.images[i], images.labels[i], images.masks[i]
        return
    loader = DataLoader(Subset(images, order.tolist()), batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=pin_memory, persistent_workers=False)
    for x, y, m in loader:
        yield x, torch.as_tensor(y, dtype=torch.long), m


def in_memory(images: LabelledImages, batch_size: int = 256, workers: int = 0) -> ImageSet:
    """Every image of ``images`` read into an :class:`ImageSet` (small sets, and tests)."""
    if isinstance(images, ImageSet):
        return images
    parts = list(zip(*batches(images, batch_size, workers=workers)))
    if not parts:
        raise DataError(f"{images.name}: the image set is empty")
    x, y, m = (torch.cat(p) for p in parts)
    return ImageSet(x, y, m, images.num_classes, images.name, list(images.class_names))


def _mask_tensor(mask, shape: tuple[int, int], where: str) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask, dtype=bool))
    if tuple(m.shape) != shape:
        raise DataError(f"{where}: a mask must have the images' size {shape[0]} x {shape[1]}, got {tuple(m.shape)}")
    return m[None]


def with_masks(images: LabelledImages, masks: dict) -> LabelledImages:
    """``images`` whose masks are ``masks`` ({position: bool H x W}) and no other: every image not
    in ``masks`` carries no mask. An :class:`ImageSet` stays in memory; any other set is wrapped
    (:class:`ReplacedMasks`) and reads its images as before.

    >>> x = ImageSet(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 0]), torch.ones(3, 1, 2, 2), 2)
    >>> with_masks(x, {1: [[True, False], [False, False]]}).has_mask.tolist()
    [False, True, False]
    """
    shape = tuple(images.image_shape[1:])
    bad = [p for p in masks if not 0 <= int(p) < len(images)]
    if bad:
        raise DataError(f"{images.name}: no image at position {bad[0]} (the set has {len(images)}); "
                        "give masks for positions 0..N-1")
    given = {int(p): _mask_tensor(m, shape, images.name) for p, m in masks.items()}
    if isinstance(images, ImageSet):
        out = torch.zeros_like(images.masks)
        for p, m in given.items():
            out[p] = m.to(out.device)
        return ImageSet(images.images, images.labels, out, images.num_classes, images.name, images.class_names)
    return ReplacedMasks(images, given)


class ReplacedMasks:
    """Any :class:`LabelledImages` with its masks replaced by ``masks`` ({position: bool 1 x H x W};
    the other images carry none); made by :func:`with_masks`. Picklable for ``DataLoader`` workers."""

    def __init__(self, base: LabelledImages, masks: dict):
        self.base, self.masks = base, masks
        self.name, self.num_classes, self.class_names = base.name, base.num_classes, base.class_names

    def __len__(self) -> int:
        return len(self.base)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.base.image_shape

    @property
    def labels(self) -> torch.Tensor:
        return self.base.labels

    @property
    def has_mask(self) -> torch.Tensor:
        has = torch.zeros(len(self), dtype=torch.bool)
        has[list(self.masks)] = torch.tensor([bool(m.any()) for m in self.masks.values()], dtype=torch.bool)
        return has

    def __getitem__(self, i: int):
        image, label, _ = self.base[i]
        mask = self.masks.get(int(i))
        return image, label, mask if mask is not None else torch.zeros((1,) + self.image_shape[1:], dtype=torch.bool)

    def subset(self, idx) -> "ReplacedMasks":
        idx = [int(i) for i in torch.as_tensor(idx, dtype=torch.long)]
        return ReplacedMasks(self.base.subset(idx), {k: self.masks[i] for k, i in enumerate(idx) if i in self.masks})

    def keep_masks(self, keep) -> "ReplacedMasks":
        keep = torch.as_tensor(keep, dtype=torch.bool)
        return ReplacedMasks(self.base, {p: m for p, m in self.masks.items() if keep[p]})


@dataclass
class Split:
    """Train / validation / test sets of one run, plus optional named extra test sets and extra
    validation sets (e.g. ``extra_val["ordinary"]``, the validation images as they are, when
    ``val`` is a counterfactual version of them). ``feedback``: where the training masks came from
    when an annotator gave them (a feedback store's path and the counts of its decisions)."""

    train: LabelledImages
    val: Optional[LabelledImages]
    test: LabelledImages
    extra_tests: dict = field(default_factory=dict)
    extra_val: dict = field(default_factory=dict)
    feedback: dict = field(default_factory=dict)


def fold_split(n: int, num_folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[000] protocol: shuffle the train+val indices, cut them in ``num_folds`` folds, validate on
    fold ``fold`` and train on the others."""
    if not 0 <= fold < num_folds:
        raise DataError(f"fold must be in 0..{num_folds - 1}, got {fold}")
    perm = np.random.default_rng(seed).permutation(n)
    folds = np.array_split(perm, num_folds)
    val = folds[fold]
    train = np.concatenate([f for i, f in enumerate(folds) if i != fold])
    return np.sort(train), np.sort(val)


def keep_fraction_of_masks(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Bool N: which of ``n`` training images keep their feedback, ``round(fraction * n)`` of them
    at random ([000] keeps 70%); for :meth:`LabelledImages.keep_masks`.

    >>> int(keep_fraction_of_masks(10, 0.7, seed=0).sum())
    7
    """
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"mask fraction must be in [0, 1], got {fraction}")
    drop = np.random.default_rng(seed).permutation(n)[: n - int(round(fraction * n))]
    keep = torch.ones(n, dtype=torch.bool)
    keep[torch.as_tensor(drop, dtype=torch.long)] = False
    return keep

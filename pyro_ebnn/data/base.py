from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ..errors import DataError


@dataclass
class ImageSet:
    """Images (float32, N x C x H x W, in [0, 1]), labels (int64, N) and masks (bool, N x 1 x H x W)."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    num_classes: int
    name: str = "data"

    def __post_init__(self):
        self.validate()

    def __len__(self):
        return len(self.labels)

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
        return ImageSet(self.images[idx], self.labels[idx], self.masks[idx], self.num_classes, self.name)

    def to(self, device) -> "ImageSet":
        return ImageSet(self.images.to(device), self.labels.to(device), self.masks.to(device),
                        self.num_classes, self.name)


@dataclass
class Split:
    """Train / validation / test sets of one run, plus optional named extra test sets."""

    train: ImageSet
    val: Optional[ImageSet]
    test: ImageSet
    extra_tests: dict = field(default_factory=dict)


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


def keep_fraction_of_masks(masks: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """[000] keeps the feedback of only a fraction (70%) of the training images; the rest get an
    all-zero mask ("no opinion")."""
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"mask fraction must be in [0, 1], got {fraction}")
    n = len(masks)
    drop = np.random.default_rng(seed).permutation(n)[: n - int(round(fraction * n))]
    out = masks.clone()
    out[torch.as_tensor(drop, dtype=torch.long)] = False
    return out

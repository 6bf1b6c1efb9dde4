"""Feedback of lower quality than the dataset's true masks: the two robustness experiments of the
XIL typology (Friedrich et al. 2023), for every mode alike (config key ``feedback_noise``).

``incomplete:F``  every training mask keeps a fraction F of its extent: one straight cut across the
                  mask's bounding box (along its rows or its columns, from one side, both drawn at
                  random per image) keeps the marked pixels in F of it. A person who marks part of
                  the shortcut: half of a decoy square, or two of [001]'s four corner squares.
``wrong:F``       a fraction F of the masked training images get their mask moved to where it marks
                  something else: shifted (with wrap-around) by the offset, among 16 drawn at
                  random, that overlaps the true mask least. A person who marks the wrong place.

Images without a mask stay without one; which images keep any mask at all is ``mask_fraction``'s
business (the typology's other kind of incomplete feedback: masks on part of the images).

>>> mask = np.zeros((8, 8), bool); mask[:4, :4] = True
>>> int(incomplete_mask(mask, 0.5, np.random.default_rng(0)).sum())
8
>>> moved = wrong_mask(mask, np.random.default_rng(0))
>>> int(moved.sum()), int((moved & mask).sum())
(16, 0)
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ..errors import DataError
from .base import ImageSet, LabelledImages, with_masks

__all__ = ["FEEDBACK_NOISE", "parse_feedback_noise", "incomplete_mask", "wrong_mask", "with_feedback_noise"]

FEEDBACK_NOISE = ("incomplete", "wrong")
#: offsets drawn for a wrong mask; the one overlapping the true mask least is taken
OFFSETS = 16


def parse_feedback_noise(text: Optional[str]) -> Optional[tuple[str, float]]:
    """``"incomplete:0.5"`` -> ``("incomplete", 0.5)``; ``None`` or ``"none"`` -> ``None``.

    >>> parse_feedback_noise("wrong:0.25")
    ('wrong', 0.25)
    """
    if text is None or str(text).strip().lower() in ("", "none", "null"):
        return None
    kind, _, value = str(text).partition(":")
    try:
        fraction = float(value)
    except ValueError:
        fraction = math.nan
    if kind not in FEEDBACK_NOISE or not 0 < fraction <= 1:
        raise DataError(f"feedback_noise {text!r} is not KIND:F with KIND one of {', '.join(FEEDBACK_NOISE)} and "
                        "F in (0, 1], e.g. incomplete:0.5 (half of every mask) or wrong:1 (every mask moved)")
    return kind, fraction


def incomplete_mask(mask: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``mask`` (H x W bool) cut to ``fraction`` of its bounding box by one straight cut (module
    docstring); an empty mask stays empty."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask.copy()
    axis = int(rng.integers(2))
    lines = np.flatnonzero(mask.any(axis=1 - axis))      # rows (axis 0) or columns (axis 1) holding the mask
    first, last = int(lines.min()), int(lines.max())
    keep = max(1, math.ceil(fraction * (last - first + 1)))
    start = first if rng.integers(2) == 0 else last + 1 - keep
    window = np.zeros(mask.shape[axis], bool)
    window[start:start + keep] = True
    return mask & (window[:, None] if axis == 0 else window[None, :])


def wrong_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``mask`` (H x W bool) shifted with wrap-around by the offset, of :data:`OFFSETS` drawn at
    random, that overlaps it least (module docstring); an empty mask stays empty."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask.copy()
    h, w = mask.shape
    best, overlap = mask, None
    for dy, dx in zip(rng.integers(h, size=OFFSETS), rng.integers(w, size=OFFSETS)):
        moved = np.roll(mask, (int(dy), int(dx)), axis=(0, 1))
        shared = int((moved & mask).sum())
        if overlap is None or shared < overlap:
            best, overlap = moved, shared
    return best


def with_feedback_noise(images: LabelledImages, noise: Optional[str], seed: int) -> LabelledImages:
    """``images`` with their masks made incomplete or wrong as ``noise`` says (``None``: as they
    are), drawn reproducibly from ``seed``."""
    parsed = parse_feedback_noise(noise)
    if parsed is None:
        return images
    kind, fraction = parsed
    rng = np.random.default_rng(seed)
    masked = torch.nonzero(images.has_mask).flatten().tolist()
    if kind == "wrong":
        moved = set(rng.permutation(masked)[: int(round(fraction * len(masked)))].tolist())
    masks = {}
    for p in masked:
        mask = (images.masks[p] if isinstance(images, ImageSet) else images[p][2])[0].cpu().numpy()
        if kind == "incomplete":
            mask = incomplete_mask(mask, fraction, rng)
        elif p in moved:
            mask = wrong_mask(mask, rng)
        masks[p] = mask
    return with_masks(images, masks)

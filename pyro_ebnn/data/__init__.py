"""Datasets as in-memory tensors: images N x C x H x W in [0, 1], integer labels, binary
feedback masks N x 1 x H x W (1 = irrelevant)."""
from .base import ImageSet, Split, fold_split, keep_fraction_of_masks
from .registry import load_dataset

__all__ = ["ImageSet", "Split", "fold_split", "keep_fraction_of_masks", "load_dataset"]

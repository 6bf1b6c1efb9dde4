"""Datasets: labelled images with feedback masks (1 = irrelevant), in memory or read from disk as
they are needed; the [000] folds; the feedback store."""
from .base import ImageSet, LabelledImages, Split, batches, fold_split, keep_fraction_of_masks
from .registry import load_dataset

__all__ = ["ImageSet", "LabelledImages", "Split", "batches", "fold_split", "keep_fraction_of_masks", "load_dataset"]

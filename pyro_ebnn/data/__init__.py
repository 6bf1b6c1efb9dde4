"""Datasets: labelled images with feedback masks (1 = irrelevant), in memory or read from disk as
they are needed; the [000] folds; counterfactual validation images; the feedback store."""
from .base import (ImageSet, LabelledImages, ReplacedMasks, Split, batches, fold_split, in_memory,
                   keep_fraction_of_masks, with_masks)
from .counterfactual import CounterfactualImages, counterfactual
from .folders import load_image_folder
from .registry import DATASETS, DECOY_DATASETS, DISK_DATASETS, load_dataset
from .streamed import DiskImages

__all__ = ["ImageSet", "LabelledImages", "ReplacedMasks", "Split", "batches", "fold_split", "in_memory",
           "keep_fraction_of_masks", "with_masks",
           "CounterfactualImages", "counterfactual", "DiskImages", "load_image_folder", "DATASETS", "DECOY_DATASETS",
           "DISK_DATASETS",
           "load_dataset"]

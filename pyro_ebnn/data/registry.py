"""Build the train+val and test sets that a configuration names.

:func:`load_dataset` returns ``(trainval, sets)``: the images the folds are cut from, and a dict
of named image sets: ``"test"`` (always), other names = extra test sets (reported with their name
as a prefix), and two reserved names that :func:`~pyro_ebnn.experiment.protocol.prepare_split`
takes out: ``"val"``, a validation set of its own (then there are no folds: all of ``trainval``
trains), and ``"validation"``, ``trainval`` again under another decoy rule (the validation fold
is taken from it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import ImageSet
from .decoy import add_decoys
from .folders import folder_layout, load_image_folder
from .mnist import FASHION_CLASSES, load_fashion_mnist, load_mnist
from .real import load_dogs_vs_cats, load_isic, load_oxford_pets, load_sbd

__all__ = ["DATASETS", "DECOY_DATASETS", "DISK_DATASETS", "NPZ_KEYS", "load_decoy_mnist", "load_npz", "load_from_disk", "load_dataset"]

#: datasets read from image files (images resized to image_size, converted to channels)
DISK_DATASETS = ("folder", "oxford_pets", "sbd", "isic", "dogs_vs_cats")
#: the decoy rules on MNIST's digits and on Fashion-MNIST's clothes
DECOY_DATASETS = ("decoy_mnist", "decoy_fmnist")
DATASETS = DECOY_DATASETS + ("npz",) + DISK_DATASETS

NPZ_KEYS = ("train_images", "train_labels", "train_masks", "test_images", "test_labels", "test_masks")


def _limit(n, cap):
    return n if cap is None else min(n, cap)


def load_decoy_mnist(cfg):
    """Returns (trainval, {"test": ..., "decoy_swap": ...}); with ``validation_decoys: test`` also
    ``"validation"``: the trainval digits with the decoys of the test rule (prepare_split takes the
    validation fold from it). ``dataset: decoy_fmnist`` puts the same decoys on Fashion-MNIST (the
    XIL typology's Decoy-FMNIST) instead of MNIST's digits."""
    if cfg.dataset == "decoy_fmnist":
        xtr, ytr, xte, yte = load_fashion_mnist(cfg.data_dir, cfg.download)
        names = FASHION_CLASSES
    else:
        xtr, ytr, xte, yte = load_mnist(cfg.data_dir, cfg.source)
        names = None
    rng = np.random.default_rng(cfg.data_seed)
    if cfg.max_train_images is not None and cfg.max_train_images < len(ytr):
        keep = np.sort(rng.permutation(len(ytr))[: cfg.max_train_images])
        xtr, ytr = xtr[keep], ytr[keep]
    if cfg.max_test_images is not None and cfg.max_test_images < len(yte):
        keep = np.sort(rng.permutation(len(yte))[: cfg.max_test_images])
        xte, yte = xte[keep], yte[keep]
    seed = cfg.data_seed * 1000
    x, m = add_decoys(xtr, ytr, cfg.rule, train=True, seed=seed + 1)
    trainval = ImageSet(torch.from_numpy(x), torch.from_numpy(ytr), torch.from_numpy(m), 10, "train", names)
    tests = {}
    if getattr(cfg, "validation_decoys", "train") == "test":
        x, m = add_decoys(xtr, ytr, cfg.rule, train=False, seed=seed + 4)
        tests["validation"] = ImageSet(torch.from_numpy(x), torch.from_numpy(ytr), torch.from_numpy(m), 10, "validation",
                                       names)
    for name, swap, s in (("test", False, 2), ("decoy_swap", True, 3)):
        x, m = add_decoys(xte, yte, cfg.rule, train=False, seed=seed + s, swap=swap)
        tests[name] = ImageSet(torch.from_numpy(x), torch.from_numpy(yte), torch.from_numpy(m), 10, name, names)
    return trainval, tests


def load_npz(cfg):
    """A user's own data: an .npz with the six arrays of NPZ_KEYS (images N x C x H x W floats in
    [0, 1], integer labels, N x 1 x H x W binary masks)."""
    try:
        data = np.load(cfg.npz_path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"npz file {cfg.npz_path} does not exist; set npz_path to your dataset file")
    except Exception as e:
        raise DataError(f"cannot read {cfg.npz_path} as .npz ({type(e).__name__}); save it with numpy.savez")
    missing = [k for k in NPZ_KEYS if k not in data.files]
    if missing:
        raise DataError(f"{cfg.npz_path} lacks {', '.join(missing)}; it needs the arrays {', '.join(NPZ_KEYS)}")
    arrays = {k: data[k] for k in NPZ_KEYS}
    for k in ("train_labels", "test_labels"):
        if arrays[k].dtype.kind not in "iuf":
            raise DataError(f"{cfg.npz_path}: {k} must be integers, got dtype {arrays[k].dtype}")
    k = cfg.num_classes or int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    sets = {}
    for split in ("train", "test"):
        x, y, m = (torch.from_numpy(np.ascontiguousarray(arrays[f"{split}_{n}"])) for n in ("images", "labels", "masks"))
        if x.dtype.is_floating_point is False:
            raise DataError(f"{cfg.npz_path}: {split}_images must be floats in [0, 1], got {x.dtype}; divide by 255")
        sets[split] = ImageSet(x.float(), y, m, k, f"{cfg.npz_path}:{split}")
    train = sets["train"]
    if cfg.max_train_images is not None and cfg.max_train_images < len(train):
        train = train.subset(np.sort(np.random.default_rng(cfg.data_seed).permutation(len(train))[: cfg.max_train_images]))
    return train, {"test": sets["test"]}


def _capped(images, cap, seed):
    """At most ``cap`` of ``images``, drawn at random (seeded), in their order."""
    if cap is None or cap >= len(images):
        return images
    return images.subset(np.sort(np.random.default_rng(seed).permutation(len(images))[:cap]))


def load_from_disk(cfg):
    """The image-file datasets (:data:`DISK_DATASETS`), read as they are needed; ``max_train_images``
    caps train+val, ``max_test_images`` every test set."""
    if not cfg.data_dir:
        raise DataError(f"dataset {cfg.dataset} needs data_dir: the folder that holds it"
                        + (f" ({folder_layout('DIR')})" if cfg.dataset == "folder" else ""))
    root, size, channels = Path(cfg.data_dir), cfg.image_size, cfg.channels
    if cfg.dataset == "folder":
        trainval, sets = load_image_folder(root, size, channels)
    elif cfg.dataset == "oxford_pets":
        trainval, sets = load_oxford_pets(root, size, channels, cfg.download)
    elif cfg.dataset == "sbd":
        trainval, sets = load_sbd(root, size, channels, cfg.download)
    elif cfg.dataset == "isic":
        trainval, sets = load_isic(root, size, channels, cfg.test_fraction, cfg.data_seed)
    else:
        trainval, sets = load_dogs_vs_cats(root, size, channels, cfg.test_fraction, cfg.data_seed)
    trainval = _capped(trainval, cfg.max_train_images, cfg.data_seed)
    return trainval, {name: s if name == "val" else _capped(s, cfg.max_test_images, cfg.data_seed + 1)
                      for name, s in sets.items()}


def load_dataset(cfg):
    if cfg.dataset in DECOY_DATASETS:
        return load_decoy_mnist(cfg)
    if cfg.dataset == "npz":
        return load_npz(cfg)
    if cfg.dataset in DISK_DATASETS:
        return load_from_disk(cfg)
    raise DataError(f"unknown dataset {cfg.dataset!r}; use one of {', '.join(DATASETS)}")

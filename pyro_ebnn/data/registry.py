"""Build the train+val and test sets that a configuration names."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from .base import ImageSet
from .decoy import add_decoys
from .mnist import load_mnist

NPZ_KEYS = ("train_images", "train_labels", "train_masks", "test_images", "test_labels", "test_masks")


def _limit(n, cap):
    return n if cap is None else min(n, cap)


def load_decoy_mnist(cfg):
    """Returns (trainval, {"test": ..., "decoy_swap": ...}); with ``validation_decoys: test`` also
    ``"validation"``: the trainval digits with the decoys of the test rule (prepare_split takes the
    validation fold from it)."""
    xtr, ytr, xte, yte = load_mnist(cfg.data_dir, cfg.source)
    rng = np.random.default_rng(cfg.data_seed)
    if cfg.max_train_images is not None and cfg.max_train_images < len(ytr):
        keep = np.sort(rng.permutation(len(ytr))[: cfg.max_train_images])
        xtr, ytr = xtr[keep], ytr[keep]
    if cfg.max_test_images is not None and cfg.max_test_images < len(yte):
        keep = np.sort(rng.permutation(len(yte))[: cfg.max_test_images])
        xte, yte = xte[keep], yte[keep]
    seed = cfg.data_seed * 1000
    x, m = add_decoys(xtr, ytr, cfg.rule, train=True, seed=seed + 1)
    trainval = ImageSet(torch.from_numpy(x), torch.from_numpy(ytr), torch.from_numpy(m), 10, "train")
    tests = {}
    if getattr(cfg, "validation_decoys", "train") == "test":
        x, m = add_decoys(xtr, ytr, cfg.rule, train=False, seed=seed + 4)
        tests["validation"] = ImageSet(torch.from_numpy(x), torch.from_numpy(ytr), torch.from_numpy(m), 10, "validation")
    for name, swap, s in (("test", False, 2), ("decoy_swap", True, 3)):
        x, m = add_decoys(xte, yte, cfg.rule, train=False, seed=seed + s, swap=swap)
        tests[name] = ImageSet(torch.from_numpy(x), torch.from_numpy(yte), torch.from_numpy(m), 10, name)
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


def load_dataset(cfg):
    if cfg.dataset == "decoy_mnist":
        return load_decoy_mnist(cfg)
    if cfg.dataset == "npz":
        return load_npz(cfg)
    raise DataError(f"unknown dataset {cfg.dataset!r}")

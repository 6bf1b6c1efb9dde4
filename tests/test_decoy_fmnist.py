"""Decoy-FMNIST (dataset: decoy_fmnist): Fashion-MNIST read from torchvision's on-disk layout, the
decoy rule put on it with the clothes' names; offline without the files, one line that says where
they go."""
import struct

import numpy as np
import pytest

from pyro_ebnn.data import load_dataset
from pyro_ebnn.errors import DataError
from pyro_ebnn.experiment.config import load_config


def _idx(path, arr):
    with open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x0803, *arr.shape) if arr.ndim == 3 else struct.pack(">II", 0x0801, len(arr)))
        f.write(arr.astype(np.uint8).tobytes())


def _fashion(root, n_train=40, n_test=20):
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 120, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return root


def test_decoys_on_fashion_mnist_from_torchvisions_layout(tmp_path):
    cfg = load_config("configs/decoy_fmnist.yaml", {"data_dir": str(_fashion(tmp_path))})
    trainval, sets = load_dataset(cfg)
    assert len(trainval) == 40 and len(sets["test"]) == 20 and set(sets) == {"test", "decoy_swap"}
    assert trainval.class_names[0] == "T-shirt/top" and trainval.class_names[9] == "Ankle boot"
    assert bool(trainval.has_mask.all())
    m = trainval.masks[:, 0]
    assert (m.flatten(1).sum(1) == 16).all()                       # one 4 x 4 decoy per image
    grey = trainval.images[:, 0][m].view(40, 16)                   # the rule: grey 255 - 25 y in training
    assert np.allclose((grey[:, 0] * 255).round().numpy(), 255 - 25 * trainval.labels.numpy())


def test_without_the_files_one_line_says_where_they_go(tmp_path):
    cfg = load_config("configs/decoy_fmnist.yaml", {"data_dir": str(tmp_path)})
    with pytest.raises(DataError, match=r"FashionMNIST/raw.*zalandoresearch.*download: true"):
        load_dataset(cfg)

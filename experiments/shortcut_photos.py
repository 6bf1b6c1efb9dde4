"""A two-class shortcut task from real photographs, written in the image-folder layout.

The photographs that ship with scikit-image (``skimage.data``) and scikit-learn
(``sklearn.datasets.load_sample_images``) form two families:

* ``everyday``: astronaut, chelsea (a cat), coffee, rocket, the left motorcycle of the stereo pair,
  china (a temple), flower;
* ``scientific``: immunohistochemistry (microscope), retina (fundus camera), hubble_deep_field.

Each image of the task is a random square crop of one photograph (side drawn between ``size`` and
half the photograph's shorter side), resized to ``size x size``. Training crops come from the left
three quarters of each photograph, test crops from the right quarter, so no test pixel was seen in
training. As benign ISIC lesions carry coloured patches, every training image of ``everyday``
carries a coloured square (``patch`` pixels, at a random place) and a mask that marks it; in the
test set, half the images of each class (drawn at random) carry the patch, so it predicts nothing
there. Everything is seeded.

Written to ``OUT`` (the layout of ``dataset: folder``, pyro_ebnn/data/folders.py)::

    OUT/train/{everyday,scientific}/<k>.png     OUT/train_masks/everyday/<k>.png
    OUT/test/{everyday,scientific}/<k>.png      OUT/test_masks/<class>/<k>.png (patched images)
    OUT/shortcut_photos.json                    the parameters and counts

Build it, then run the study through the CLI, e.g.::

    python experiments/shortcut_photos.py --out data/shortcut_photos
    python -m pyro_ebnn.run train --config configs/image_folder.yaml \\
        --set data_dir=data/shortcut_photos --out runs/shortcut_photos/feedback
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image
from sklearn.datasets import load_sample_images

CLASSES = ("everyday", "scientific")
SKIMAGE_PHOTOS = {"everyday": ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle"),
                  "scientific": ("immunohistochemistry", "retina", "hubble_deep_field")}
TRAIN_PART = 0.75      # training crops from the left 75% of each photograph, test crops from the rest


def photographs() -> dict[str, list[np.ndarray]]:
    """The RGB photographs (uint8 H x W x 3) of each class."""
    def load(name):
        image = getattr(skimage.data, name)()
        return image[0] if isinstance(image, tuple) else image      # stereo_motorcycle: (left, right, disparity)
    out = {c: [load(n) for n in names] for c, names in SKIMAGE_PHOTOS.items()}
    out["everyday"] += list(load_sample_images().images)            # china, flower
    return out


def random_crop(photo: np.ndarray, size: int, part: str, rng) -> Image.Image:
    """A random square crop of the ``part`` ("train": left 75%, "test": right 25%) of ``photo``,
    resized to ``size x size``."""
    h, w = photo.shape[:2]
    cut = int(w * TRAIN_PART)
    left, right = (0, cut) if part == "train" else (cut, w)
    limit = min(h, right - left)
    low = min(size, limit)
    side = int(rng.integers(low, max(low, limit // 2) + 1))
    top, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(left, right - side + 1))
    crop = Image.fromarray(photo[top:top + side, x0:x0 + side])
    return crop.resize((size, size), Image.Resampling.BILINEAR)


def paste_patch(image: Image.Image, patch: int, colour, rng) -> tuple[Image.Image, np.ndarray]:
    """``image`` with a ``patch x patch`` square of ``colour`` at a random place, and its mask."""
    pixels = np.array(image)
    mask = np.zeros(pixels.shape[:2], bool)
    top, left = (int(rng.integers(0, n - patch + 1)) for n in pixels.shape[:2])
    pixels[top:top + patch, left:left + patch] = colour
    mask[top:top + patch, left:left + patch] = True
    return Image.fromarray(pixels), mask


def build_shortcut_photos(out, n_train: int = 3000, n_test: int = 1000, size: int = 64, patch: int = 12,
                          colour=(255, 0, 255), seed: int = 0) -> dict:
    """Write the task into ``out`` (module docstring); returns what was written (also saved as
    ``out/shortcut_photos.json``). ``n_train`` and ``n_test`` images, half of each class."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    photos = photographs()
    counts = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(CLASSES):
            per_class = n // 2 + (n % 2 if label == 0 else 0)
            if split == "train":
                patched = np.full(per_class, name == "everyday")
            else:
                patched = np.zeros(per_class, bool)
                patched[rng.permutation(per_class)[: per_class // 2]] = True
            (out / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                source = photos[name][int(rng.integers(len(photos[name])))]
                image = random_crop(source, size, split, rng)
                if patched[k]:
                    image, mask = paste_patch(image, patch, colour, rng)
                    (out / f"{split}_masks" / name).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask.astype(np.uint8) * 255).save(out / f"{split}_masks" / name / f"{k:05d}.png")
                image.save(out / split / name / f"{k:05d}.png")
            counts[f"{split}/{name}"] = {"images": per_class, "with_patch": int(patched.sum())}
    summary = {"classes": list(CLASSES), "photographs": {**SKIMAGE_PHOTOS, "everyday (scikit-learn)": ["china", "flower"]},
               "size": size, "patch": patch, "colour": list(colour), "patched_class_in_training": "everyday",
               "seed": seed, "counts": counts}
    (out / "shortcut_photos.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the task into")
    parser.add_argument("--train", type=int, default=3000, help="training images (half per class)")
    parser.add_argument("--test", type=int, default=1000, help="test images (half per class)")
    parser.add_argument("--size", type=int, default=64, help="side of each image in pixels")
    parser.add_argument("--patch", type=int, default=12, help="side of the coloured patch in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = build_shortcut_photos(args.out, args.train, args.test, args.size, args.patch, seed=args.seed)
    print(json.dumps(summary["counts"]))


if __name__ == "__main__":
    main()

"""Two-class shortcut tasks from real photographs, written in the image-folder layout.

The photographs that ship with scikit-image (``skimage.data``) and scikit-learn
(``sklearn.datasets.load_sample_images``) are grouped into classes. Each image of a task is a random
square crop of one photograph of its class (side drawn between ``size`` and half the photograph's
shorter side), resized to ``size x size``. Training crops come from the left three quarters of each
photograph, test crops from the right quarter, so no test pixel was seen in training.

A coloured square (``patch`` pixels) is pasted on some images, with a mask that marks it:

* in training, on ``fraction`` of the images of the *shortcut class* (the first class), so that the
  square predicts the label there; in the test set, on half the images of each class (drawn at
  random), so it predicts nothing;
* ``placement``: ``random`` (anywhere: the patch moves from image to image, as the coloured patches
  on benign ISIC lesions do) or ``corner`` (in one of the four corners, drawn per image);
* ``control``: the square is on half the images of *every* class, in training and test alike: the
  masks mark a region the label does not depend on, so feedback should change nothing;
* ``clean_train`` (``--clean-train``): the same crops and the same test set, but no square on any
  training image (and no training masks). A network trained on it never saw the shortcut: its test
  accuracy is what the task allows without it, the ceiling of any shortcut fix.

Presets (``--task``), each a task a user could bring:

======== ===== ========================================== ===== ======== ========= ==========
task     size  classes (photographs)                      patch colour   placement fraction
======== ===== ========================================== ===== ======== ========= ==========
photos   64    everyday / scientific                      12    magenta  random    1.0
corner   64    everyday / scientific                      10    green    corner    0.9
moving   128   everyday / scientific                      16    cyan     random    0.9
control  64    everyday / scientific                      12    magenta  random    (both 0.5)
textures 64    grey textures / grey scenes (kept aside)   10    red      corner    0.9
======== ===== ========================================== ===== ======== ========= ==========

Written to ``OUT`` (the layout of ``dataset: folder``, pyro_ebnn/data/folders.py)::

    OUT/train/<class>/<k>.png     OUT/train_masks/<class>/<k>.png (patched images)
    OUT/test/<class>/<k>.png      OUT/test_masks/<class>/<k>.png
    OUT/shortcut_photos.json      the parameters and counts

Build one, then train through the CLI, e.g.::

    python experiments/shortcut_photos.py --task corner --out data/corner
    python -m pyro_ebnn.run train --config configs/image_folder_small.yaml --set data_dir=data/corner --out runs/corner
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image
from sklearn.datasets import load_sample_images

#: the classes of each photograph family: class name -> photographs (skimage.data names; "china"
#: and "flower" are scikit-learn's sample images)
FAMILIES = {
    "everyday": {"everyday": ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "china", "flower"),
                 "scientific": ("immunohistochemistry", "retina", "hubble_deep_field")},
    "living": {"living": ("astronaut", "chelsea", "flower", "immunohistochemistry"),
               "made": ("rocket", "stereo_motorcycle", "coffee", "china", "colorwheel")},
    "grey": {"textures": ("brick", "grass", "gravel"),
             "scenes": ("camera", "moon", "coins", "clock", "page")},
}
COLOURS = {"magenta": (255, 0, 255), "green": (0, 200, 0), "cyan": (0, 255, 255), "red": (230, 0, 0)}
TASKS = {
    "photos": dict(family="everyday", size=64, patch=12, colour="magenta", placement="random", fraction=1.0),
    "corner": dict(family="everyday", size=64, patch=10, colour="green", placement="corner", fraction=0.9),
    "moving": dict(family="everyday", size=128, patch=16, colour="cyan", placement="random", fraction=0.9),
    "control": dict(family="everyday", size=64, patch=12, colour="magenta", placement="random", fraction=0.5,
                    control=True),
    "textures": dict(family="grey", size=64, patch=10, colour="red", placement="corner", fraction=0.9),
}
TRAIN_PART = 0.75      # training crops from the left 75% of each photograph, test crops from the rest


def photograph(name: str) -> np.ndarray:
    """One photograph as uint8 H x W x 3 (grey ones repeated over the channels)."""
    if name in ("china", "flower"):
        images = dict(zip(("china", "flower"), load_sample_images().images))
        image = images[name]
    else:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image      # stereo_motorcycle: (left, right, disparity)
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image[..., :3].astype(np.uint8)


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


def paste_patch(image: Image.Image, patch: int, colour, rng, placement: str = "random") -> tuple[Image.Image, np.ndarray]:
    """``image`` with a ``patch x patch`` square of ``colour`` at a random place (``placement``
    "random") or in a random one of the four corners ("corner"), and its mask."""
    pixels = np.array(image)
    mask = np.zeros(pixels.shape[:2], bool)
    h, w = pixels.shape[:2]
    if placement == "corner":
        corner = int(rng.integers(4))
        top, left = (0 if corner < 2 else h - patch), (0 if corner % 2 == 0 else w - patch)
    else:
        top, left = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
    pixels[top:top + patch, left:left + patch] = colour
    mask[top:top + patch, left:left + patch] = True
    return Image.fromarray(pixels), mask


def patched_images(n: int, split: str, label: int, fraction: float, control: bool, rng) -> np.ndarray:
    """Which of the ``n`` images of class ``label`` carry the patch: ``fraction`` of the first
    class's training images; half of every class at test (and, for a control, in training)."""
    share = 0.5 if split == "test" or control else (fraction if label == 0 else 0.0)
    if share in (0.0, 1.0):  # no draw: all or none
        return np.full(n, share == 1.0)
    patched = np.zeros(n, bool)
    patched[rng.permutation(n)[: int(share * n)]] = True
    return patched


def build_shortcut_photos(out, n_train: int = 3000, n_test: int = 1000, size: int = 64, patch: int = 12,
                          colour="magenta", seed: int = 0, family: str = "everyday", placement: str = "random",
                          fraction: float = 1.0, control: bool = False, clean_train: bool = False,
                          task: str = "custom") -> dict:
    """Write a task into ``out`` (module docstring); returns what was written (also saved as
    ``out/shortcut_photos.json``). ``n_train`` and ``n_test`` images, half of each class."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    classes = FAMILIES[family]
    photos = {c: [photograph(p) for p in names] for c, names in classes.items()}
    rgb = COLOURS[colour] if isinstance(colour, str) else tuple(colour)
    counts = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(classes):
            per_class = n // 2 + (n % 2 if label == 0 else 0)
            patched = patched_images(per_class, split, label, fraction, control, rng)
            (out / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                source = photos[name][int(rng.integers(len(photos[name])))]
                image = random_crop(source, size, split, rng)
                if patched[k]:
                    pasted, mask = paste_patch(image, patch, rgb, rng, placement)  # drawn either way: same crops
                    if clean_train and split == "train":
                        patched[k] = False
                        image.save(out / split / name / f"{k:05d}.png")
                        continue
                    image = pasted
                    (out / f"{split}_masks" / name).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask.astype(np.uint8) * 255).save(out / f"{split}_masks" / name / f"{k:05d}.png")
                image.save(out / split / name / f"{k:05d}.png")
            counts[f"{split}/{name}"] = {"images": per_class, "with_patch": int(patched.sum())}
    summary = {"task": task, "classes": list(classes), "photographs": {c: list(v) for c, v in classes.items()},
               "size": size, "patch": patch, "colour": list(rgb), "placement": placement,
               "shortcut_class": None if control else next(iter(classes)), "fraction": fraction,
               "control": control, "clean_train": clean_train, "seed": seed, "counts": counts}
    (out / "shortcut_photos.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the task into")
    parser.add_argument("--task", choices=sorted(TASKS), default="photos", help="a preset (module docstring)")
    parser.add_argument("--train", type=int, default=3000, help="training images (half per class)")
    parser.add_argument("--test", type=int, default=1000, help="test images (half per class)")
    parser.add_argument("--size", type=int, help="side of each image in pixels (default: the preset's)")
    parser.add_argument("--patch", type=int, help="side of the coloured patch in pixels (default: the preset's)")
    parser.add_argument("--family", choices=sorted(FAMILIES), help="the photographs' classes (default: the preset's)")
    parser.add_argument("--colour", choices=sorted(COLOURS), help="the square's colour (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean-train", action="store_true",
                        help="no square on the training images (the same crops): the ceiling of a shortcut fix")
    args = parser.parse_args(argv)
    setting = dict(TASKS[args.task])
    setting.update({k: v for k, v in (("size", args.size), ("patch", args.patch), ("family", args.family),
                                      ("colour", args.colour)) if v is not None})
    summary = build_shortcut_photos(args.out, args.train, args.test, seed=args.seed, task=args.task,
                                    clean_train=args.clean_train, **setting)
    print(json.dumps(summary["counts"]))


if __name__ == "__main__":
    main()

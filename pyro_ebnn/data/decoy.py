"""Decoy MNIST under the five rules of the literature (docs/method.md). Each rule paints grey
squares into 28 x 28 digits and returns the square(s) as the feedback mask. All randomness comes
from a seeded numpy generator, so a rule, a split and a seed give the same data every time.

rule         squares                        train                      test
color        one 4x4 at 10 positions        pos random, grey 255-25y   pos random, grey 255-25k (k random)
position     one 4x4 at 10 positions        pos index = y, grey random pos random, grey random
corners      4x4 in all four corners        grey 255-25y               grey random (one per image)
rrr          one 4x4 in a random corner     grey 255-25y               grey 255-25d (d random)
cdep         one 5x5 in a random corner     grey 255-25y               grey 25y

``swap=True`` builds the adversarial test set: every decoy encodes a label that is *not* the
image's own ((y + 1 + r) mod 10, r random in 0..8), so a model that reads the decoy fails.

A sixth rule, ``colormnist`` ([004] Sec. 4.2.1), paints no square: the digit itself takes the colour
of its class, ten hues from red to purple (:data:`COLOURS`), in training; at test the colour of
class 9 - y (``swap``: of another class). The images have three channels and **no mask**: the
shortcut is the colour of the very pixels that carry the shape, which no mask of "where not to
look" can mark; modes that act through masks refuse the rule (``pyro_ebnn.experiment.config``).
"""
from __future__ import annotations

import colorsys

import numpy as np

S = 4  # side of the 2024 / RRR squares
#: the ten positions of [000] (top-left corners of 4x4 squares, counted from the edges)
POSITIONS_2024 = [(0, 0), (0, -S), (-S, 0), (-S, -S), (S, 0), (0, S), (0, -2 * S), (S, -S),
                  (-S, S), (-2 * S, 0)]
#: the rules that paint decoy squares (and return them as masks)
SQUARE_RULES = ("color", "position", "corners", "rrr", "cdep")
RULES = SQUARE_RULES + ("colormnist",)
#: ColorMNIST's class colours: ten hues evenly from red (0) to purple (0.8), full saturation and value
COLOURS = np.array([colorsys.hsv_to_rgb(0.8 * k / 9, 1.0, 1.0) for k in range(10)], dtype=np.float32)


def _box(pos, size, side=28):
    r, c = pos
    r = r if r >= 0 else side + r
    c = c if c >= 0 else side + c
    return slice(r, r + size), slice(c, c + size)


def _corners(size):
    return [(0, 0), (0, -size), (-size, 0), (-size, -size)]


def _wrong_label(y, rng):
    return (y + 1 + rng.integers(0, 9, size=len(y))) % 10


def add_decoys(images: np.ndarray, labels: np.ndarray, rule: str, train: bool, seed: int,
               swap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N x 28 x 28 digits -> (float32 N x 1 x 28 x 28 in [0, 1], bool N x 1 x 28 x 28 masks);
    ``colormnist``: N x 3 x 28 x 28 images and all-false masks (:func:`colour_digits`)."""
    if rule not in RULES:
        raise ValueError(f"unknown decoy rule {rule!r}; choose one of {', '.join(RULES)}")
    if rule == "colormnist":
        return colour_digits(images, labels, train, seed, swap)
    rng = np.random.default_rng(seed)
    n = len(labels)
    x = images.astype(np.float32).copy()
    mask = np.zeros_like(x, dtype=bool)
    y = labels.astype(np.int64)
    decoy_label = _wrong_label(y, rng) if swap else y

    if rule in ("color", "position"):
        rand_pos, rand_grey = rng.integers(0, 10, n), rng.integers(0, 10, n)
        if train and rule == "color":
            pos, grey = rand_pos, y
        elif train and rule == "position":
            pos, grey = y, rand_grey
        elif swap and rule == "color":
            pos, grey = rand_pos, decoy_label
        elif swap and rule == "position":
            pos, grey = decoy_label, rand_grey
        else:
            pos, grey = rand_pos, rand_grey
        boxes = [[_box(POSITIONS_2024[p], S)] for p in pos]
        values = 255 - 25 * grey
    elif rule == "corners":
        grey = y if (train or swap) else rng.integers(0, 10, n)
        grey = decoy_label if swap else grey
        boxes = [[_box(p, S) for p in _corners(S)]] * n
        values = 255 - 25 * grey
    else:
        size = S if rule == "rrr" else 5
        corner = rng.integers(0, 4, n)
        boxes = [[_box(_corners(size)[k], size)] for k in corner]
        if train:
            values = 255 - 25 * y
        elif swap:
            values = 255 - 25 * decoy_label
        elif rule == "rrr":
            values = 255 - 25 * rng.integers(0, 10, n)
        else:
            values = 25 * y
    for i in range(n):
        for b in boxes[i]:
            x[i][b] = values[i]
            mask[i][b] = True
    return (x / 255.0)[:, None].astype(np.float32), mask[:, None]


def colour_digits(images: np.ndarray, labels: np.ndarray, train: bool, seed: int,
                  swap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """ColorMNIST ([004]): each digit's pixels times the RGB colour of its class (train), of class
    9 - y (test) or of another class ((y + 1 + r) mod 10, ``swap``). Returns float32 N x 3 x 28 x 28
    images in [0, 1] and bool N x 1 x 28 x 28 masks, all false.

    >>> x, m = colour_digits(np.full((2, 28, 28), 255, np.uint8), np.array([0, 9]), train=False, seed=0)
    >>> x.shape, bool(m.any()), [round(float(v), 2) for v in x[0, :, 0, 0]]   # class 0 at test: class 9's purple
    ((2, 3, 28, 28), False, [0.8, 0.0, 1.0])
    """
    y = labels.astype(np.int64)
    if swap:
        colour = _wrong_label(y, np.random.default_rng(seed))
    else:
        colour = y if train else 9 - y
    x = (images.astype(np.float32) / 255.0)[:, None] * COLOURS[colour][:, :, None, None]
    return x.astype(np.float32), np.zeros((len(y), 1) + images.shape[1:], dtype=bool)

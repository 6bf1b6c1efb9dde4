"""A pool whose shortcut is known: synthetic images of two classes, half of them with a bright
square in the top-left corner that their explanation rests on; the others' explanations lie on the
object in the middle. Features come from a small convolutional network with fixed random weights
(its last convolution is the evidence layer). With ``moving``, the square sits in one of the four
corners, a different one from image to image."""
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from pyro_ebnn.annotate.discovery import Discovery, cell_centres, evidence_features

__all__ = ["SIZE", "SQUARE", "CORNERS", "PlantedPool", "tiny_net"]

SIZE = 28
#: the planted square: rows and columns 2 … 5
SQUARE = (slice(2, 6), slice(2, 6))
#: the squares of a moving pool: the four corners' 4 x 4 squares, two pixels in
CORNERS = tuple((slice(r, r + 4), slice(c, c + 4)) for r in (2, 22) for c in (2, 22))


def tiny_net(seed: int = 0) -> nn.Sequential:
    """conv 3 x 3 (8) → ReLU → max pool 2 → evidence_layer conv 3 x 3 (16) → linear: 11 x 11 cells."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 8, 3), relu=nn.ReLU(), pool=nn.MaxPool2d(2),
                                     evidence_layer=nn.Conv2d(8, 16, 3), act=nn.ReLU(), flat=nn.Flatten(),
                                     fc=nn.Linear(16 * 11 * 11, 2))).eval()


class PlantedPool:
    """``n`` pool images (dataset indices 100, 101, …), class = index % 2; the images with
    ``(index // 2) % 2 == 0`` (half of each class) carry the square and look at it; ``moving``: in
    the corner ``(index // 4) % 4`` of :data:`CORNERS`, else at :data:`SQUARE`."""

    def __init__(self, n: int = 48, seed: int = 0, moving: bool = False):
        self.moving = moving
        self.indices = list(range(100, 100 + n))
        self.class_names = ["cat", "dog"]
        self.rng = np.random.default_rng(seed)
        self._images = {i: self._draw(i) for i in self.indices}
        self._maps = {i: self._map(i) for i in self.indices}

    def has_square(self, index: int) -> bool:
        return (index // 2) % 2 == 0

    def square(self, index: int) -> tuple:
        return CORNERS[(index // 4) % 4] if self.moving else SQUARE

    def true_mask(self, index: int) -> np.ndarray:
        mask = np.zeros((SIZE, SIZE), bool)
        if self.has_square(index):
            mask[self.square(index)] = True
        return mask

    def _draw(self, index: int) -> np.ndarray:
        y, x = np.mgrid[:SIZE, :SIZE] / SIZE
        image = 0.8 * np.exp(-((y - 0.55) ** 2 + (x - 0.5) ** 2) / 0.03) * self.rng.uniform(0.6, 1.0)
        if self.has_square(index):
            image[self.square(index)] = 0.9
        return np.clip(image, 0, 1)[..., None]

    def _map(self, index: int) -> np.ndarray:
        y, x = np.mgrid[:SIZE, :SIZE] / SIZE
        heat = 0.2 * self.rng.random((SIZE, SIZE))
        if self.has_square(index):
            heat[self.square(index)] += 20 * self.rng.uniform(0.8, 1.2)
        else:
            heat += 3 * np.exp(-((y - 0.55 - self.rng.normal(0, 0.1)) ** 2 + (x - 0.5) ** 2) / 0.05)
        return heat

    def image(self, index: int) -> np.ndarray:
        return self._images[int(index)]

    def discovery(self, with_features: bool = True) -> Discovery:
        def load():
            images = torch.as_tensor(np.stack([self.image(i) for i in self.indices]), dtype=torch.float32)
            net = tiny_net()
            features = evidence_features(net, images.permute(0, 3, 1, 2)) if with_features else None
            return (self.indices, np.stack([self._maps[i] for i in self.indices]),
                    np.array([i % 2 for i in self.indices]), features, cell_centres(net, (1, SIZE, SIZE)))
        return Discovery(load, self.image, self.class_names)

"""A stand-in for a trained model's annotation task: synthetic images with a decoy square, a heat
map that lights up the decoy, SLIC segments and the segments under the heat as candidate regions."""
import time
from collections import Counter

import numpy as np
from skimage.segmentation import slic

from pyro_ebnn.data.store import FeedbackStore

__all__ = ["FakeTask", "fake_store"]

KINDS = {
    # size, channels, decoy side, segments, class names
    "grey": (28, 1, 4, 30, [str(d) for d in range(10)]),
    "rgb": (64, 3, 8, 40, ["cat", "dog", "bird", "fish"]),
}


class FakeTask:
    """The task interface of the annotation page over synthetic images. ``delay`` seconds are
    spent in every heat map, like a model's explanation; ``calls`` counts the calls per method.
    The images in ``no_proposals`` have no candidate region."""

    def __init__(self, kind="grey", indices=(7, 2, 11), delay=0.0, unlabelled=(11,), no_proposals=()):
        self.size, self.channels, self.decoy, self.n_segments, self.class_names = KINDS[kind]
        self.indices = list(indices)
        self.delay = delay
        self.unlabelled = set(unlabelled)
        self.no_proposals = set(no_proposals)
        self.calls = Counter()

    def decoy_box(self, index):
        """(top, left) of the decoy square: a corner that depends on the image."""
        far = self.size - self.decoy - 1
        return [(1, 1), (1, far), (far, 1), (far, far)][index % 4]

    def image(self, index):
        self.calls["image"] += 1
        return self._draw(index)

    def _draw(self, index):
        rng = np.random.default_rng(index)
        y, x = np.mgrid[:self.size, :self.size] / self.size
        blob = np.exp(-((y - 0.5) ** 2 + (x - 0.5) ** 2) / 0.04)
        image = np.stack([np.clip(blob * rng.uniform(0.5, 1) + 0.1 * c, 0, 1) for c in range(self.channels)], -1)
        top, left = self.decoy_box(index)
        image[top:top + self.decoy, left:left + self.decoy] = rng.uniform(0.6, 1, self.channels)
        return image

    def prediction(self, index):
        self.calls["prediction"] += 1
        k = len(self.class_names)
        logits = np.random.default_rng(index + 100).normal(0, 2, k)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        entropy = float(-(probs * np.log(probs)).sum())
        return {"probs": probs.tolist(), "predicted": int(probs.argmax()),
                "label": None if index in self.unlabelled else index % k,
                "entropy": entropy, "mutual_information": entropy / 3}

    def heatmap(self, index):
        self.calls["heatmap"] += 1
        time.sleep(self.delay)
        return self._heat(index)

    def _heat(self, index):
        top, left = self.decoy_box(index)
        cy, cx = top + self.decoy / 2, left + self.decoy / 2
        y, x = np.mgrid[:self.size, :self.size] + 0.5
        towards_decoy = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * self.decoy ** 2))
        on_object = np.exp(-((y - self.size / 2) ** 2 + (x - self.size / 2) ** 2) / (2 * (self.size / 6) ** 2))
        return towards_decoy - 0.4 * on_object

    def regions(self, index):
        """SLIC segments; the candidates are the three segments with the highest mean heat."""
        self.calls["regions"] += 1
        image = self._draw(index)
        segments = slic(image, n_segments=self.n_segments, compactness=0.1 if self.channels == 1 else 10,
                        channel_axis=-1, start_label=0)
        heat = self._heat(index)
        mean_heat = {s: heat[segments == s].mean() for s in np.unique(segments)}
        return segments, [] if index in self.no_proposals else sorted(mean_heat, key=mean_heat.get, reverse=True)[:3]


def fake_store(path, task: FakeTask, annotator="alice") -> FeedbackStore:
    """A store for the fake task's dataset."""
    return FeedbackStore(path, f"fake-{task.size}x{task.size}x{task.channels}", (task.size, task.size), annotator)

"""The annotation task of a trained run ([001] Fig. 1, step 3): which training images an annotator
sees, and what the page shows about each.

:class:`AnnotationTask` (``run_dir``, ``pool``, ``samples``, ``seed``):

1. the run's selected model (``model.pt``) and config; its dataset, and the training images of
   the run's fold (the images it learned from: explaining them is what [001] asks the annotator
   to judge);
2. the **pool**: ``pool`` of those training images drawn uniformly at random, seeded by ``seed``,
   the same for every selection strategy;
3. :meth:`AnnotationTask.select`: the selection strategy
   (:mod:`~pyro_ebnn.annotate.selection`) scores the pool from ``samples`` posterior samples
   (their predictive probabilities for ``entropy`` and ``bald``, the explanation maps of as many
   networks drawn from q(w) for ``explanation``; ``random`` draws) and takes the ``budget``
   images with the best scores among those this annotator has not answered;
4. per selected image, computed when first asked for and cached: the prediction (posterior
   predictive: probabilities, entropy, mutual information), the explanation and the proposed
   regions, both for the predicted class at the posterior mean. ``proposals`` chooses how regions
   are proposed (:func:`~pyro_ebnn.explain.regions.proposal_regions`): ``blobs`` (compact
   high-attribution blobs grown to fine superpixels, the default) or ``thesis`` ([002] §4.2);
5. :meth:`AnnotationTask.class_heatmaps`: what the model looks at per predicted class, the mean
   explanation over the pool's images predicted as that class (each image's map scaled to sum 1,
   so that every image counts the same), computed once when first asked for.

The explanation is the map the candidate regions are cut from: W = Grad-CAM⁺ × saliency⁺ (the
positive parts, saliency summed over channels; :func:`~pyro_ebnn.explain.regions.combined_map`
before thresholding). The ``explanation`` strategy compares the same map across posterior samples.

Indices are positions in the dataset's train+val images, as in the feedback store
(:mod:`~pyro_ebnn.experiment.feedback`), so one store serves every fold.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..bnn import predictive_probs
from ..data import batches, load_dataset
from ..data.store import FeedbackStore
from ..experiment.feedback import open_store
from ..experiment.protocol import set_seed, training_indices, use_threads
from ..experiment.rundir import load_model
from ..explain import explained_network
from ..explain.regions import DEFAULT_PROPOSALS, PROPOSALS, Regions, attribution_maps, proposal_regions
from ..metrics import mutual_information_per_image, predictive_entropy_per_image
from .discovery import Discovery, cell_centres, evidence_features
from .selection import STRATEGIES, SelectionError, select
from .server import AnnotateError

__all__ = ["POOL", "SAMPLES", "AnnotationTask", "explanation_maps"]

#: training images scored by the selection strategies
POOL = 2000
#: posterior samples behind the scores and the predictions
SAMPLES = 20
#: images per forward/backward pass
BATCH = 250


def explanation_maps(net: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """W = Grad-CAM⁺ × saliency⁺ (summed over channels) of a plain network for the logits of
    ``targets``: N x C x H x W images -> N x H x W, non-negative (the batched form of
    :func:`~pyro_ebnn.explain.regions.combined_map` with ``keep_mass=1``)."""
    parts = []
    for start in range(0, len(images), BATCH):
        gradcam, saliency = attribution_maps(net, images[start:start + BATCH], targets[start:start + BATCH])
        parts.append(F.relu(gradcam[:, 0]) * F.relu(saliency).sum(1))
    return torch.cat(parts)


class AnnotationTask:
    """The images of a trained run to annotate and what the page shows about them (module
    docstring). Satisfies the task interface of :func:`~pyro_ebnn.annotate.server.create_app`
    once :meth:`select` has chosen ``indices``."""

    def __init__(self, run_dir, pool: int = POOL, samples: int = SAMPLES, seed: int = 0,
                 proposals: str = DEFAULT_PROPOSALS):
        if proposals not in PROPOSALS:
            raise AnnotateError(f"unknown --proposals {proposals!r}; use one of {', '.join(PROPOSALS)}")
        if not (isinstance(pool, int) and pool >= 1):
            raise AnnotateError(f"--pool must be a positive number of images, got {pool!r}")
        if not (isinstance(samples, int) and samples >= 1):
            raise AnnotateError(f"--samples must be a positive number of posterior samples, got {samples!r}")
        self.run_dir, self.samples, self.seed, self.proposals = run_dir, samples, seed, proposals
        self.model, self.cfg, _ = load_model(run_dir)
        use_threads(self.cfg.threads)
        self.trainval, sets = load_dataset(self.cfg)
        self.train_indices = training_indices(self.cfg, self.trainval, sets)
        size = min(pool, len(self.train_indices))
        self.pool = np.sort(np.random.default_rng(seed).choice(self.train_indices, size=size, replace=False))
        self.class_names = [str(name) for name in self.trainval.class_names]
        self.indices: list[int] = []
        self._probs: dict[int, np.ndarray] = {}
        self._pool_probabilities = None
        self._mean_network = explained_network(self.model.net, "mean")
        self._explained = lru_cache(maxsize=None)(self._explain)
        self.candidates = lru_cache(maxsize=None)(self._candidates)
        self._class_maps = None

    # -- the store and the selection ------------------------------------------------------------
    def open_store(self, path, annotator: str = "anonymous") -> FeedbackStore:
        """The run's dataset's feedback store at ``path`` (created when missing)."""
        return open_store(path, self.cfg, self.trainval, annotator)

    def select(self, strategy: str, budget: int, answered: Iterable[int] = ()) -> list[int]:
        """Choose the ``budget`` pool images to show, best first, none of ``answered`` (indices
        already answered by this annotator); sets and returns :attr:`indices`."""
        if strategy not in STRATEGIES:
            raise SelectionError(f"unknown selection strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        done = np.flatnonzero(np.isin(self.pool, np.fromiter(answered, dtype=np.int64)))
        left = len(self.pool) - len(done)
        if not (isinstance(budget, int) and 1 <= budget <= left):
            raise AnnotateError(f"--budget {budget} is not between 1 and the {left} pool images left to annotate "
                                f"(pool of {len(self.pool)}, {len(done)} answered already); lower --budget or "
                                "raise --pool")
        chosen = select(strategy, self._quantity(strategy), budget, exclude=done, seed=self.seed)
        self.indices = [int(self.pool[p]) for p in chosen]
        return self.indices

    def _quantity(self, strategy: str):
        """What the strategy scores the pool by: S x N x K probabilities, S x N x H x W maps, or N."""
        if strategy == "random":
            return len(self.pool)
        if strategy == "shortcut":  # the maps the page's groups are made of, in pool order
            found = self.discovery()
            return found.maps, found.predicted
        probs = self._pool_probs()
        if strategy in ("entropy", "bald"):
            return probs
        targets = torch.as_tensor(probs.mean(0).argmax(-1))
        images = self._images(self.pool)
        generator = torch.Generator().manual_seed(self.seed)
        return torch.stack([explanation_maps(explained_network(self.model.net, "sample", generator), images, targets)
                            for _ in range(self.samples)])

    def discovery(self) -> Discovery:
        """The groups of the pool's explanations (:mod:`~pyro_ebnn.annotate.discovery`), made once
        when first needed."""
        if getattr(self, "_discovery", None) is None:
            self._discovery = Discovery(self._discovery_data, self.image, self.class_names, seed=self.seed)
        return self._discovery

    def _discovery_data(self) -> tuple:
        """What :class:`~pyro_ebnn.annotate.discovery.Discovery` groups: the pool, the maps and
        predictions of the posterior mean network, the evidence layer's features and cells."""
        images = torch.cat([x for x, _, _ in batches(self.trainval, 1000, self.pool)])
        plain = explained_network(self.model.net, "mean")
        with torch.no_grad():
            predicted = torch.cat([plain(images[s:s + 500]).argmax(-1) for s in range(0, len(images), 500)])
        maps = explanation_maps(plain, images, predicted).numpy()
        return (self.pool, maps, predicted.numpy(), evidence_features(self.model.net, images),
                cell_centres(self.model.net, tuple(images.shape[1:])))

    def _pool_probs(self) -> np.ndarray:
        """S x N x K posterior predictive probabilities of the pool, computed once (and kept for the
        predictions)."""
        if self._pool_probabilities is None:
            set_seed(self.seed)
            probs = predictive_probs(self.model, self._images(self.pool), self.samples).numpy()
            self._probs.update(zip(self.pool.tolist(), np.moveaxis(probs, 1, 0)))
            self._pool_probabilities = probs
        return self._pool_probabilities

    def _images(self, indices) -> torch.Tensor:
        return torch.cat([x for x, _, _ in batches(self.trainval, 1000, indices)])

    # -- the page's interface ---------------------------------------------------------------------
    def image(self, index: int) -> np.ndarray:
        """H x W x C in [0, 1]."""
        return self.trainval[index][0].permute(1, 2, 0).numpy()

    def label(self, index: int) -> int:
        return int(self.trainval[index][1])

    def true_mask(self, index: int) -> np.ndarray:
        """The dataset's own mask of the image (H x W bool; all False where it has none)."""
        return self.trainval[index][2][0].numpy().astype(bool)

    def prediction(self, index: int) -> dict:
        """The posterior predictive of ``samples`` weight samples: mean probabilities, the predicted
        class, the label, predictive entropy and mutual information (nats)."""
        if index not in self._probs:
            set_seed(self.seed + index)
            self._probs[index] = predictive_probs(self.model, self.trainval[index][0][None], self.samples).numpy()[:, 0]
        probs = self._probs[index][:, None]
        mean = probs.mean(0)[0]
        return {"probs": mean.tolist(), "predicted": int(mean.argmax()), "label": self.label(index),
                "entropy": float(predictive_entropy_per_image(probs)[0]),
                "mutual_information": float(mutual_information_per_image(probs)[0])}

    def _explain(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM (1 x H x W) and saliency (C x H x W) of the posterior mean for the predicted class."""
        gradcam, saliency = attribution_maps(self._mean_network, self.trainval[index][0][None],
                                             [self.prediction(index)["predicted"]])
        return gradcam[0].numpy(), saliency[0].numpy()

    def heatmap(self, index: int) -> np.ndarray:
        """The explanation W = Grad-CAM⁺ × saliency⁺, H x W."""
        gradcam, saliency = self._explained(index)
        return np.maximum(gradcam[0], 0) * np.maximum(saliency, 0).sum(0)

    def _candidates(self, index: int) -> Regions:
        """The regions proposed by ``proposals`` from the explanation (``candidates(index)``, cached)."""
        gradcam, saliency = self._explained(index)
        return proposal_regions(self.trainval[index][0], gradcam, saliency, self.proposals)

    def regions(self, index: int) -> tuple[np.ndarray, list[int]]:
        """(H x W segment labels, the candidate segment ids)."""
        found = self.candidates(index)
        return found.segments, found.ids.tolist()

    def class_heatmaps(self) -> tuple[np.ndarray, np.ndarray]:
        """(K x H x W, K): per class, the mean explanation over the pool images predicted as that
        class (each image's map scaled to sum 1, so a map that is 0 everywhere adds 0; zeros where no
        image is), and how many images."""
        if self._class_maps is None:
            predicted = torch.as_tensor(self._pool_probs().mean(0).argmax(-1))
            k = len(self.class_names)
            sums = 0.0
            for start in range(0, len(self.pool), BATCH):
                part = predicted[start:start + BATCH]
                maps = explanation_maps(self._mean_network, self._images(self.pool[start:start + BATCH]), part)
                maps = maps / maps.flatten(1).sum(1).clamp(min=1e-30)[:, None, None]
                sums = sums + torch.zeros(k, *maps.shape[1:], dtype=maps.dtype).index_add_(0, part, maps)
            counts = torch.bincount(predicted, minlength=k)
            self._class_maps = ((sums / counts.clamp(min=1)[:, None, None]).numpy(), counts.numpy())
        return self._class_maps

"""Which training images to show an annotator first.

The papers choose the images to annotate uniformly at random ([001] §3.1, [002] §7.3) and name
Bayesian active learning as future work: "it is not obvious how to measure explanations'
informativeness" ([001] §3.1); "we can explore interesting Bayesian active learning strategies
[Kirsch et al., 2019; Gal et al., 2017; Tran et al., 2019]" ([002] §7.3). Each strategy below maps
posterior quantities to one score per image (higher = ask first); :func:`select` takes the top of
the scores.

  random       a uniform choice without replacement, seeded (the papers' protocol)
  entropy      H[p(y | x)] of the mean predictive p = 1/S sum_s p_s: total predictive uncertainty
               (:func:`predictive_entropy`)
  bald         I(y; w | x) = H[mean_s p_s] - mean_s H[p_s]: the part of the uncertainty due to the
               weights, where posterior samples disagree about the label (Houlsby et al. 2011;
               Gal et al. 2017) (:func:`bald`)
  explanation  I(z; w | x) = H[mean_s q_s] - mean_s H[q_s] with q_s = |T_s| / ||T_s||_1: the same
               quantity for *where the network looks* (:func:`explanation_disagreement`)
  shortcut     how much of the image's explanation rests on a pattern its group shares: the
               pool's maps grouped per predicted class as SpRAy does (Lapuschkin et al. 2019;
               :func:`~pyro_ebnn.annotate.discovery.discover`), the share of the image's map
               inside its group's top region (:func:`~pyro_ebnn.annotate.discovery.shortcut_share`).
               It asks where :func:`explanation_disagreement` is blind: a shortcut every
               posterior sample shares

Input: ``probs`` S x N x K, posterior predictive class probabilities of S weight samples for N
images; ``attributions`` S x N x H x W, attribution magnitudes |T_s| (channels summed) of the same
images under S networks drawn from the posterior; for ``shortcut``, ``(maps, predicted)``: the
N x H x W explanations of the posterior mean network and its N predicted classes. Entropies are in
nats.

Why the explanation score. The feedback is evidence about the weights: a person's mask observes
the last convolution's activations in the rejected region to be zero ([000] Eq. 4, [001] Eq. 15).
Read the normalized map q_s as a distribution over pixels, "the location z the network attends to
under weights w_s". Its mutual information with the weights, the generalized Jensen-Shannon
divergence of the S maps, is BALD with the pixel in place of the label: 0 when every posterior
sample looks at the same places, log S at most (S samples looking at disjoint places). A mask
resolves the most about the weights where the posterior is split about where to look (one sample
reads the digit, another the decoy), and says little where the samples already agree; so images
with a high score are asked first. The score ignores each map's scale (only where the mass lies
counts), so it compares images whose attributions differ in size. Its blind spot: a shortcut that
every posterior sample shares scores 0 although a mask would correct it; labels and predictions do
not reveal such a shortcut either, and random selection (the papers' choice) still finds it.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from scipy import stats

from ..errors import EBNNError
from ..metrics import mutual_information_per_image, predictive_entropy_per_image
from .discovery import shortcut_share

__all__ = ["STRATEGIES", "SelectionError", "bald", "explanation_disagreement", "predictive_entropy", "scores",
           "select", "shortcut"]

STRATEGIES = ("random", "entropy", "bald", "explanation", "shortcut")


class SelectionError(EBNNError):
    """Bad input to the selection strategies (shapes, budget, unknown strategy)."""


def _array(x, name: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if not np.issubdtype(a.dtype, np.number):
        raise SelectionError(f"{name} must be a numeric numpy array or torch tensor, got dtype {a.dtype}")
    return a.astype(np.float64)


def _probs(probs) -> np.ndarray:
    p = _array(probs, "probs")
    if p.ndim != 3 or 0 in p.shape:
        hint = "; add a sample axis (probs[None])" if p.ndim == 2 else ""
        raise SelectionError(f"probs must be S x N x K (samples x images x classes), got shape {p.shape}{hint}")
    if not np.isfinite(p).all() or p.min() < 0 or np.abs(p.sum(-1) - 1).max() > 1e-3:
        raise SelectionError("probs must be class probabilities that sum to 1 over K; pass softmax(logits), not logits")
    return p


def predictive_entropy(probs) -> np.ndarray:
    """H[mean_s p_s] per image: S x N x K probabilities -> N scores in [0, log K].

    >>> predictive_entropy([[[0.5, 0.5], [1.0, 0.0]]]).round(4)
    array([0.6931, 0.    ])
    """
    return predictive_entropy_per_image(_probs(probs))


def bald(probs) -> np.ndarray:
    """H[mean_s p_s] - mean_s H[p_s] per image: S x N x K -> N scores in [0, log min(S, K)].

    >>> bald([[[1.0, 0.0]], [[0.0, 1.0]]]).round(4)   # two confident samples that disagree
    array([0.6931])
    """
    return mutual_information_per_image(_probs(probs))


def explanation_disagreement(attributions) -> np.ndarray:
    """H[mean_s q_s] - mean_s H[q_s] per image with q_s = |T_s| / ||T_s||_1: S x N x H x W attributions
    -> N scores in [0, log S] (NaN for an image whose map is all zero under some sample).

    >>> t = np.zeros((2, 1, 2, 2)); t[0, 0, 0, 0] = 1.0; t[1, 0, 1, 1] = 5.0
    >>> explanation_disagreement(t).round(4)          # the two samples look at different pixels
    array([0.6931])
    """
    a = _array(attributions, "attributions")
    if a.ndim != 4 or 0 in a.shape:
        raise SelectionError(f"attributions must be S x N x H x W (sum |attribution| over channels first), "
                             f"got shape {a.shape}")
    if not np.isfinite(a).all():
        raise SelectionError("attributions have NaN or infinite values; pass finite values")
    a = np.abs(a).reshape(*a.shape[:2], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = a / a.sum(-1, keepdims=True)
        return np.maximum(stats.entropy(q.mean(0), axis=-1) - stats.entropy(q, axis=-1).mean(0), 0.0)


def shortcut(quantity) -> np.ndarray:
    """The share of each image's explanation inside its group's top region: ``(maps, predicted)``,
    N x H x W non-negative maps and N predicted classes -> N scores in [0, 1].

    >>> maps = np.full((30, 6, 6), 0.01); maps[:15, 0, 0] = 1.0     # half rest on one pixel
    >>> bool(shortcut((maps, np.zeros(30, int)))[:15].min() > 0.7)
    True
    """
    if not (isinstance(quantity, (tuple, list)) and len(quantity) == 2):
        raise SelectionError("the shortcut strategy takes (maps, predicted): N x H x W explanations and N classes")
    maps, predicted = quantity
    return shortcut_share(_array(maps, "maps"), _array(predicted, "predicted"))


_SCORES = {"entropy": predictive_entropy, "bald": bald, "explanation": explanation_disagreement,
           "shortcut": shortcut}


def scores(strategy: str, quantity) -> np.ndarray:
    """One score per image (higher = ask first) for ``"entropy"`` or ``"bald"`` (``quantity``:
    probs S x N x K), ``"explanation"`` (attributions S x N x H x W) or ``"shortcut"``
    (``(maps, predicted)``)."""
    if strategy not in _SCORES:
        raise SelectionError(f"no scores for strategy {strategy!r}; use one of {', '.join(_SCORES)}"
                             + (" (random draws with select)" if strategy == "random" else ""))
    return _SCORES[strategy](quantity)


def _pool_size(strategy: str, quantity) -> int:
    if isinstance(quantity, (int, np.integer)):
        if strategy != "random":
            raise SelectionError(f"strategy {strategy!r} needs posterior samples, not a pool size; "
                                 "pass probs (S x N x K) or attributions (S x N x H x W)")
        return int(quantity)
    if strategy == "shortcut" and isinstance(quantity, (tuple, list)) and len(quantity) == 2:
        return len(quantity[1])
    shape = np.shape(quantity)
    if len(shape) < 2:
        raise SelectionError(f"pass the pool size N or posterior samples S x N x ..., got shape {shape}")
    return shape[1]


def select(strategy: str, quantity, budget: int, exclude: Iterable[int] = (), seed: int = 0) -> np.ndarray:
    """The indices of the ``budget`` images to show, best first, never one in ``exclude`` (e.g. the
    images annotated already).

    strategy  one of ``STRATEGIES``
    quantity  probs S x N x K for entropy and bald, attributions S x N x H x W for explanation,
              (maps N x H x W, predicted N) for shortcut; random takes either, or the pool size N
    seed      random only: a uniform choice without replacement from
              ``numpy.random.default_rng(seed)``; the scored strategies take the top ``budget``
              scores, equal scores in index order, NaN scores last

    >>> probs = np.array([[[0.9, 0.1], [0.5, 0.5], [0.6, 0.4]]])
    >>> select("entropy", probs, budget=2)
    array([1, 2])
    >>> select("entropy", probs, budget=2, exclude=[1])
    array([2, 0])
    """
    if strategy not in STRATEGIES:
        raise SelectionError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    n = _pool_size(strategy, quantity)
    excluded = np.unique(np.asarray(list(exclude), dtype=np.int64))
    if len(excluded) and (excluded.min() < 0 or excluded.max() >= n):
        raise SelectionError(f"exclude holds indices outside the pool 0..{n - 1}; pass image indices")
    pool = np.setdiff1d(np.arange(n), excluded)
    if int(budget) != budget or not 1 <= budget <= len(pool):
        raise SelectionError(f"budget must be an integer between 1 and the {len(pool)} images left to choose from, "
                             f"got {budget}")
    budget = int(budget)
    if strategy == "random":
        return np.random.default_rng(seed).choice(pool, size=budget, replace=False)
    s = scores(strategy, quantity)[pool]
    rank = np.lexsort((pool, np.where(np.isnan(s), np.inf, -s)))   # by score, then by index
    return pool[rank[:budget]]

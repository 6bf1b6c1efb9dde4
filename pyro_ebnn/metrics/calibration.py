"""Calibration and uncertainty from posterior predictive samples (the point of being Bayesian).

Input: ``probs`` S x N x K, one row of class probabilities per posterior predictive sample, as
:func:`pyro_ebnn.bnn.predictive_probs` returns them (``pyro.infer.Predictive``); labels y (N).
The mean predictive is p(y | x) ~= 1/S sum_s p_s(y | x).

  nll                 mean of -log p(y_i | x_i) under the mean predictive     (sklearn log_loss)
  brier               mean over images of sum_k (p_ik - 1[y_i = k])^2, in [0, 2]  (sklearn brier_score_loss)
  ece                 expected calibration error of the top label, 15 equal-width confidence bins:
                      sum_b n_b / N * |accuracy_b - mean confidence_b|
  predictive_entropy  mean over images of H[p(. | x)] (nats) - total uncertainty
  mutual_information  mean over images of H[mean_s p_s] - mean_s H[p_s] (nats) - the epistemic part,
                      the disagreement between posterior samples (BALD)
"""
from __future__ import annotations


import numpy as np
import torch
from scipy.stats import entropy as scipy_entropy
from sklearn import metrics as skm

from ..errors import EBNNError

N_BINS = 15


class UncertaintyError(EBNNError):
    """Probabilities or labels of the wrong shape."""


def _as_samples(probs) -> np.ndarray:
    p = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    p = p.astype(np.float64)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3:
        raise UncertaintyError(f"probabilities must be S x N x K (or N x K), got shape {p.shape}")
    return p


def _mean(probs) -> np.ndarray:
    """N x K mean predictive, rows renormalised (float32 sums drift from 1)."""
    p = _as_samples(probs).mean(0)
    return p / p.sum(1, keepdims=True)


def _labels(y, n: int) -> np.ndarray:
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y.shape != (n,):
        raise UncertaintyError(f"labels must be a vector of length {n}, got shape {y.shape}")
    return y.astype(np.int64)


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats, with 0 log 0 = 0 (scipy.stats.entropy)."""
    return scipy_entropy(np.asarray(p, dtype=np.float64), axis=axis)


def nll(y, probs) -> float:
    p = _mean(probs)
    return float(skm.log_loss(_labels(y, len(p)), p, labels=np.arange(p.shape[1])))


def brier(y, probs) -> float:
    p = _mean(probs)
    return float(skm.brier_score_loss(_labels(y, len(p)), p, labels=np.arange(p.shape[1]), scale_by_half=False))


def reliability(y, probs, n_bins: int = N_BINS) -> dict:
    """Top-label reliability table: equal-width bins over confidence (0, 1]; bin b holds the images
    with confidence in (b/n, (b+1)/n] (confidence 0 goes to bin 0). Per bin: count, mean confidence,
    accuracy (NaN for empty bins)."""
    p = _mean(probs)
    y = _labels(y, len(p))
    conf, pred = p.max(1), p.argmax(1)
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, conf, n_bins) / counts
        acc = np.bincount(b, correct, n_bins) / counts
    return {"edges": edges, "count": counts, "confidence": mean_conf, "accuracy": acc}


def ece(y, probs, n_bins: int = N_BINS) -> float:
    r = reliability(y, probs, n_bins)
    filled = r["count"] > 0
    w = r["count"][filled] / r["count"].sum()
    return float((w * np.abs(r["accuracy"][filled] - r["confidence"][filled])).sum())


def predictive_entropy_per_image(probs) -> np.ndarray:
    return entropy(_mean(probs))


def mutual_information_per_image(probs) -> np.ndarray:
    p = _as_samples(probs)
    mi = entropy(_mean(p)) - entropy(p).mean(0)
    return np.maximum(mi, 0.0)  # >= 0 by Jensen; clip rounding noise


def predictive_entropy(probs) -> float:
    return float(predictive_entropy_per_image(probs).mean())


def mutual_information(probs) -> float:
    return float(mutual_information_per_image(probs).mean())


def uncertainty_metrics(y, probs, prefix: str = "", n_bins: int = N_BINS) -> dict:
    """nll, brier, ece, predictive_entropy, mutual_information (keys prefixed by ``prefix``)."""
    out = {"nll": nll(y, probs), "brier": brier(y, probs), "ece": ece(y, probs, n_bins),
           "predictive_entropy": predictive_entropy(probs), "mutual_information": mutual_information(probs)}
    return {f"{prefix}{k}": v for k, v in out.items()}


def plugin_metrics(y, probs) -> dict:
    """nll, brier and ece of one probability vector per image, prefixed ``plugin_``: for the
    posterior-mean ("plug-in") network, beside the posterior predictive's. Where the predictive is
    less confident than the plug-in network, the averaging over q(w) is what softens it."""
    return {f"plugin_{k}": v for k, v in (("nll", nll(y, probs)), ("brier", brier(y, probs)), ("ece", ece(y, probs)))}

"""Posterior predictive through ``pyro.infer.Predictive``, in batches over data and samples."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from pyro.infer import Predictive

from .evidence import PREACTIVATION_SITE
from .model import LOGITS_SITE, FeedbackBNN


@torch.no_grad()
def predictive_probs(bnn: FeedbackBNN, images: torch.Tensor, num_samples: int = 20, batch_size: Optional[int] = None,
                     sample_batch: int = 10, device=None, progress=None) -> torch.Tensor:
    """S x N x K class probabilities, one row per posterior predictive sample (a deterministic
    :class:`~pyro_ebnn.point.PointModel` has no posterior: 1 x N x K).

    One pass draws ``sample_batch`` samples for ``batch_size`` images. Default batch size: 1000 on
    a GPU; 128 on the CPU, where 128 x 10 samples per pass stays in cache and runs 1.7 times as fast
    as 1000 x 10 (LeNet, 1 thread: experiments/benchmark_predictive.py)."""
    device = torch.device(device) if device is not None else next(bnn.net.parameters()).device
    if batch_size is None:
        batch_size = 1000 if device.type == "cuda" else 128
    if not isinstance(bnn, FeedbackBNN):
        probs = mean_probs(bnn, images, batch_size, device)
        if progress is not None:
            progress.update(len(images))
        return probs[None]
    bnn.net.train()  # LRT sampling on
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        parts, left = [], num_samples
        while left > 0:
            s = min(sample_batch, left)
            pred = Predictive(bnn.model, guide=bnn.guide, num_samples=s, parallel=True,
                              return_sites=[LOGITS_SITE])(x)
            parts.append(pred[LOGITS_SITE].reshape(s, len(x), -1).softmax(-1).cpu())
            left -= s
        out.append(torch.cat(parts))
        if progress is not None:
            progress.update(len(x))
    return torch.cat(out, dim=1)


@torch.no_grad()
def mean_probs(bnn, images: torch.Tensor, batch_size: int = 2000, device=None) -> torch.Tensor:
    """N x K probabilities of the network at the posterior mean (fast; used for validation), or of a
    deterministic network."""
    device = device or next(bnn.net.parameters()).device
    was = bnn.net.training
    bnn.net.eval()
    out = [bnn.net(images[i:i + batch_size].to(device)).softmax(-1).cpu() for i in range(0, len(images), batch_size)]
    bnn.net.train(was)
    return torch.cat(out)


@torch.no_grad()
def posterior_predictive(bnn, images: torch.Tensor, num_samples: int = 20,
                         sites: Sequence[str] = (LOGITS_SITE, PREACTIVATION_SITE),
                         device=None, sample_activations: bool = True) -> dict:
    """``pyro.infer.Predictive`` over the guide: {site: S x N x ...} on the CPU, for the prediction
    (``logits``) and the last-conv pre-activation (``last_conv.preactivation``) by default.

    ``sample_activations=False`` keeps every LRT layer other than the last-conv site at its mean
    (the network in eval mode): then the site is exactly N(mu_U, sigma_U^2) of the eval-mode
    moments and the logits are the mean head applied to it."""
    device = device or next(bnn.net.parameters()).device
    was = bnn.net.training
    bnn.net.train(sample_activations)
    try:
        pred = Predictive(bnn.model, guide=bnn.guide, num_samples=num_samples, parallel=True,
                          return_sites=list(sites))(images.to(device))
    finally:
        bnn.net.train(was)
    n = len(images)
    event = {LOGITS_SITE: (-1,), PREACTIVATION_SITE: tuple(bnn.net.evidence_shape)}
    return {k: (v.reshape((num_samples, n) + event[k]) if k in event else v).cpu() for k, v in pred.items()}

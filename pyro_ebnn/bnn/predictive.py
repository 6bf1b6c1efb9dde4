"""The posterior predictive: class probabilities drawn in batches of images with all posterior samples
of an image in one pass, the posterior-mean network for validation, and any model site through
``pyro.infer.Predictive``."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from pyro.infer import Predictive

from .evidence import PREACTIVATION_SITE
from .model import LOGITS_SITE, FeedbackBNN

__all__ = ["CPU_DRAWS_PER_PASS", "predictive_probs", "mean_probs", "posterior_predictive"]

#: LRT forwards (images x posterior samples) per pass of the predictive on the CPU.
CPU_DRAWS_PER_PASS = 640


@torch.no_grad()
def predictive_probs(bnn: FeedbackBNN, images: torch.Tensor, num_samples: int = 20, batch_size: Optional[int] = None,
                     device=None, progress=None) -> torch.Tensor:
    """S x N x K class probabilities, one row per posterior predictive sample (a deterministic
    :class:`~pyro_ebnn.point.PointModel` has no posterior: 1 x N x K).

    Each pass draws all S samples of ``batch_size`` images at once
    (:meth:`FeedbackBNN.predictive_logits`). Default batch size: 1000 images on a GPU; on the CPU
    ``CPU_DRAWS_PER_PASS // S`` images (64 for S = 10): LeNet, S = 10, 1 thread, 1,845 images/s,
    against 1,698-1,926 with 16 to 128 images per pass and 1,041 with 256
    (experiments/benchmark_predictive.py, docs/results/cost.md)."""
    device = torch.device(device) if device is not None else next(bnn.net.parameters()).device
    if not isinstance(bnn, FeedbackBNN):
        probs = mean_probs(bnn, images, device=device)
        if progress is not None:
            progress.update(len(images))
        return probs[None]
    if batch_size is None:
        batch_size = 1000 if device.type == "cuda" else max(1, CPU_DRAWS_PER_PASS // num_samples)
    was = bnn.net.training
    bnn.net.train()  # LRT sampling on
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            out.append(bnn.predictive_logits(x, num_samples).softmax(-1).cpu())
            if progress is not None:
                progress.update(len(x))
    finally:
        bnn.net.train(was)
    return torch.cat(out, dim=1)


@torch.no_grad()
def mean_probs(bnn, images: torch.Tensor, batch_size: Optional[int] = None, device=None) -> torch.Tensor:
    """N x K probabilities of the network at the posterior mean (fast; used for validation), or of a
    deterministic network. Default batch size: 1000 on a GPU, 512 on the CPU (LeNet, 1 thread:
    38,700 images/s, against 43,300 with 256 and 17,700 with 2000 images per batch, whose
    activations leave the cache; experiments/benchmark_predictive.py)."""
    device = device or next(bnn.net.parameters()).device
    if batch_size is None:
        batch_size = 1000 if torch.device(device).type == "cuda" else 512
    was = bnn.net.training
    bnn.net.eval()
    try:
        out = [bnn.net(images[i:i + batch_size].to(device)).softmax(-1).cpu()
               for i in range(0, len(images), batch_size)]
    finally:
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

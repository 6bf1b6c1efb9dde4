"""Observation models P(y | a). Any callable ``likelihood(logits, y)`` that issues Pyro sample
sites inside the data plate can replace these."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import pyro
import pyro.distributions as dist
from pyro import poutine

__all__ = ["CategoricalLikelihood"]


class CategoricalLikelihood:
    """y ~ Categorical(softmax(logits)); optional per-class weights (e.g. ISIC's class-weighted
    loss) scale each datum's log-likelihood by the weight of its class."""

    site = "label"

    def __init__(self, class_weights: Optional[Sequence[float]] = None):
        self.class_weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float)
        self._on_device = {}  # the weights copied to each device once (a copy from the host per step stalls a GPU)

    def __call__(self, logits: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        fn = dist.Categorical(logits=logits)
        if self.class_weights is None or y is None:
            return pyro.sample(self.site, fn, obs=y)
        if logits.device not in self._on_device:
            self._on_device[logits.device] = self.class_weights.to(logits.device)
        with poutine.scale(scale=self._on_device[logits.device][y]):
            return pyro.sample(self.site, fn, obs=y)

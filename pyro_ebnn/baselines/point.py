"""Point-estimate (deterministic) networks: the setting the loss-penalty baselines were published in.

``network: deterministic`` trains the same architecture with plain ``nn.Conv2d`` / ``nn.Linear``
layers by minimizing ``mean CE + weight * mean penalty`` (rrr, l1grad, cdep, eg, rrr_gradcam, hint), CE on
counterexamples (augment) or plain CE (none), with the same data, folds, seeds, optimizer, learning
rate schedule and model selection as the Bayesian runs. Feedback as *evidence* needs the Bayesian
model and is not available here.

* :func:`point_network` turns a :class:`~pyro_ebnn.bnn.BayesianCNN` into a trainable
  ``nn.Sequential(body, evidence_layer, head)`` whose weights start at the means of q(w), so both
  settings share architecture and initialisation, and the attribution tools (Grad-CAM on
  ``evidence_layer``) apply unchanged.
* :class:`PointModel` plays the role of :class:`~pyro_ebnn.bnn.FeedbackBNN` for the training
  loop (its :meth:`PointModel.loss` takes the place of the negative ELBO), the predictive and the
  saved model.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..bnn import BayesianCNN, posterior_network
from .penalties import PENALTY_MODES, default_weight, penalty_terms

__all__ = ["POINT_MODES", "point_network", "PointModel"]

POINT_MODES = ("none", "augment") + PENALTY_MODES


def point_network(net: BayesianCNN) -> nn.Sequential:
    """A trainable deterministic copy of ``net`` at the means of q(w) (``input_shape`` kept).

    >>> from pyro_ebnn import lenet
    >>> plain = point_network(lenet())
    >>> plain.training, all(p.requires_grad for p in plain.parameters()), plain.input_shape
    (True, True, (1, 28, 28))
    """
    plain = posterior_network(net, "mean")
    for p in plain.parameters():
        p.requires_grad_(True)
    return plain.train()


class PointModel:
    """A deterministic network and its training objective (no prior, no posterior)."""

    evidence = None   # feedback as evidence needs the Bayesian model; a plain network observes nothing

    def __init__(self, net: nn.Sequential, mode: str = "none", weight: Optional[float] = None, name: str = "point"):
        if mode not in POINT_MODES:
            raise ValueError(f"mode {mode!r} has no deterministic version; use one of {', '.join(POINT_MODES)} "
                             "(feedback as evidence needs network: bayesian)")
        self.net, self.mode, self.name = net, mode, name
        self.weight = default_weight(mode, "deterministic") if mode in PENALTY_MODES and weight is None else weight

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``mean CE(x, y) + weight * mean penalty(x, y, mask)``; the penalty only with a mask."""
        loss = F.cross_entropy(self.net(x), y)
        if self.mode in PENALTY_MODES and mask is not None:
            loss = loss + self.weight * penalty_terms(self.mode, self.net, x, y, mask).mean()
        return loss

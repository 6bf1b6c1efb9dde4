"""Point-estimate (deterministic) networks: the setting the loss-penalty baselines were published in.

``network: deterministic`` trains the same architecture with plain ``nn.Conv2d`` / ``nn.Linear``
layers by minimizing ``mean CE + weight * mean penalty`` (rrr, l1grad, cdep, eg), CE on
counterexamples (augment) or plain CE (none), with the same data, folds, seeds, optimizer, learning
rate schedule and model selection as the Bayesian runs. Feedback as *evidence* needs the Bayesian
model and is not available here.

* :func:`point_network` turns a :class:`~pyro_ebnn.nets.BayesianCNN` into a trainable
  ``nn.Sequential(body, evidence_layer, head)`` whose weights start at the means of q(w), so both
  settings share architecture and initialisation, and the attribution tools (Grad-CAM on
  ``evidence_layer``) apply unchanged.
* :class:`PointModel` plays the role of :class:`~pyro_ebnn.model.FeedbackBNN` for the training
  loop, the predictive and the saved model; :class:`PointStep` plays the role of ``SVI``.
"""
from __future__ import annotations

from typing import Optional

import pyro
import torch
import torch.nn.functional as F
from torch import nn

from .baselines import PENALTY_MODES, default_weight, penalty_terms
from .nets import BayesianCNN

POINT_MODES = ("none", "augment") + PENALTY_MODES


def point_network(net: BayesianCNN) -> nn.Sequential:
    """A trainable deterministic copy of ``net`` at the means of q(w) (``input_shape`` kept)."""
    from .explain import deterministic_network
    det = deterministic_network(net)
    for p in det.parameters():
        p.requires_grad_(True)
    det.train()
    det.input_shape = tuple(net.input_shape)
    return det


class PointModel:
    """A deterministic network and its training objective (no prior, no posterior)."""

    def __init__(self, net: nn.Sequential, mode: str = "none", weight: Optional[float] = None, name: str = "point"):
        if mode not in POINT_MODES:
            raise ValueError(f"mode {mode!r} has no deterministic version; use one of {', '.join(POINT_MODES)} "
                             "(feedback as evidence needs network: bayesian)")
        self.net, self.mode, self.name = net, mode, name
        self.weight = default_weight(mode) if mode in PENALTY_MODES and weight is None else weight

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``mean CE(x, y) + weight * mean penalty(x, y, mask)``; the penalty only with a mask."""
        loss = F.cross_entropy(self.net(x), y)
        if self.mode in PENALTY_MODES and mask is not None:
            loss = loss + self.weight * penalty_terms(self.mode, self.net, x, y, mask).mean()
        return loss


class PointStep:
    """The ``SVI.step`` of a point model: one gradient step of :meth:`PointModel.loss`. The
    parameters live in Pyro's param store (``pyro.module``), so that checkpoints and the optimizer
    wrapper are those of the Bayesian runs. Returns the batch's summed loss (the Trainer divides
    the epoch total by the number of images)."""

    def __init__(self, model: PointModel, optim):
        self.model, self.optim = model, optim

    def step(self, x, y, mask=None, data_size=None):
        net = pyro.module(self.model.name, self.model.net)
        net.train()
        net.zero_grad(set_to_none=True)
        loss = self.model.loss(x, y, mask)
        loss.backward()
        self.optim([p for p in net.parameters()])
        return loss.item() * len(x)


"""Grad-CAM penalties: the two methods of the XIL typology (Friedrich et al. 2023) that explain at the
last convolution instead of the input.

* **rrr_gradcam** (RRR-G) -- RRR's "right reasons" term on Grad-CAM: per image
  ``sum_cells (m_cell * g_cell)^2`` where ``g`` is the Grad-CAM map of the predicted class scaled to
  [0, 1] and ``m`` the share of masked pixels under each cell (:func:`rrr_gradcam_penalty`).
* **hint** -- HINT (Selvaraju et al. 2019) in the typology's form: the Grad-CAM map of the true
  class, scaled to [0, 1], pulled towards the human importance map by a squared error, per image
  ``sum_cells (g_cell - (1 - m_cell))^2``; the importance map is the complement of the irrelevant
  mask (the masks here say what must *not* matter). Images without a mask carry no importance map
  and add nothing (:func:`hint_penalty`).

The Grad-CAM map (Selvaraju et al. 2017) of a score ``s`` on the last convolution's output ``A``
(C x u x v, the evidence layer's pre-activation, the layer ``explain``'s Grad-CAM uses):
``g = sum_k alpha_k A_k`` with ``alpha_k`` the mean of ``ds/dA_k`` over the cells, no ReLU (as the
typology); scaled per image by its minimum and maximum. The gradient is kept in the graph
(double backward), so the penalty also moves the weights through ``alpha``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..bnn import BayesianCNN, plain_network, weights_at
from .masks import pixel_mask

__all__ = ["split_at_evidence", "gradcam_map", "cell_mask", "rrr_gradcam_penalty", "hint_penalty"]

_EPS = 1e-12


def split_at_evidence(net: nn.Module, at: str = "mean") -> tuple[Callable, Callable]:
    """``(features, classify)``: x -> the last convolution's output, and that output -> logits, for
    one weight setting of a :class:`~pyro_ebnn.bnn.BayesianCNN` (its posterior mean, or one draw
    from q(w) shared by both halves) or a plain ``nn.Sequential(body, evidence_layer, head)``.

    >>> from pyro_ebnn.bnn import lenet
    >>> features, classify = split_at_evidence(lenet())
    >>> a = features(torch.zeros(2, 1, 28, 28))
    >>> tuple(a.shape), tuple(classify(a).shape)
    ((2, 16, 11, 11), (2, 10))
    """
    if isinstance(net, BayesianCNN):
        skeleton = plain_network(net)
        skeleton.train(net.training)
        weights = weights_at(net, at)

        def part(name):
            return {k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")}
        body, evidence, head = part("body"), part("evidence_layer"), part("head")
        return (lambda x: functional_call(skeleton.evidence_layer, evidence,
                                          (functional_call(skeleton.body, body, (x,)),)),
                lambda a: functional_call(skeleton.head, head, (a,)))
    if at != "mean":
        raise ValueError("a deterministic network has one weight setting; use at='mean'")
    return (lambda x: net.evidence_layer(net.body(x))), net.head


def gradcam_map(features: Callable, classify: Callable, x: torch.Tensor,
                target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """N x u x v Grad-CAM maps of the logit of class ``target[i]`` (None: the predicted class, from
    the same forward pass) on the last convolution, scaled to [0, 1] per image, differentiable
    (module docstring)."""
    with torch.enable_grad():
        a = features(x)
        if not a.requires_grad:  # a frozen network: the map, without a gradient to the weights
            a = a.detach().requires_grad_(True)
        logits = classify(a)
        target = logits.detach().argmax(-1) if target is None else target.long().to(a.device)
        score = logits.gather(-1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(score, a, create_graph=True)
    g = (grad.mean((2, 3), keepdim=True) * a).sum(1)
    low = g.flatten(1).min(1).values[:, None, None]
    high = g.flatten(1).max(1).values[:, None, None]
    return (g - low) / (high - low + _EPS)


def cell_mask(mask: torch.Tensor, x: torch.Tensor, cells: tuple) -> torch.Tensor:
    """N x u x v: the share of masked pixels under each cell of a u x v map (area average)."""
    return F.adaptive_avg_pool2d(pixel_mask(mask, x)[:, :1], cells)[:, 0]


def rrr_gradcam_penalty(features: Callable, classify: Callable, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RRR-G per image (B,): ``sum_cells (m * g)^2`` with ``g`` the scaled Grad-CAM map of the
    predicted class. Exactly zero for an image with an all-zero mask."""
    g = gradcam_map(features, classify, x)
    return (cell_mask(mask, x, g.shape[1:]) * g).square().flatten(1).sum(1)


def hint_penalty(features: Callable, classify: Callable, x: torch.Tensor, y: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
    """HINT per image (B,): ``sum_cells (g - (1 - m))^2`` with ``g`` the scaled Grad-CAM map of the
    true class, on images with a mask; zero on the others."""
    g = gradcam_map(features, classify, x, y)
    m = cell_mask(mask, x, g.shape[1:])
    has_mask = (pixel_mask(mask, x).flatten(1).amax(1) > 0).to(g.dtype)
    return has_mask * (g - (1 - m)).square().flatten(1).sum(1)

"""Right for Better Reasons (RBR; Shao et al. 2021): constrain the *influence* of the masked pixels
instead of their input gradient, in the form the XIL typology (Friedrich et al. 2023) benchmarks.

The influence of perturbing a training image x on the parameters is, with the inverse Hessian of
an influence function replaced by the identity (the typology's simplification),
``d/dx grad_theta loss(x, y)``; summed over the parameters it is one input map per image,

    i(x) = d/dx  sum_j  d loss(x, y) / d theta_j                                    (influence)

and the penalty weighs it by RRR's input gradient ``r(x) = d/dx sum_k log softmax_k(x)``:

    rbr(x) = sum_d (E_d * i_d(x) * r_d(x))^2                                         (per image)

``i`` is a gradient of a gradient, and training differentiates the penalty once more: a step costs
about three backward passes through the network on top of RRR's two, and memory for the graph of
each. The cost per step is in docs/method.md; :data:`MAX_PARAMETER_PIXELS` bounds the networks and
image sizes it accepts.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..bnn import BayesianCNN, plain_network, weights_at
from ..errors import ConfigError
from .masks import pixel_mask

__all__ = ["MAX_PARAMETER_PIXELS", "influence_map", "rbr_penalty", "rbr_on", "check_rbr_cost"]

#: the largest (trainable parameters x input values) RBR accepts. The third-order graph grows with
#: both: LeNet on 28-px digits (6.0e4 x 784 = 4.7e7) takes about 10 times a step without penalty
#: (docs/method.md), LeNet on 64-px RGB images (3.9e5 x 12,288 = 4.8e9) is accepted, ResNet-18 at
#: 64 px (1.1e7 x 12,288 = 1.4e11) and AlexNet at 224 px (5.7e7 x 150,528 = 8.6e12) are refused.
MAX_PARAMETER_PIXELS = 1e10


def _influence(xg: torch.Tensor, logits: torch.Tensor, parameters: Sequence[torch.Tensor],
               y: torch.Tensor) -> torch.Tensor:
    """``d/dx sum_j d loss / d theta_j`` from one forward pass ``logits = f(xg)``, graph kept."""
    loss = F.cross_entropy(logits, y.long().to(xg.device), reduction="sum")
    grads = torch.autograd.grad(loss, list(parameters), create_graph=True, allow_unused=True)
    total = sum(g.sum() for g in grads if g is not None)
    (influence,) = torch.autograd.grad(total, xg, create_graph=True)
    return influence


def influence_map(logits_fn: Callable[[torch.Tensor], torch.Tensor], parameters: Sequence[torch.Tensor],
                  x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``d/dx sum_j d loss / d theta_j`` per image (the shape of x), graph kept. Images are
    independent (no batch norm in training mode), so the derivative of the batch's summed loss
    with respect to image n is image n's own."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        return _influence(xg, logits_fn(xg), parameters, y)


def rbr_penalty(logits_fn: Callable[[torch.Tensor], torch.Tensor], parameters: Sequence[torch.Tensor],
                x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image ``sum_d (E_d * i_d * r_d)^2`` (module docstring), both maps from one forward pass;
    shape (B,), exactly zero for an image with an all-zero mask.

    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
    >>> mask = torch.zeros(2, 1, 2, 2); mask[0, 0, 0] = 1
    >>> p = rbr_penalty(net, list(net.parameters()), x, y, mask)
    >>> tuple(p.shape), float(p[1])
    ((2,), 0.0)
    """
    m = pixel_mask(mask, x)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logits = logits_fn(xg)
        influence = _influence(xg, logits, parameters, y)
        (log_prob_gradient,) = torch.autograd.grad(F.log_softmax(logits, dim=-1).sum(), xg, create_graph=True)
    return (m * influence * log_prob_gradient).square().flatten(1).sum(1)


def rbr_on(net: nn.Module, at: str = "mean") -> tuple[Callable, list]:
    """``(logits_fn, parameters)`` of one weight setting: a plain network's trainable parameters, or
    a :class:`~pyro_ebnn.bnn.BayesianCNN`'s weights at its posterior mean (the means of q(w)) or at
    one draw from q(w)."""
    if not isinstance(net, BayesianCNN):
        if at != "mean":
            raise ValueError("a deterministic network has one weight setting; use at='mean'")
        return net, [p for p in net.parameters() if p.requires_grad]
    skeleton = plain_network(net)
    skeleton.train(net.training)
    state = weights_at(net, at)
    return (lambda x: functional_call(skeleton, state, (x,), strict=True)), [t for t in state.values() if t.requires_grad]


def check_rbr_cost(parameters: int, pixels: int) -> None:
    """Refuse, in one line, a network and image size whose influence maps would not fit a step."""
    if parameters * pixels > MAX_PARAMETER_PIXELS:
        raise ConfigError(f"mode rbr differentiates three times through the network: {parameters:,} trainable weights "
                         f"x {pixels:,} input pixels is beyond what a training step can hold (at most "
                         f"{MAX_PARAMETER_PIXELS:.0e}); use rrr (its input-gradient cousin) or a smaller network / image_size")

"""Contextual decomposition (Singh et al. 2018 for CNNs) and the CDEP penalty (Rieger et al. 2020,
[004]): the logits are split into ``beta`` (the part that comes from the masked pixels) and
``gamma`` (the rest), layer by layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..bnn import BayesianCNN, Standardize, layer_sequence, plain_network, weights_at
from .masks import pixel_mask

__all__ = ["cd_decompose", "cdep_penalty"]


def _network_weights(net: nn.Module, at: str):
    """(layers, parameters) of one weight setting: the plain skeleton of a BayesianCNN with
    :func:`~pyro_ebnn.bnn.weights_at`, or a plain network with its own parameters."""
    if isinstance(net, BayesianCNN):
        return layer_sequence(plain_network(net)), weights_at(net, at)
    if at != "mean":
        raise ValueError("a deterministic network has one weight setting; use at='mean'")
    return layer_sequence(net), {**dict(net.named_buffers()), **dict(net.named_parameters())}


def _affine(module, z, weight, bias):
    if isinstance(module, nn.Conv2d):
        return F.conv2d(z, weight, bias, module.stride, module.padding, module.dilation, module.groups)
    return F.linear(z, weight, bias)


def _cd_affine(module, beta, gamma, weight, bias):
    """Conv / linear: ``W beta`` and ``W gamma`` without the bias, which is split between them in
    proportion to their absolute values, |W beta| : |W gamma| (CD). Where both are zero the bias
    goes to gamma (the unmasked part), so that an empty mask gives beta = 0 exactly."""
    both = _affine(module, torch.cat([beta, gamma]), weight, None)
    wb, wg = both[: len(beta)], both[len(beta):]
    if bias is None:
        return wb, wg
    return _cd_split_bias(wb, wg, bias.view((1, -1) + (1,) * (wb.dim() - 2)))


def _cd_split_bias(wb, wg, b):
    ab, ag = wb.abs(), wg.abs()
    total = ab + ag
    share = ab / torch.where(total > 0, total, torch.ones_like(total))  # 0 where both are 0
    return wb + share * b, wg + (1 - share) * b


def _cd_standardize(mean, std, beta, gamma):
    """The input standardization (x - mean) / std: an affine layer, its shift -mean / std split
    like a bias."""
    scale, shift = (1 / std).view(-1, 1, 1), (-mean / std).view(-1, 1, 1)
    return _cd_split_bias(beta * scale, gamma * scale, shift)


def _cd_relu(beta, gamma):
    rb = F.relu(beta)
    return rb, F.relu(beta + gamma) - rb


def _cd_maxpool(module, beta, gamma):
    """Max pool: the winning positions are those of the full activation beta + gamma; both parts
    are read at them."""
    out, idx = F.max_pool2d(beta + gamma, module.kernel_size, module.stride, module.padding,
                            module.dilation, ceil_mode=module.ceil_mode, return_indices=True)
    flat = idx.flatten(2)
    pick = lambda t: t.flatten(2).gather(2, flat).view_as(out)
    return pick(beta), pick(gamma)


def cd_decompose(net: nn.Module, x: torch.Tensor, mask: torch.Tensor, at: str = "mean",
                 return_layers: bool = False):
    """Contextual decomposition of the logits of ``net`` into ``(beta, gamma)``.

    ``beta``: the contribution of the masked (irrelevant) pixels, starting from ``x * E``;
    ``gamma``: everything else, starting from ``x * (1 - E)``. At every layer ``beta + gamma`` is
    the activation of the full network (of a :class:`BayesianCNN` at its posterior mean, or at one
    draw from q with ``at="sample"``). Known layers: Conv2d / Linear (plain or Bayesian; bias
    split by |.|), Standardize (its shift split like a bias), ReLU, MaxPool2d (indices of
    beta + gamma), Flatten, Dropout / Identity (as in eval), AvgPool2d / AdaptiveAvgPool2d (linear,
    no bias).

    ``return_layers=True`` also returns ``[(name, beta, gamma), ...]`` after every layer.
    """
    layers, params = _network_weights(net, at)
    m = pixel_mask(mask, x)
    beta, gamma = x * m, x * (1 - m)
    trace = []
    for name, module in layers:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            beta, gamma = _cd_affine(module, beta, gamma, params[f"{name}.weight"], params.get(f"{name}.bias"))
        elif isinstance(module, Standardize):
            beta, gamma = _cd_standardize(params[f"{name}.mean"], params[f"{name}.std"], beta, gamma)
        elif isinstance(module, nn.ReLU):
            beta, gamma = _cd_relu(beta, gamma)
        elif isinstance(module, nn.MaxPool2d):
            beta, gamma = _cd_maxpool(module, beta, gamma)
        elif isinstance(module, (nn.Flatten, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            beta, gamma = module(beta), module(gamma)
        elif isinstance(module, (nn.Dropout, nn.Identity)):
            pass
        else:
            raise TypeError(f"contextual decomposition does not know the layer {name} ({type(module).__name__})")
        if return_layers:
            trace.append((name, beta, gamma))
    return (beta, gamma, trace) if return_layers else (beta, gamma)


def cdep_penalty(net: nn.Module, x: torch.Tensor, mask: torch.Tensor, at: str = "mean") -> torch.Tensor:
    """CDEP ([004] Eq. 5; docs/method.md): per image, the mean over classes c of
    ``softmax([beta_c, gamma_c])[0]``, the softmax weight of the masked part. Returns shape (B,).

    An image without feedback (all-zero mask) gets exactly 0 (beta = 0 there, but
    ``softmax([0, gamma_c])[0]`` is not 0 and would push all logits up; [004] gives every image
    the same non-empty mask, so it never meets this case)."""
    m = pixel_mask(mask, x)
    beta, gamma = cd_decompose(net, x, m, at)
    weight_of_masked = torch.stack([beta, gamma], dim=-1).softmax(-1)[..., 0]  # = sigmoid(beta - gamma)
    has_mask = m.flatten(1).amax(1) > 0
    return torch.where(has_mask, weight_of_masked.mean(-1), torch.zeros_like(weight_of_masked[:, 0]))


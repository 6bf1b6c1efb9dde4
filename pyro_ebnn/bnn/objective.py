"""The hand-derived objective of [000], written with plain PyTorch (no Pyro).

    L = KL(q(w) || P(w)) - N/B sum_i [ log P(y_i | a_i)  +  lambda sum_{F_i} log N(0; mu_U, sigma_U^2) ]
        \\____ Eq. (3) ___/                                 \\________ Eq. (4), correct explanation ____/

It is what the Pyro model and guide must compute (tests check the equality) and the baseline of
the speed benchmark.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .evidence import downsize_mask
from .layers import bayesian_layers


def gaussian_kl(loc_q, scale_q, scale_p: float, loc_p: float = 0.0) -> torch.Tensor:
    """Closed-form KL(N(loc_q, scale_q^2) || N(loc_p, scale_p^2)), summed."""
    return (torch.log(scale_p / scale_q) + (scale_q ** 2 + (loc_q - loc_p) ** 2) / (2 * scale_p ** 2) - 0.5).sum()


def network_kl(net, prior_scale: float = 0.1) -> torch.Tensor:
    total = 0.0
    for layer in bayesian_layers(net).values():
        total = total + gaussian_kl(layer.weight_loc, layer.weight_scale, prior_scale)
        total = total + gaussian_kl(layer.bias_loc, layer.bias_scale, prior_scale)
    return total


def negative_elbo(net, x, y, data_size: int, mask: Optional[torch.Tensor] = None, lam: float = 0.0,
                  prior_scale: float = 0.1, noise: Optional[torch.Tensor] = None, pool: str = "max"):
    """[000] Eq. (3) with the Eq. (4) likelihood, one LRT sample. ``noise`` fixes the last-conv eps."""
    mean, std = net.evidence_moments(x)
    eps = torch.randn_like(std) if noise is None else noise
    a = mean + std * eps
    evidence = x.new_zeros(())
    if mask is not None:
        irrelevant = downsize_mask(mask, tuple(mean.shape[-2:]), pool).expand_as(mean)
        a = a.masked_fill(irrelevant, 0.0)
        log_n0 = -0.5 * (mean / std) ** 2 - std.log() - 0.5 * torch.log(torch.tensor(2 * torch.pi))
        evidence = (log_n0 * irrelevant).sum()
    log_lik = -F.cross_entropy(net.classify(a), y, reduction="sum")
    scale = data_size / len(x)
    return network_kl(net, prior_scale) - scale * (log_lik + lam * evidence)

"""The hand-derived objective of [000], written with plain PyTorch (no Pyro).

    L = KL(q(w) || P(w)) - N/B sum_i [ log P(y_i | a_i)  +  lambda sum_{F_i} log N(0; mu_U, sigma_U^2) ]
        \\____ Eq. (3) ___/                                 \\________ Eq. (4), correct explanation ____/

It is what the Pyro model and guide must compute (tests check the equality) and the baseline of
the speed benchmark. It therefore runs its own straightforward LRT forward, the one of [000]'s
reference code, and shares no arithmetic with :mod:`.layers`: per layer, sigma = softplus(rho)
wherever it is needed, the mean and the variance each by its own ``F.conv2d`` / ``F.linear``, and
one ``torch.randn`` per activation. Making the package's layers faster leaves it as it is.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

import torch
import torch.nn.functional as F

from .evidence import downsize_mask
from .layers import VARIANCE_FLOOR, BayesianConv2d, BayesianLayer, bayesian_layers
from .nets import layer_sequence

__all__ = ["gaussian_kl", "network_kl", "lrt_layer", "negative_elbo"]


def gaussian_kl(loc_q, scale_q, scale_p: float, loc_p: float = 0.0) -> torch.Tensor:
    """Closed-form KL(N(loc_q, scale_q^2) || N(loc_p, scale_p^2)), summed.

    >>> round(float(gaussian_kl(torch.zeros(3), torch.full((3,), 0.1), 0.1)), 6)   # q = p
    0.0
    >>> round(float(gaussian_kl(torch.ones(1), torch.full((1,), 0.1), 0.1)), 6)    # (1 / 0.1)^2 / 2
    50.0
    """
    return (torch.log(scale_p / scale_q) + (scale_q ** 2 + (loc_q - loc_p) ** 2) / (2 * scale_p ** 2) - 0.5).sum()


def network_kl(net, prior_scale: float = 0.1) -> torch.Tensor:
    """KL(q(w) || N(0, prior_scale^2)) summed over every weight and bias of ``net``."""
    total = 0.0
    for layer in bayesian_layers(net).values():
        total = total + gaussian_kl(layer.weight_loc, F.softplus(layer.weight_rho), prior_scale)
        total = total + gaussian_kl(layer.bias_loc, F.softplus(layer.bias_rho), prior_scale)
    return total


def lrt_layer(layer: BayesianLayer, z: torch.Tensor, eps: Optional[torch.Tensor] = None):
    """One Bayesian layer by the LRT, written out: ``(sample, mu, sigma)`` of its pre-activation.

        mu = z * M + m_b,   sigma^2 = z^2 * softplus(rho)^2 + softplus(rho_b)^2,   U = mu + sigma * eps

    ``eps`` fixes the noise (default: ``torch.randn``); in eval mode the sample is the mean.
    """
    if isinstance(layer, BayesianConv2d):
        def affine(inp, weight, bias):
            return F.conv2d(inp, weight, bias, layer.stride, layer.padding)
    else:
        affine = F.linear
    mean = affine(z, layer.weight_loc, layer.bias_loc)
    var = affine(z.square(), F.softplus(layer.weight_rho).square(), F.softplus(layer.bias_rho).square())
    std = (var + VARIANCE_FLOOR).sqrt()
    if not layer.training:
        return mean, mean, std
    if eps is None:
        eps = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device)
    return mean + std * eps, mean, std


def negative_elbo(net, x, y, data_size: int, mask: Optional[torch.Tensor] = None, lam: float = 0.0,
                  prior_scale: float = 0.1, noise: Optional[Mapping[str, torch.Tensor]] = None, pool: str = "max",
                  channels: str = "all", kl_scale: float = 1.0, holes: str = "own"):
    """[000] Eq. (3) with the Eq. (4) likelihood, one LRT sample; ``kl_scale`` < 1 tempers the KL.
    ``noise`` fixes the eps of the layers it names (``bayesian_layers`` names: conv1, conv2, fc1,
    ...); the others draw theirs.
    ``channels="attending"``: only the channels whose positive activation falls on the marked cells
    more than evenly are observed ([000] Sec. 6).
    ``holes="shared"``: an image without a mark has the head see zeros on the cells of the batch's
    marked images in turn (the first unmarked image those of the first marked one, ...);
    ``holes="none"``: the head sees the sample everywhere."""
    noise = dict(noise or {})
    names = {id(layer): name for name, layer in bayesian_layers(net).items()}
    z, evidence = x, x.new_zeros(())
    for _, module in layer_sequence(net):
        if not isinstance(module, BayesianLayer):
            z = module(z)
            continue
        z, mean, std = lrt_layer(module, z, noise.get(names[id(module)]))
        if module is net.evidence_layer and mask is not None:
            irrelevant = downsize_mask(mask, tuple(mean.shape[-2:]), pool).expand_as(mean)
            if channels == "attending":
                positive = mean.detach().clamp(min=0)
                share = (positive * irrelevant).sum((2, 3)) / positive.sum((2, 3)).clamp(min=1e-30)
                area = irrelevant[:, :1].float().mean((2, 3))
                irrelevant = irrelevant & (share > area)[..., None, None]
            zeros = irrelevant
            if holes == "shared":
                marked = [i for i in range(len(z)) if irrelevant[i].any()]
                unmarked = [i for i in range(len(z)) if not irrelevant[i].any()]
                donor = list(range(len(z)))
                for k, i in enumerate(unmarked):
                    donor[i] = marked[k % len(marked)] if marked else i
                zeros = irrelevant[donor]
            if holes != "none":
                z = z.masked_fill(zeros, 0.0)
            log_n0 = -0.5 * (mean / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)
            evidence = (log_n0 * irrelevant).sum()
    log_lik = -F.cross_entropy(z, y, reduction="sum")
    scale = data_size / len(x)
    return kl_scale * network_kl(net, prior_scale) - scale * (log_lik + lam * evidence)

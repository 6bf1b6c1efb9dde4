"""Priors over the network weights P(w). Any callable ``prior(site_name, shape) -> Distribution``
(with the weight dimensions as event dimensions) can replace these."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import pyro.distributions as dist

__all__ = ["NormalPrior", "LaplacePrior", "PRIORS"]


@dataclass(frozen=True)
class NormalPrior:
    """Factorized N(loc, scale^2) on every weight; [000]/[001] use N(0, 0.1^2)."""

    scale: float = 0.1
    loc: float = 0.0

    def __post_init__(self):
        if not self.scale > 0:
            raise ValueError(f"prior scale must be > 0, got {self.scale}")

    def __call__(self, site_name: str, shape: torch.Size, device=None) -> dist.Distribution:
        """``Normal(loc, scale)`` broadcast to ``shape`` (scalar parameters: no full-size tensors).

        >>> NormalPrior(0.1)("fc1.weight", torch.Size([3, 4]))
        Independent(Normal(loc: torch.Size([3, 4]), scale: torch.Size([3, 4])), 2)
        """
        return _scalar(dist.Normal, self.loc, self.scale, shape, device)


@dataclass(frozen=True)
class LaplacePrior:
    """Factorized Laplace(loc, scale) on every weight (a sparsity-inducing alternative).

    The KL to a Gaussian posterior has no closed form in torch, so train it with Trace_ELBO.
    """

    scale: float = 0.1
    loc: float = 0.0

    def __call__(self, site_name: str, shape: torch.Size, device=None) -> dist.Distribution:
        return _scalar(dist.Laplace, self.loc, self.scale, shape, device)


def _scalar(family, loc: float, scale: float, shape: torch.Size, device) -> dist.Distribution:
    """``family(loc, scale)`` with scalar parameters, expanded to ``shape`` as one event."""
    loc_t, scale_t = torch.tensor(float(loc), device=device), torch.tensor(float(scale), device=device)
    return family(loc_t, scale_t).expand(shape).to_event(len(shape))


PRIORS = {"normal": NormalPrior, "laplace": LaplacePrior}

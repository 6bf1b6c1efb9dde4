"""Priors over the network weights P(w). Any callable ``prior(site_name, shape, device) ->
Distribution`` (with the weight dimensions as event dimensions) can replace these."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pyro.distributions as dist
import torch

__all__ = ["NormalPrior", "LaplacePrior", "PRIORS"]


@dataclass(frozen=True)
class _FactorizedPrior:
    """The same distribution ``family(loc, scale)`` on every weight, independently."""

    scale: float = 0.1
    loc: float = 0.0
    family: ClassVar[type] = None

    def __post_init__(self):
        if not self.scale > 0:
            raise ValueError(f"prior scale must be > 0, got {self.scale}")

    def __call__(self, site_name: str, shape: torch.Size, device=None) -> dist.Distribution:
        """``family(loc, scale)`` broadcast to ``shape`` as one event, with scalar parameters (no
        full-size tensors)."""
        loc, scale = torch.tensor(float(self.loc), device=device), torch.tensor(float(self.scale), device=device)
        return self.family(loc, scale).expand(shape).to_event(len(shape))


class NormalPrior(_FactorizedPrior):
    """Factorized N(loc, scale^2) on every weight; [000]/[001] use N(0, 0.1^2).

    >>> NormalPrior(0.1)("conv1.weight", torch.Size([6, 1, 3, 3])).event_shape
    torch.Size([6, 1, 3, 3])
    """

    family = dist.Normal


class LaplacePrior(_FactorizedPrior):
    """Factorized Laplace(loc, scale) on every weight (a sparsity-inducing alternative). torch has
    the KL of a Gaussian posterior to it in closed form, so both ELBOs train it.

    >>> LaplacePrior(0.1)("fc1.weight", torch.Size([3, 2])).event_shape
    torch.Size([3, 2])
    """

    family = dist.Laplace


PRIORS = {"normal": NormalPrior, "laplace": LaplacePrior}

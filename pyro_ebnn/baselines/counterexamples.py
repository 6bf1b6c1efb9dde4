"""Counterexamples ([000] Sec. 5.2; Teso & Kersting 2019): the masked pixels of an image are
replaced by U(0, 1) noise before it reaches the network (the ``augment`` mode)."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .masks import pixel_mask

__all__ = ["replace_with_noise"]


def replace_with_noise(x: torch.Tensor, mask: Optional[torch.Tensor], generator: Optional[torch.Generator] = None,
                       normalize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """Counterexamples ([000] Sec. 5.2): masked pixels (mask N x 1 x H x W, broadcast over the
    channels) replaced by U(0, 1) noise; the other pixels are kept. ``x`` is in [0, 1] and not
    standardized; ``normalize`` (e.g. a standardization) is applied to the result afterwards.
    Returns a new tensor (``x`` is not modified)."""
    out = x
    if mask is not None:
        m = pixel_mask(mask, x).bool().expand_as(x)
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype,
                           device=x.device if generator is None else generator.device)
        out = torch.where(m, noise.to(x.device), x)
    return normalize(out) if normalize is not None else out


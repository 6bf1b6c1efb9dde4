"""The feedback mask as the baselines use it: in pixel space, broadcast over the channels."""
from __future__ import annotations

import torch

__all__ = ["pixel_mask"]


def pixel_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W (or N x C x H x W) mask as a float tensor that broadcasts over x's channels."""
    if mask.dim() != x.dim() or mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:] \
            or mask.shape[1] not in (1, x.shape[1]):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}; "
                         "masks must be N x 1 x H x W")
    return mask.to(dtype=x.dtype, device=x.device)

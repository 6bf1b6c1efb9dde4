"""How much of an attribution lies on the region marked irrelevant ([001] Eq. 17).

For the images that carry a non-empty mask E,
    overlap = mean_i ||E_i * T_i||_1 / ||T_i||_1,   T_i = |attribution_i| summed over channels.
It lies in [0, 1]; lower means less attention on the irrelevant region.

>>> a = torch.zeros(1, 1, 4, 4); a[0, 0, 0, 0] = 3.0; a[0, 0, 3, 3] = 1.0
>>> e = torch.zeros(1, 1, 4, 4, dtype=torch.bool); e[0, 0, 0, 0] = True
>>> overlap(a, e)
0.75
"""
from __future__ import annotations

from typing import Optional

import torch

from .attributions import METHODS, ExplainError, explain, parse_methods

__all__ = ["attribution_magnitude", "overlap_per_image", "overlap", "masked_indices", "overlap_metrics"]


def attribution_magnitude(attributions: torch.Tensor) -> torch.Tensor:
    """T = |attribution| summed over channels: N x C x H x W -> N x H x W."""
    if attributions.dim() != 4:
        raise ExplainError(f"attributions must be N x C x H x W, got shape {tuple(attributions.shape)}")
    return attributions.abs().sum(1)


def overlap_per_image(attributions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """||E_i * T_i||_1 / ||T_i||_1 per image (NaN where the attribution is identically zero)."""
    t = attribution_magnitude(attributions).double()
    if masks.dim() == 4:
        if masks.shape[1] != 1:
            raise ExplainError(f"masks must be N x 1 x H x W, got shape {tuple(masks.shape)}")
        masks = masks[:, 0]
    if masks.shape != t.shape:
        raise ExplainError(f"masks of shape {tuple(masks.shape)} do not match attributions of spatial shape "
                           f"{tuple(t.shape)}")
    e = masks.to(t.dtype)
    num, den = (e * t).flatten(1).sum(1), t.flatten(1).sum(1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(t.dtype).tiny), torch.full_like(den, float("nan")))


def overlap(attributions: torch.Tensor, masks: torch.Tensor) -> float:
    """[001] Eq. 17: mean over the images with a non-empty mask (images whose attribution is all zero
    have no defined ratio and are left out; NaN if no image qualifies)."""
    per = overlap_per_image(attributions, masks)
    has = masks.flatten(1).any(1) & ~torch.isnan(per)
    return float(per[has].mean()) if has.any() else float("nan")


def masked_indices(masks: torch.Tensor, max_images: Optional[int] = None) -> torch.Tensor:
    """Indices (in order) of the images that carry a non-empty mask, the first ``max_images`` of them."""
    idx = masks.flatten(1).any(1).nonzero().flatten()
    if max_images is not None:
        if max_images < 1:
            raise ExplainError(f"max_images must be >= 1, got {max_images}")
        idx = idx[:max_images]
    return idx


def overlap_metrics(net, data, methods=METHODS, samples: int = 0, max_images: Optional[int] = None,
                    device=None, progress: bool = True, keep: Optional[dict] = None, **kw) -> dict:
    """``overlap_<method>`` for every method on the masked images of ``data`` (an ImageSet), plus
    ``n_overlap_images`` and ``overlap_samples``. ``keep`` (a dict), if given, receives the indices
    and the attributions for figures."""
    methods = parse_methods(methods)
    idx = masked_indices(data.masks, max_images)
    out = {"n_overlap_images": int(len(idx)), "overlap_samples": int(samples)}
    if len(idx) == 0:
        out.update({f"overlap_{m}": None for m in methods})
        return out
    attrs = explain(net, data.images[idx], data.labels[idx], methods, samples=samples, device=device,
                    progress=progress, **kw)
    masks = data.masks[idx]
    for m in methods:
        out[f"overlap_{m}"] = overlap(attrs[m], masks)
    if keep is not None:
        keep.update({"indices": idx, "attributions": attrs})
    return out

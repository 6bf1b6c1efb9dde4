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

from ..data import batches
from ..progress import progress_bar
from .attributions import METHODS, ExplainError, explain, parse_methods

__all__ = ["SAMPLE_IMAGES", "SAMPLE_SEED", "attribution_magnitude", "overlap_per_image", "overlap", "masked_indices",
           "image_selection", "figure_indices", "overlap_metrics", "mean_and_se"]

#: the default sample of ``evaluate``: this many masked test images, drawn at random with this seed
#: (a fixed seed, so that every run on the same test set is measured on the same images)
SAMPLE_IMAGES = 500
SAMPLE_SEED = 0


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


def masked_indices(masks: torch.Tensor, max_images: Optional[int] = None, sample: Optional[int] = None,
                   seed: int = SAMPLE_SEED) -> torch.Tensor:
    """Indices (in order) of the images that carry a non-empty mask: all of them, the first
    ``max_images`` of them, or ``sample`` of them drawn at random without replacement (seeded by
    ``seed``; all of them where fewer carry a mask). The sample depends only on which images carry
    a mask and on ``seed``, so every run on the same test set draws the same images.
    ``masks``: N x 1 x H x W masks, or the N booleans "has a mask" (``LabelledImages.has_mask``).

    >>> has = torch.tensor([1, 0, 1, 1, 1, 0, 1]).bool()
    >>> masked_indices(has).tolist(), masked_indices(has, 2).tolist(), len(masked_indices(has, sample=3))
    ([0, 2, 3, 4, 6], [0, 2], 3)
    """
    has = masks if masks.dim() == 1 else masks.flatten(1).any(1)
    idx = has.nonzero().flatten()
    if max_images is not None and sample is not None:
        raise ExplainError("give max_images (the first N masked images) or sample (N at random), not both")
    if max_images is not None:
        if max_images < 1:
            raise ExplainError(f"max_images must be >= 1, got {max_images}")
        idx = idx[:max_images]
    if sample is not None:
        if sample < 1:
            raise ExplainError(f"sample must be >= 1, got {sample}")
        if sample < len(idx):
            g = torch.Generator().manual_seed(int(seed))
            idx = idx[torch.randperm(len(idx), generator=g)[:sample].sort().values]
    return idx


def image_selection(n_masked: int, n_used: int, sample: Optional[int] = None) -> str:
    """How the overlap's images were chosen, as ``metrics.json`` records it (``overlap_selection``):
    ``all`` the masked images, the ``first`` N of them, or a ``random`` sample (:data:`SAMPLE_SEED`).

    >>> image_selection(10, 10), image_selection(10, 4), image_selection(10, 4, sample=4)
    ('all', 'first', 'random')
    """
    if n_used >= n_masked:
        return "all"
    return "random" if sample is not None else "first"


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error (sample standard deviation / sqrt(n)) of the values that are not NaN;
    NaN where none (the standard error: where fewer than two).

    >>> [round(v, 6) for v in mean_and_se(torch.tensor([0.1, 0.3, float("nan")]))]
    [0.2, 0.1]
    """
    v = values[~torch.isnan(values)].double()
    if len(v) == 0:
        return float("nan"), float("nan")
    se = float(v.std(unbiased=True) / len(v) ** 0.5) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def figure_indices(labels: torch.Tensor, has_mask: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` masked images to show in a figure, taken in turn from every class that has
    masked images (within a class at random, seeded by ``seed``), so that each class appears where
    the first masked images are all of one class; in the order of the classes. ``has_mask``: N
    booleans, or N x 1 x H x W masks.

    >>> labels, has_mask = torch.tensor([0, 0, 0, 0, 1, 1, 2]), torch.tensor([1, 1, 1, 1, 1, 1, 0]).bool()
    >>> masked_indices(has_mask, 4).tolist(), figure_indices(labels, has_mask, 4).tolist()
    ([0, 1, 2, 3], [0, 1, 4, 5])
    """
    idx = masked_indices(has_mask)
    g = torch.Generator().manual_seed(int(seed))
    pools = [idx[labels[idx] == c] for c in torch.unique(labels[idx]).tolist()]
    pools = [p[torch.randperm(len(p), generator=g)] for p in pools]
    taken = []
    for turn in range(max(map(len, pools), default=0)):
        taken += [int(p[turn]) for p in pools if turn < len(p)]
    return torch.tensor(sorted(taken[:max(n, 0)], key=lambda i: (int(labels[i]), i)), dtype=torch.long)


def overlap_metrics(net, data, methods=METHODS, samples: int = 0, max_images: Optional[int] = None,
                    device=None, progress: bool = True, keep: Optional[dict] = None, keep_images: int = 8,
                    batch_size: int = 250, workers: int = 0, sample: Optional[int] = None, **kw) -> dict:
    """``overlap_<method>`` for every method on the masked images of ``data`` (an image set, in
    memory or read from disk; :class:`~pyro_ebnn.data.LabelledImages`), its standard error over the
    images ``overlap_<method>_se`` (:func:`mean_and_se`), plus ``n_overlap_images``,
    ``overlap_selection`` (:func:`image_selection`) and ``overlap_samples``. The images: all masked
    ones, the first ``max_images``, or a seeded random ``sample`` of them (:func:`masked_indices`).
    They are explained ``batch_size`` at a time, so that only the per-image overlaps are kept.
    ``keep`` (a dict), if given, receives ``keep_images`` masked images of every class
    (:func:`figure_indices`; the overlap stays over its own images), their masks, labels,
    attributions, indices and the class names, for figures. Other keywords go to
    :func:`~pyro_ebnn.explain.explain`."""
    methods = parse_methods(methods)
    idx = masked_indices(data.has_mask, max_images, sample)
    out = {"n_overlap_images": int(len(idx)),
           "overlap_selection": image_selection(int(data.has_mask.sum()), len(idx), sample),
           "overlap_samples": int(samples)}
    if len(idx) == 0:
        out.update({k: None for m in methods for k in (f"overlap_{m}", f"overlap_{m}_se")})
        return out
    per_image = {m: [] for m in methods}
    shown = figure_indices(data.labels, data.has_mask, keep_images, kw.get("seed", 0)) if keep is not None else []
    found = {}  # index -> (image, mask, label, {method: attribution}) of the images shown
    bar = progress_bar(total=len(idx), desc="attributions", unit="img", disable=not progress, leave=False)
    start = 0
    for x, y, masks in batches(data, batch_size, idx, workers=workers):
        attrs = explain(net, x, y, methods, samples=samples, device=device, progress=False, **kw)
        for m in methods:
            per_image[m].append(overlap_per_image(attrs[m], masks))
        _collect(found, shown, idx[start:start + len(y)], x, masks, y, attrs)
        start += len(y)
        bar.update(len(y))
    bar.close()
    for m in methods:
        out[f"overlap_{m}"], out[f"overlap_{m}_se"] = mean_and_se(torch.cat(per_image[m]))
    if keep is not None and len(shown):
        rest = torch.tensor([int(i) for i in shown if int(i) not in found], dtype=torch.long)
        if len(rest):  # shown images that the overlap did not explain: explained on their own
            x, y, masks = next(batches(data, len(rest), rest, workers=workers))
            _collect(found, shown, rest, x, masks, y,
                     explain(net, x, y, methods, samples=samples, device=device, progress=False, **kw))
        rows = [found[int(i)] for i in shown]
        keep.update({"images": torch.stack([r[0] for r in rows]), "masks": torch.stack([r[1] for r in rows]),
                     "labels": torch.stack([r[2] for r in rows]), "indices": shown,
                     "attributions": {m: torch.stack([r[3][m] for r in rows]) for m in methods},
                     "class_names": list(getattr(data, "class_names", None) or [])})
    return out


def _collect(found: dict, shown, indices, x, masks, y, attrs):
    """Keep in ``found`` the rows of a batch (``indices`` into the image set) that ``shown`` lists."""
    wanted = {int(i) for i in shown}
    for row, i in enumerate(indices.tolist()):
        if i in wanted:
            found[i] = (x[row].cpu(), masks[row].cpu(), y[row].cpu(), {m: a[row].cpu() for m, a in attrs.items()})

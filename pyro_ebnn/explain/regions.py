"""Candidate regions for explanation feedback ([002] §4.2, "Feedback selection method").

A person marks regions of a training image as irrelevant. Rather than paint pixels, they accept or
reject superpixels that the network's explanation points at. For the logit of class y:

1. attribution maps: Grad-CAM U on the last convolution, without the ReLU and upsampled bilinearly
   to the image size (Eq. 4.2-4.3), and the input saliency V = d logit_y / dx (Eq. 4.1);
   :func:`attribution_maps` computes both with Captum;
2. sign: keep the positive part, the magnitude of the negative part, or the magnitude;
3. threshold: in each map keep the largest values that together carry at most a fraction
   lambda_1 (``keep_mass``) of the map's L1 mass (Eq. 4.4-4.7; :func:`mass_threshold`);
4. combine: W = V * U, the product of the two thresholded maps (Fig. 4.4 (h));
5. segment the image with SLIC at several ``n_segments``, keep in each segmentation the segments
   that touch W > 0, and choose the segmentation whose kept segments cover the smallest area.

:func:`candidate_regions` runs steps 2-5 on one image, :func:`combined_map` steps 2-4. Step 6 of the thesis (merging segments
that share a bounding box of a semantic segmentation network) is not implemented; pass
``segmentations`` to choose among label maps from any segmenter instead of SLIC's.

What the thesis leaves open, and the choices made here:

- V has one value per channel. The sign is selected per channel and the selected parts are summed
  over channels, so channels do not cancel (for ``"absolute"`` this is T = sum_c |V_c| of [001]
  Eq. 17). Thresholding then acts on the H x W map.
- ``keep_mass`` = 0.2: the lambda of Fig. 4.4. Both maps keep only their top fifth of mass, so W
  is empty where their peaks miss each other, as happens with noisy saliency on small images;
  0.5 is a milder setting. ``n_segments`` = (15, 30, 60, 120): 120 is the value
  of Fig. 4.5 (a 224-pixel image); the coarser values are ours (the thesis tries "n different
  values" without listing them). Finer segmentations usually select less area, so the largest
  value mostly sets the granularity.
- SLIC's ``compactness``: 10 for RGB images (scikit-image's default, applied in Lab space whose
  lightness spans [0, 100]); 0.1 for every other channel count, whose values span [0, 1] (the same
  balance of colour and distance at a hundredth of the colour scale). On noisy images SLIC's
  superpixels fragment and merge into a few large ones; ``sigma=1`` (Gaussian smoothing first)
  helps there.
- A value is kept when it lies strictly above the threshold (Eq. 4.4: V * 1[V > theta]), so tied
  values are kept or dropped together; a map whose largest value (with its ties: a plateau)
  carries more than ``keep_mass`` of its mass keeps nothing, and the image then has no candidate
  region.
- Equal areas: the first segmentation in order wins.

:func:`region_iou` and :func:`region_coverage` measure how well candidate regions find a known mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import slic
from torch import nn

from ..errors import EBNNError
from .attributions import attribute

__all__ = ["KEEP_MASS", "N_SEGMENTS", "SIGNS", "RegionError", "Regions", "attribution_maps",
           "candidate_regions", "combined_map", "mass_threshold", "region_coverage", "region_iou"]

SIGNS = ("positive", "negative", "absolute")
#: lambda_1 of [002] Fig. 4.4
KEEP_MASS = 0.2
#: SLIC's n_segments; 120 as in [002] Fig. 4.5, the coarser values ours
N_SEGMENTS = (15, 30, 60, 120)
#: SLIC's compactness for RGB images (converted to Lab) and for any other channel count
RGB_COMPACTNESS, COMPACTNESS = 10.0, 0.1


class RegionError(EBNNError):
    """Bad input to the candidate-region tools (shapes, keep_mass, sign)."""


@dataclass(frozen=True, eq=False)
class Regions:
    """The candidate regions of one image.

    segments    H x W int label map: the chosen segmentation
    ids         the labels of its candidate segments (those touching ``combined`` > 0), sorted
    combined    H x W map W = V * U after sign selection and thresholding (non-negative)
    areas       pixels covered by the candidate segments of each segmentation tried, in order
    n_segments  SLIC's n_segments of each segmentation tried; None for given segmentations
    """
    segments: np.ndarray
    ids: np.ndarray
    combined: np.ndarray
    areas: tuple
    n_segments: Optional[tuple]

    @property
    def choice(self) -> int:
        """Index of the chosen segmentation among those tried (the first of the smallest area)."""
        return int(np.argmin(self.areas))

    def mask(self, ids=None) -> np.ndarray:
        """H x W bool: the union of the segments ``ids`` (default: all candidates), e.g. the ones a
        person accepted as irrelevant; the feedback mask E of that image."""
        ids = self.ids if ids is None else np.asarray(ids, dtype=self.segments.dtype).ravel()
        missing = np.setdiff1d(ids, self.segments)
        if len(missing):
            raise RegionError(f"segment id(s) {missing.tolist()} are not in the segmentation; "
                              f"use labels between {self.segments.min()} and {self.segments.max()}")
        return np.isin(self.segments, ids)


# -- steps 2-5 ------------------------------------------------------------------------------------
def _array(x, name: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise RegionError(f"{name} must be a numeric numpy array or torch tensor, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise RegionError(f"{name} has NaN or infinite values; pass finite values")
    return a


def _check_keep_mass(keep_mass: float):
    if not 0 < keep_mass <= 1:
        raise RegionError(f"keep_mass must lie in (0, 1] (the fraction of L1 mass to keep), got {keep_mass}")


def _check_sign(sign: str):
    if sign not in SIGNS:
        raise RegionError(f"unknown sign {sign!r}; use one of {', '.join(SIGNS)}")


def _signed(a: np.ndarray, sign: str) -> np.ndarray:
    """Step 2: the part of the map to explain, as non-negative values."""
    if sign == "positive":
        return np.where(a > 0, a, 0.0)
    if sign == "negative":
        return np.where(a < 0, -a, 0.0)
    return np.abs(a)


def mass_threshold(attribution, keep_mass: float = KEEP_MASS) -> np.ndarray:
    """Step 3 ([002] Eq. 4.4-4.7): the largest values of a non-negative map that together carry at
    most ``keep_mass`` of its L1 mass; every other value set to 0.

    This is map * 1[map > theta'] for the smallest theta' that meets the bound: a value v is kept
    iff all values >= v sum to at most keep_mass * ||map||_1 (up to a relative 1e-12 for rounding).

    >>> mass_threshold(np.array([1.0, 4.0, 2.0, 3.0]), keep_mass=0.7)
    array([0., 4., 0., 3.])
    """
    _check_keep_mass(keep_mass)
    a = _array(attribution, "attribution")
    if (a < 0).any():
        raise RegionError("mass_threshold takes a non-negative map; select a sign first (positive part or magnitude)")
    flat = a.ravel()
    if flat.size == 0:
        return a
    order = np.argsort(-flat, kind="stable")
    v = flat[order]
    cum = np.cumsum(v)
    at_least = cum[np.searchsorted(-v, -v, side="right") - 1]   # mass of all values >= v_i (ties included)
    keep = np.zeros(flat.shape, dtype=bool)
    keep[order] = (at_least <= keep_mass * cum[-1] * (1 + 1e-12)) & (v > 0)
    return np.where(keep.reshape(a.shape), a, 0.0)


def _image(image) -> np.ndarray:
    img = _array(image, "image").astype(np.float64)
    if img.ndim != 3 or min(img.shape) < 1:
        hint = "; add a channel axis (image[None])" if img.ndim == 2 else ""
        raise RegionError(f"image must be C x H x W (channels first), got shape {img.shape}{hint}")
    if img.min() < -1e-6 or img.max() > 1 + 1e-6:
        raise RegionError(f"image values must lie in [0, 1], got [{img.min():.3g}, {img.max():.3g}]; "
                          "pass the image before standardization")
    return img.clip(0, 1)


def _gradcam(gradcam, size: tuple) -> np.ndarray:
    """U at the image size: H x W or 1 x H x W as given, h x w or 1 x h x w upsampled bilinearly."""
    u = _array(gradcam, "gradcam").astype(np.float64)
    if u.ndim == 3 and u.shape[0] == 1:
        u = u[0]
    if u.ndim != 2 or u.shape[0] > size[0] or u.shape[1] > size[1] or min(u.shape) < 1:
        raise RegionError(f"gradcam must be h x w or 1 x h x w with h <= {size[0]} and w <= {size[1]} "
                          f"(the last convolution's or the image's size), got shape {u.shape}")
    if u.shape == size:
        return u
    t = torch.from_numpy(u)[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _saliency(saliency, size: tuple) -> np.ndarray:
    v = _array(saliency, "saliency").astype(np.float64)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or v.shape[1:] != size or v.shape[0] < 1:
        raise RegionError(f"saliency must be C x H x W or H x W at the image's size {size[0]} x {size[1]}, "
                          f"got shape {v.shape}")
    return v


def _slic(image: np.ndarray, n_segments: int, options: dict) -> np.ndarray:
    options = {"compactness": RGB_COMPACTNESS if image.shape[0] == 3 else COMPACTNESS, **options}
    if image.shape[0] == 1:
        return slic(image[0], n_segments=n_segments, channel_axis=None, start_label=0, **options)
    # RGB is converted to Lab (scikit-image's default for 3 channels)
    return slic(np.moveaxis(image, 0, -1), n_segments=n_segments, channel_axis=-1, start_label=0, **options)


def _segmentations(image: np.ndarray, n_segments, segmentations, options: dict) -> tuple[list, Optional[tuple]]:
    size = image.shape[1:]
    if segmentations is not None:
        if options:
            raise RegionError(f"SLIC options {sorted(options)} have no effect with given segmentations; drop them")
        labels = [_array(s, "segmentation") for s in segmentations]
        if not labels or any(s.shape != size or (s != np.round(s)).any() for s in labels):
            raise RegionError(f"segmentations must be a non-empty sequence of integer label maps of shape "
                              f"{size[0]} x {size[1]}")
        return [s.astype(np.int64) for s in labels], None
    ns = (n_segments,) if np.isscalar(n_segments) else tuple(n_segments)
    if not ns or any(int(n) != n or n < 1 for n in ns):
        raise RegionError(f"n_segments must be one or more positive integers, got {n_segments!r}")
    return [_slic(image, int(n), options) for n in ns], tuple(int(n) for n in ns)


def combined_map(gradcam, saliency, sign: str = "positive", keep_mass: float = KEEP_MASS,
                 size: Optional[tuple] = None) -> np.ndarray:
    """Steps 2-4: W = V * U, the product of the sign-selected, thresholded saliency (summed over
    channels) and Grad-CAM maps, H x W and non-negative. ``keep_mass=1`` keeps every value of the
    selected sign: the explanation before thresholding, as the annotation page shows it.
    ``size``: the image's (H, W) (default: the saliency's).

    >>> u, v = np.array([[1.0, -1.0], [2.0, 0.5]]), np.array([[[1.0, 3.0], [-1.0, 2.0]]])
    >>> combined_map(u, v, keep_mass=1.0)
    array([[1., 0.],
           [0., 1.]])
    """
    _check_sign(sign)
    _check_keep_mass(keep_mass)
    size = tuple(size) if size is not None else tuple(np.shape(saliency)[-2:])
    u = mass_threshold(_signed(_gradcam(gradcam, size), sign), keep_mass)
    v = mass_threshold(_signed(_saliency(saliency, size), sign).sum(0), keep_mass)
    return v * u


def candidate_regions(image, gradcam, saliency, sign: str = "positive", keep_mass: float = KEEP_MASS,
                      n_segments: Sequence[int] = N_SEGMENTS, segmentations: Optional[Sequence] = None,
                      **slic_options) -> Regions:
    """The candidate regions of one image ([002] §4.2, steps 2-5).

    image          C x H x W in [0, 1] (numpy or torch; any C: grey, RGB, more channels)
    gradcam        Grad-CAM U without ReLU: H x W, or h x w at the last convolution (then upsampled
                   bilinearly); a leading axis of 1 is allowed
    saliency       input gradient V: C x H x W (or H x W)
    sign           "positive", "negative" or "absolute" attribution (step 2)
    keep_mass      lambda_1 in (0, 1]: the fraction of each map's L1 mass kept (step 3)
    n_segments     SLIC's n_segments of the segmentations to choose from (step 5)
    segmentations  H x W integer label maps to choose from instead of SLIC's
    slic_options   further keywords of ``skimage.segmentation.slic``, e.g. ``sigma=1`` to smooth a
                   noisy image first; ``compactness`` defaults to 10 for RGB and 0.1 otherwise

    >>> image = np.zeros((1, 28, 28)); image[0, 2:6, 2:6] = 1.0          # a decoy square
    >>> saliency = image.copy(); saliency[0, 3, 3] = 2.0                  # the network looks at it
    >>> regions = candidate_regions(image, np.ones((7, 7)), saliency, keep_mass=1.0)
    >>> bool(regions.mask()[2:6, 2:6].all()), int(regions.mask().sum())
    (True, 16)
    """
    img = _image(image)
    combined = combined_map(gradcam, saliency, sign, keep_mass, size=img.shape[1:])
    labels, ns = _segmentations(img, n_segments, segmentations, slic_options)
    ids = [np.unique(s[combined > 0]) for s in labels]
    areas = tuple(int(np.isin(s, i).sum()) for s, i in zip(labels, ids))
    j = int(np.argmin(areas))
    return Regions(segments=labels[j], ids=ids[j], combined=combined, areas=areas, n_segments=ns)


# -- step 1 ----------------------------------------------------------------------------------------
def attribution_maps(net: nn.Module, images: torch.Tensor, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM and saliency of a batch for the logits of ``targets`` ([002] Eq. 4.1-4.3; Captum).

    ``net`` is a plain torch network (e.g. at the posterior mean or at one posterior sample) whose
    attribute ``evidence_layer`` is its last convolution; put it in eval mode first if it has
    dropout or batch norm. ``images``: N x C x H x W as the network takes them; ``targets``: one
    class per image (or one for all). Returns (gradcam N x 1 x H x W: Grad-CAM at the output of
    ``evidence_layer``, no ReLU, upsampled bilinearly; saliency N x C x H x W: signed d logit_y / dx).

    >>> from collections import OrderedDict
    >>> net = nn.Sequential(OrderedDict(evidence_layer=nn.Conv2d(1, 2, 3), flat=nn.Flatten(),
    ...                                 fc=nn.Linear(2 * 6 * 6, 3)))
    >>> gradcam, saliency = attribution_maps(net, torch.rand(4, 1, 8, 8), [0, 1, 2, 0])
    >>> tuple(gradcam.shape), tuple(saliency.shape)
    ((4, 1, 8, 8), (4, 1, 8, 8))
    """
    layer = getattr(net, "evidence_layer", None)
    if not isinstance(layer, nn.Module):
        raise RegionError(f"{type(net).__name__} has no module evidence_layer; "
                          "set it to the network's last convolution")
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise RegionError(f"images must be an N x C x H x W tensor, got {getattr(images, 'shape', type(images))}")
    y = torch.as_tensor(targets, dtype=torch.long, device=images.device).reshape(-1)
    if len(y) == 1:
        y = y.expand(len(images))
    if len(y) != len(images):
        raise RegionError(f"targets must give one class per image ({len(images)}), got {len(y)}")
    return attribute(net, images, y, "gradcam"), attribute(net, images, y, "saliency")


# -- how well regions find a known mask --------------------------------------------------------------
def _masks(found, truth) -> tuple[np.ndarray, np.ndarray]:
    f, t = _array(found, "found") != 0, _array(truth, "truth") != 0
    if f.shape != t.shape or f.ndim < 2:
        raise RegionError(f"found and truth must be masks of the same shape, H x W or N x H x W; "
                          f"got {f.shape} and {t.shape}")
    return f.reshape(*f.shape[:-2], -1), t.reshape(*t.shape[:-2], -1)


def region_iou(found, truth) -> np.ndarray:
    """Intersection over union of each found mask with its true mask: H x W or N x H x W masks
    (numpy or torch, non-zero = in the region) -> one value per mask (NaN where both are empty).

    >>> region_iou([[1, 1, 0, 0]], [[0, 1, 1, 0]])
    array(0.33333333)
    """
    f, t = _masks(found, truth)
    union = (f | t).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, (f & t).sum(-1) / union, np.nan)


def region_coverage(found, truth) -> np.ndarray:
    """The fraction of each true mask's pixels inside the found mask: H x W or N x H x W masks ->
    one value per mask (NaN where the true mask is empty).

    >>> region_coverage([[1, 1, 0, 0]], [[0, 1, 1, 0]])
    array(0.5)
    """
    f, t = _masks(found, truth)
    size = t.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(size > 0, (f & t).sum(-1) / size, np.nan)

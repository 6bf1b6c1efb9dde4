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

Proposals at the resolution of a shortcut (:func:`blob_regions`, the default of
:func:`proposal_regions` and of ``annotate --proposals``): on small images the thesis' method
rarely finds a small decoy. Both maps are cut to their top fifth of mass *before* they are
multiplied, so W is often empty (59% of the corners rule's test images), and its SLIC segments are
coarser than a 4 x 4 decoy. The blobs instead smooth the product W (Gaussian, ``sigma`` 1 px up to
64-px images), keep the connected components of W >= 0.2 x its maximum, strongest first, and grow
each to the fine superpixels (about 1/7 of the image side) it touches whose mean attribution is
at least half that of its strongest one. Every image gets at least one proposal. Measured on Decoy
MNIST and photographs with a pasted patch:
docs/results/annotation.md, "Proposals" (``experiments/proposal_iou.py``).

:func:`region_iou` and :func:`region_coverage` measure how well candidate regions find a known mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from skimage.filters import gaussian
from skimage.measure import label, regionprops
from skimage.segmentation import relabel_sequential, slic
from torch import nn

from ..errors import EBNNError
from .attributions import attribute

__all__ = ["KEEP_MASS", "N_SEGMENTS", "SIGNS", "PROPOSALS", "DEFAULT_PROPOSALS", "RegionError", "Regions",
           "attribution_maps", "blob_regions", "blob_sigma", "blobs", "candidate_regions", "combined_map",
           "fine_segments", "grow_to_superpixels", "mass_threshold", "proposal_regions", "region_coverage",
           "region_iou"]

SIGNS = ("positive", "negative", "absolute")
#: lambda_1 of [002] Fig. 4.4
KEEP_MASS = 0.2
#: SLIC's n_segments; 120 as in [002] Fig. 4.5, the coarser values ours
N_SEGMENTS = (15, 30, 60, 120)
#: SLIC's compactness for RGB images (converted to Lab) and for any other channel count
RGB_COMPACTNESS, COMPACTNESS = 10.0, 0.1
#: the proposal methods: compact high-attribution blobs, and [002] §4.2's candidate regions
PROPOSALS = ("blobs", "thesis")
#: what annotate proposes (docs/results/annotation.md, "Proposals": the best IoU with the decoys)
DEFAULT_PROPOSALS = "blobs"
#: blobs: a pixel belongs to a blob where the smoothed map reaches this fraction of its maximum
BLOB_LEVEL = 0.2
#: blobs: at most this many proposals per image, strongest first
MAX_BLOBS = 5
#: blobs: the fine superpixels are about 1/FINE_SIDE of the image's shorter side
FINE_SIDE = 7
#: blobs: a blob grows to the superpixels it touches with at least this fraction of the mean
#: attribution of its strongest superpixel
GROW_RELATIVE = 0.5


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


# -- proposals at the shortcut's scale: blobs -------------------------------------------------------
def fine_segments(shape) -> int:
    """SLIC's ``n_segments`` for superpixels about 1/``FINE_SIDE`` of the image's shorter side: 4 px
    on a 28-px image (a 4 x 4 decoy can be one segment), 9 px on 64 px, 32 px on 224 px.

    >>> fine_segments((28, 28)), fine_segments((64, 64)), fine_segments((224, 160))
    (49, 49, 69)
    """
    side = max(1.0, min(shape) / FINE_SIDE)
    return max(1, int(round(shape[0] * shape[1] / side ** 2)))


def blob_sigma(shape) -> float:
    """The Gaussian smoothing of the map before thresholding, in pixels: 1 up to 64-px images, then
    1/64 of the shorter side.

    >>> blob_sigma((28, 28)), blob_sigma((224, 224))
    (1.0, 3.5)
    """
    return max(1.0, min(shape) / 64)


def blobs(heat, level: float = BLOB_LEVEL, max_blobs: int = MAX_BLOBS) -> np.ndarray:
    """Label map of the compact high-attribution blobs of a non-negative map: the connected
    components (8-neighbourhood) of ``heat >= level * heat.max()``, numbered 1, 2, ... by their
    attribution mass, strongest first, at most ``max_blobs``; 0 elsewhere. A map with a positive
    value has at least one blob (the one holding its maximum).

    >>> heat = np.zeros((5, 7)); heat[1:3, 1:3] = 1.0; heat[3, 5] = 3.0; heat[0, 6] = 0.1
    >>> blobs(heat, level=0.2)          # mass 4 before 3; 0.1 is below 0.2 x 3
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 1, 1, 0, 0, 0, 0],
           [0, 1, 1, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 2, 0],
           [0, 0, 0, 0, 0, 0, 0]])
    """
    heat = _array(heat, "heat")
    if not 0 < level <= 1:
        raise RegionError(f"level must lie in (0, 1] (a fraction of the map's maximum), got {level}")
    if int(max_blobs) != max_blobs or max_blobs < 1:
        raise RegionError(f"max_blobs must be a positive integer, got {max_blobs!r}")
    if (heat < 0).any() or not heat.any():
        raise RegionError("blobs takes a non-negative map with a positive value; select a sign first")
    components = label(heat >= level * heat.max(), connectivity=2)
    found = sorted(regionprops(components, intensity_image=heat), key=lambda r: -r.intensity_mean * r.area)
    out = np.zeros(heat.shape, np.int64)
    for k, region in enumerate(found[:int(max_blobs)], 1):
        out[components == region.label] = k
    return out


def grow_to_superpixels(blob_labels: np.ndarray, superpixels: np.ndarray, heat: np.ndarray,
                        relative: float = GROW_RELATIVE) -> np.ndarray:
    """Each blob grown to the superpixels it touches whose mean ``heat`` is at least ``relative``
    times that of its strongest one: the blob snaps to the edges of what it lies on, without the
    weak rim that smoothing adds. Blobs are grown strongest first (label 1 first); a superpixel
    belongs to one blob, and a blob whose superpixels all went to stronger ones is dropped.
    Label maps in, label map out (0: no blob).

    >>> superpixels = np.array([[0, 0, 0, 1, 1, 1, 2, 2]])
    >>> heat = np.array([[0.1, 0.9, 1.0, 0.8, 0.1, 0.0, 0.0, 0.0]])   # superpixel means 0.67, 0.3, 0
    >>> grow_to_superpixels(np.array([[0, 1, 1, 1, 0, 0, 0, 0]]), superpixels, heat)
    array([[1, 1, 1, 0, 0, 0, 0, 0]])
    """
    _, sp = np.unique(superpixels, return_inverse=True)
    sp = sp.reshape(superpixels.shape)
    mean = np.bincount(sp.ravel(), weights=np.asarray(heat, float).ravel()) / np.bincount(sp.ravel())
    free = np.ones(len(mean), bool)
    grown = np.zeros(blob_labels.shape, np.int64)
    for k in range(1, int(blob_labels.max()) + 1):
        touched = np.unique(sp[blob_labels == k])
        if not len(touched):
            continue
        taken = touched[(mean[touched] >= relative * mean[touched].max()) & free[touched]]
        free[taken] = False
        grown[np.isin(sp, taken)] = k
    return relabel_sequential(grown)[0]


def blob_regions(image, gradcam, saliency, sign: str = "positive", level: float = BLOB_LEVEL,
                 sigma: Optional[float] = None, grow: bool = True, n_segments: Optional[int] = None,
                 max_blobs: int = MAX_BLOBS, **slic_options) -> Regions:
    """Proposals at the resolution of a shortcut: the compact high-attribution blobs of one image.

    1. the explanation W = V * U of the chosen ``sign`` (:func:`combined_map` with ``keep_mass=1``),
       smoothed with a Gaussian of ``sigma`` pixels (default :func:`blob_sigma`);
    2. the blobs: connected components of W >= ``level`` x its maximum, strongest (by attribution
       mass) first, at most ``max_blobs`` (:func:`blobs`); a level relative to the peak lets a
       blob take the size of what the network looks at, where a fixed percentile would fix its area;
    3. with ``grow``: each blob grown to the fine superpixels (SLIC, ``n_segments`` default
       :func:`fine_segments`) it touches whose mean smoothed attribution is at least half that of
       its strongest one (:func:`grow_to_superpixels`), so that it snaps to the edges of a patch.

    The result's ``segments`` are those superpixels with the blobs drawn over them (so the rest of
    the image can still be clicked), ``ids`` the blobs' labels, strongest first; ``combined`` the
    smoothed map inside the blobs before growing. Every image gets a proposal: where W is 0
    everywhere, the blobs are those of the saliency magnitude (summed over channels), and where
    that is 0 too, the whole image is one proposal.

    >>> image = np.zeros((1, 28, 28)); image[0, 2:6, 2:6] = 1.0; image[0, 10:20, 10:18] = 0.6
    >>> saliency = 0.01 * image; saliency[0, 3, 3] = saliency[0, 4, 4] = 1.0   # the decoy decides
    >>> regions = blob_regions(image, np.ones((7, 7)), saliency)
    >>> float(region_iou(regions.mask(regions.ids[:1]), image[0] == 1.0))     # the strongest: the decoy
    1.0
    """
    img = _image(image)
    size = img.shape[1:]
    heat = combined_map(gradcam, saliency, sign, 1.0, size=size)
    if not heat.any():
        heat = np.abs(_saliency(saliency, size)).sum(0)
    if not heat.any():
        heat = np.ones(size)
    sigma = blob_sigma(size) if sigma is None else sigma
    if not sigma >= 0:
        raise RegionError(f"sigma must be a non-negative number of pixels, got {sigma}")
    smooth = gaussian(heat, sigma=sigma) if sigma > 0 else heat
    found = blobs(smooth, level, max_blobs)
    n = fine_segments(size) if n_segments is None else n_segments
    superpixels = _segmentations(img, n, None, slic_options)[0][0]
    proposals = grow_to_superpixels(found, superpixels, smooth) if grow else found
    # the proposals drawn over the superpixels, relabelled 0, 1, ... with the proposals last
    segments, _, _ = relabel_sequential(np.where(proposals > 0, superpixels.max() + proposals, superpixels))
    ids = np.unique(segments[proposals > 0])
    area = int((proposals > 0).sum())
    return Regions(segments=segments, ids=ids, combined=np.where(found > 0, smooth, 0.0), areas=(area,),
                   n_segments=(int(n),))


def proposal_regions(image, gradcam, saliency, proposals: str = DEFAULT_PROPOSALS, **options) -> Regions:
    """The regions proposed to an annotator for one image: ``"blobs"`` (:func:`blob_regions`,
    compact high-attribution blobs grown to fine superpixels) or ``"thesis"`` ([002] §4.2,
    :func:`candidate_regions`). ``options`` go to that function (``sign`` to both).

    >>> image = np.zeros((1, 28, 28)); image[0, 2:6, 2:6] = 1.0        # a plateau of attribution:
    >>> [len(proposal_regions(image, np.ones((7, 7)), image, p).ids) for p in PROPOSALS]
    [1, 0]

    The thesis' threshold keeps nothing of a plateau that carries more than ``keep_mass`` of the
    map's mass; the blobs always propose something.
    """
    if proposals not in PROPOSALS:
        raise RegionError(f"unknown proposals {proposals!r}; use one of {', '.join(PROPOSALS)}")
    return (blob_regions if proposals == "blobs" else candidate_regions)(image, gradcam, saliency, **options)


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

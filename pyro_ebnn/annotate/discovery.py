"""Shortcuts across the dataset: find the explanation a group of images shares, mark it once.

A shortcut is shared by many images, so instead of asking a person to find and paint it on each,
the pool's explanations are grouped and the groups shown first are those whose explanation looks
like a shortcut: concentrated on a small region, the same for every member.

**Groups** (:func:`discover`), as SpRAy (Lapuschkin et al. 2019): per predicted class, each image's
explanation map (W = Grad-CAM⁺ × saliency⁺ of the posterior mean network for its predicted class,
the map the page shows) is scaled to sum 1 and downsampled to at most ``GRID`` x ``GRID`` pixels
(each new pixel the mean over its area, ``skimage.transform.resize_local_mean``); the maps of a class are joined
in a k-nearest-neighbour graph (``N_NEIGHBORS``, symmetrized, as scikit-learn's
``SpectralClustering(affinity="nearest_neighbors")`` builds it) and split by spectral clustering
(scikit-learn's ``SpectralClustering`` on that affinity).

The number of groups of a class is chosen by the **eigengap** (:func:`eigengap`), SpRAy's rule:
the eigenvalues λ₁ ≤ λ₂ ≤ … of the graph's normalized Laplacian are computed up to
λ_{MAX_GROUPS+1}, and the number of groups is the k ≤ ``MAX_GROUPS`` with the largest gap
λ_{k+1} − λ_k (a graph of k well-separated parts has k eigenvalues near 0, then a jump). Capped
at ``MAX_GROUPS`` so a class never shows more groups than a person would look at; a class of fewer
than ``MIN_CLASS`` images is one group.

**Ranking** (:class:`Group`): each group's mean map (the mean of its members' maps at full
resolution, each scaled to sum 1) is scored by

  concentration  the share of the mean map's mass in its top ``TOP_FRACTION`` of pixels (1 when it
                 all lies there; ``TOP_FRACTION`` for a flat map)
  consistency    the mean Pearson correlation of the members' maps with the mean map (1 when every
                 member looks at the same pixels)

and the groups are ranked by concentration × consistency, largest first; groups of fewer than
``MIN_GROUP`` images come after all others (a shortcut is shared by many images). The group's
**top region** is the top ``TOP_FRACTION`` of its mean map's pixels; :func:`shortcut_share` (the
``shortcut`` selection strategy) scores an image by the share of its own map's mass inside its
group's top region.

**Marking once** (:class:`Discovery`, the page's discovery view and the group oracle): the
person marks a region once, on the group's mean map or on one of its images (the *source*; the
group's representative, its most typical member, for a mark on the mean map), and the mark is
propagated to other images by one of three rules (:data:`RULES`):

  place     the same pixels on every member of the group: for a shortcut that sits at the same
            place in every image (a corner, a watermark); score = the member's attribution share
            inside the mask
  pixels    "mark once, find everywhere" in pixels, for a shortcut that moves (a patch anywhere):
            each connected piece of the mark is a template, the source's pixels in the piece's
            bounding box (widened by ``PAD`` pixels of its surroundings when the piece is one
            flat value, so that its edges are found); its normalized
            cross-correlation with every pool image (``skimage.feature.match_template``, all
            channels together, the image padded with zeros) marks the piece's pixels at each of its
            peaks that reaches ``PIXEL_THRESHOLD`` (``skimage.feature.peak_local_max``, peaks at
            least half the template apart); score = the image's highest correlation
  features  the same in the network's eyes: the marked cells of the evidence layer (the last
            convolution's pre-activations, the cells the feedback acts on) of the source give
            prototype feature vectors (C channels each); every cell of every pool image whose
            feature vector, minus the pool's mean cell vector, has cosine similarity of at least
            ``FEATURE_THRESHOLD`` with one of them is matched, and the image gets the source's
            marked pixels moved by the offset between the matched cell and its prototype; score =
            the image's highest similarity. Centring on the pool's mean cell removes what every
            cell shares (the biases, the blank background), which otherwise makes any two cells
            look alike. Cells and pixels correspond through where each cell looks
            (:func:`cell_centres`: a small bright square moved along the image's diagonal, the
            cell that responds most, an affine fit per axis), so that valid convolutions, whose
            cells look a few pixels away from a proportional grid, put the mark on the patch.

The thresholds were measured on the Decoy MNIST start models (LeNet; one decoy square marked on
one image, found in 499 others; ``experiments/propagation.py``, docs/results/annotation.md,
"The finder"): at ``PIXEL_THRESHOLD`` = 0.9 the pixels rule marks 87% (position
rule) and 99.7% (corners) of the other images' decoy pixels with a precision of 0.94 and 0.996.
The evidence-layer features of that LeNet (16 channels on 11 x 11 cells, each cell seeing a
third of a 28-px image) tell a decoy from its surroundings poorly: at ``FEATURE_THRESHOLD`` = 0.9
they find 10-12% of the decoy pixels with a precision of 0.20 (position) and 0.69 (corners).
Use ``pixels`` where the shortcut looks the same in pixels; ``features`` is for networks whose
evidence layer tells such a patch apart, to be checked on the page's list of propagated masks.
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from scipy import linalg
from scipy.sparse import csgraph
from skimage.feature import match_template, peak_local_max
from skimage.filters import gaussian
from skimage.measure import label
from skimage.segmentation import slic
from skimage.transform import resize_local_mean
from sklearn.cluster import SpectralClustering
from sklearn.neighbors import kneighbors_graph

from ..errors import EBNNError
from ..explain import explained_network

__all__ = ["GRID", "MAX_GROUPS", "MIN_CLASS", "MIN_GROUP", "N_NEIGHBORS", "TOP_FRACTION", "FEATURE_THRESHOLD",
           "PAD", "PIXEL_THRESHOLD", "RULES", "SHOWN", "DiscoveryError", "Group", "Discovery", "downsample", "eigengap", "cluster",
           "concentration", "consistency", "top_region", "discover", "shortcut_share", "evidence_features",
           "cell_centres", "cells_to_pixels", "pixels_to_cells", "similar_cells", "propagate_place", "propagate_pixels", "propagate_features", "map_regions",
           "majority_mask"]

#: the side of the downsampled maps that are clustered (SpRAy clusters downsized heat maps)
GRID = 16
#: at most this many groups per class (the eigengap's cap)
MAX_GROUPS = 4
#: a class with fewer images is one group
MIN_CLASS = 12
#: groups with fewer images are ranked after all others
MIN_GROUP = 5
#: neighbours of each map in the affinity graph
N_NEIGHBORS = 10
#: the top region of a mean map: this share of its pixels, the most attributed
TOP_FRACTION = 0.05
#: cosine similarity (centred evidence-layer features) from which a cell looks the same
FEATURE_THRESHOLD = 0.9
#: normalized cross-correlation from which a place looks the same as the marked region in pixels
PIXEL_THRESHOLD = 0.9
#: pixels of the marked region's surroundings in its template
PAD = 1
#: a piece of a mark with fewer pixels than the largest piece's / STRAY_FRACTION is a stray stroke of
#: the brush, not searched for (a 1-pixel template matches any pixel of a similar colour)
STRAY_FRACTION = 10
#: how a mark on a group is propagated
RULES = ("place", "pixels", "features")
#: the member images a group shows
SHOWN = 12


class DiscoveryError(EBNNError):
    """Bad input to the discovery of shared explanations or to propagating a mark."""


# -- groups of explanation maps (SpRAy) ------------------------------------------------------------

def _maps(maps) -> np.ndarray:
    a = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    if a.ndim != 3 or 0 in a.shape or not np.issubdtype(a.dtype, np.number):
        raise DiscoveryError(f"explanation maps must be a numeric N x H x W array, got shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0).any():
        raise DiscoveryError("explanation maps must be finite and non-negative; pass |attribution| or its positive part")
    return a.astype(np.float64)


def _normalized(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to sum 1 (an all-zero map stays 0)."""
    total = maps.reshape(len(maps), -1).sum(1)
    return maps / np.where(total > 0, total, 1.0)[:, None, None]


def downsample(maps, side: int = GRID) -> np.ndarray:
    """N x H x W maps -> N x (s·s) vectors: each map scaled to sum 1, resized to s x s by the mean
    over each new pixel's area (``skimage.transform.resize_local_mean``), s = min(``side``, H, W).

    >>> maps = np.zeros((1, 4, 4)); maps[0, :2, :2] = 1.0
    >>> downsample(maps, side=2).round(3)
    array([[0.25, 0.  , 0.  , 0.  ]])
    """
    maps = _normalized(_maps(maps))
    s = (min(side, maps.shape[1]), min(side, maps.shape[2]))
    small = resize_local_mean(maps, (len(maps), *s), preserve_range=True)
    return small.reshape(len(maps), -1)


def _affinity(vectors: np.ndarray, n_neighbors: int):
    """The symmetrized k-nearest-neighbour connectivity (as SpectralClustering builds it)."""
    graph = kneighbors_graph(vectors, n_neighbors=min(n_neighbors, len(vectors) - 1), include_self=True)
    return 0.5 * (graph + graph.T)


def eigengap(affinity, max_groups: int = MAX_GROUPS) -> int:
    """The number of groups k ≤ ``max_groups`` with the largest gap λ_{k+1} − λ_k between the
    eigenvalues of the normalized Laplacian of ``affinity`` (dense or sparse, symmetric).

    >>> block = np.ones((3, 3)); two = np.block([[block, np.zeros((3, 3))], [np.zeros((3, 3)), block]])
    >>> eigengap(two), eigengap(np.ones((6, 6)))
    (2, 1)
    """
    n = affinity.shape[0]
    k_max = max(1, min(int(max_groups), n - 1))
    laplacian = csgraph.laplacian(affinity, normed=True)
    laplacian = laplacian.toarray() if hasattr(laplacian, "toarray") else np.asarray(laplacian)
    values = linalg.eigh(laplacian, eigvals_only=True, subset_by_index=[0, k_max])
    return int(np.argmax(np.diff(values)[:k_max]) + 1)


def cluster(vectors: np.ndarray, max_groups: int = MAX_GROUPS, n_neighbors: int = N_NEIGHBORS,
            seed: int = 0) -> np.ndarray:
    """Group labels 0 … k−1 of the rows of ``vectors`` (downsampled maps of one class): spectral
    clustering of their k-nearest-neighbour graph, k by :func:`eigengap`; one group below
    ``MIN_CLASS`` rows."""
    n = len(vectors)
    if n < MIN_CLASS or max_groups <= 1:
        return np.zeros(n, np.int64)
    affinity = _affinity(vectors, n_neighbors)
    k = eigengap(affinity, max_groups)
    if k == 1:
        return np.zeros(n, np.int64)
    with warnings.catch_warnings():  # a graph in separate parts is what separate groups look like
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        found = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed,
                                   assign_labels="cluster_qr").fit_predict(affinity)
    _, labels = np.unique(found, return_inverse=True)
    return labels.astype(np.int64)


def concentration(mean_map, top: float = TOP_FRACTION) -> float:
    """The share of the map's mass in its top ``top`` of pixels (at least one pixel).

    >>> m = np.zeros((10, 10)); m[0, :5] = 1.0
    >>> concentration(m), concentration(np.ones((10, 10)))
    (1.0, 0.05)
    """
    flat = np.sort(np.asarray(mean_map, dtype=np.float64).ravel())[::-1]
    total = flat.sum()
    return float(flat[:max(1, int(np.ceil(top * flat.size)))].sum() / total) if total > 0 else 0.0


def top_region(mean_map, top: float = TOP_FRACTION) -> np.ndarray:
    """The top ``top`` of the map's pixels (bool, ties broken by position).

    >>> top_region(np.arange(4.0).reshape(2, 2), top=0.5)
    array([[False, False],
           [ True,  True]])
    """
    m = np.asarray(mean_map, dtype=np.float64)
    order = np.argsort(-m.ravel(), kind="stable")[:max(1, int(np.ceil(top * m.size)))]
    region = np.zeros(m.size, bool)
    region[order] = True
    return region.reshape(m.shape)


def _correlations(maps: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Pearson correlation of each map with ``mean`` (0 for a constant map)."""
    x = maps.reshape(len(maps), -1)
    x = x - x.mean(1, keepdims=True)
    y = mean.ravel() - mean.mean()
    denominator = np.linalg.norm(x, axis=1) * np.linalg.norm(y)
    return np.divide(x @ y, denominator, out=np.zeros(len(x)), where=denominator > 0)


def consistency(maps, mean_map=None) -> float:
    """The mean Pearson correlation of the maps with their mean (or with ``mean_map``).

    >>> same = np.stack([np.eye(3)] * 4)
    >>> consistency(same)
    1.0
    """
    maps = _normalized(_maps(maps))
    mean = maps.mean(0) if mean_map is None else np.asarray(mean_map, dtype=np.float64)
    return float(_correlations(maps, mean).mean())


@dataclass(frozen=True)
class Group:
    """One group of images of one predicted class whose explanations look alike.

    ``key`` names it on the page and in the store (``c<class>g<j>``); ``members`` are dataset
    indices, most typical first (by the correlation of their map with the mean map, ``typicality``);
    ``mean_map`` is H x W, summing to 1."""

    key: str
    cls: int
    members: tuple
    typicality: tuple
    mean_map: np.ndarray = field(repr=False)
    concentration: float
    consistency: float

    @property
    def score(self) -> float:
        """concentration × consistency: how much the group's explanation looks like a shortcut."""
        return self.concentration * self.consistency

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def representative(self) -> int:
        """The member whose map is closest to the mean map."""
        return self.members[0]

    @property
    def top_region(self) -> np.ndarray:
        return top_region(self.mean_map)

    def shown(self, n: int = SHOWN) -> list[int]:
        """The ``n`` most typical members."""
        return list(self.members[:n])


def discover(maps, predicted, indices: Optional[Sequence[int]] = None, max_groups: int = MAX_GROUPS,
             seed: int = 0) -> list[Group]:
    """The groups of the pool's explanations, best first (module docstring): ``maps`` N x H x W
    (non-negative), ``predicted`` N classes, ``indices`` the images' dataset indices (default
    0 … N−1).

    >>> rng = np.random.default_rng(0)
    >>> maps = rng.random((40, 8, 8)); maps[:20, :2, :2] += 20      # half look at a corner
    >>> groups = discover(maps, np.zeros(40, int))
    >>> best = groups[0]
    >>> len(groups), best.size, sorted(best.members) == list(range(20)), bool(best.top_region[0, 0])
    (2, 20, True, True)
    """
    maps = _maps(maps)
    predicted = np.asarray(predicted).astype(np.int64).ravel()
    indices = np.arange(len(maps)) if indices is None else np.asarray(indices).astype(np.int64).ravel()
    if not len(predicted) == len(indices) == len(maps):
        raise DiscoveryError(f"maps ({len(maps)}), predicted ({len(predicted)}) and indices ({len(indices)}) must "
                             "have one entry per image")
    unit = _normalized(maps)
    small = downsample(maps)
    groups = []
    for cls in np.unique(predicted):
        rows = np.flatnonzero(predicted == cls)
        labels = cluster(small[rows], max_groups=max_groups, seed=seed)
        for j in range(labels.max() + 1):
            members = rows[labels == j]
            mean = unit[members].mean(0)
            corr = _correlations(unit[members], mean)
            order = np.lexsort((indices[members], -corr))
            groups.append(Group(f"c{int(cls)}g{j}", int(cls), tuple(int(i) for i in indices[members][order]),
                                tuple(float(c) for c in corr[order]), mean, concentration(mean), float(corr.mean())))
    return sorted(groups, key=lambda g: (g.size < MIN_GROUP, -g.score, g.cls, g.key))


def shortcut_share(maps, predicted, groups: Optional[list] = None, indices=None) -> np.ndarray:
    """Per image, the share of its map's mass inside its group's top region (0 where the map is
    all zero): how much of its explanation rests on the pattern its group shares. ``groups``
    defaults to :func:`discover` of the same maps.

    >>> maps = np.full((30, 6, 6), 0.01); maps[:15, 0, 0] = 1.0   # half look at one pixel
    >>> share = shortcut_share(maps, np.zeros(30, int))
    >>> bool(share[:15].min() > 0.7 > share[15:].max())
    True
    """
    maps = _maps(maps)
    indices = np.arange(len(maps)) if indices is None else np.asarray(indices).astype(np.int64).ravel()
    groups = discover(maps, predicted, indices) if groups is None else groups
    unit = _normalized(maps)
    row = {int(i): r for r, i in enumerate(indices)}
    share = np.zeros(len(maps))
    for group in groups:
        rows = [row[i] for i in group.members if i in row]
        share[rows] = unit[rows][:, group.top_region].sum(1)
    return share


def majority_mask(masks) -> np.ndarray:
    """The pixels marked in more than half of the masks (N x H x W bool): where the members' true
    masks agree (the group oracle's mark).

    >>> majority_mask(np.array([[[1, 1]], [[1, 0]], [[0, 0]]], bool))
    array([[ True, False]])
    """
    masks = np.asarray(masks, bool)
    return 2 * masks.sum(0) > len(masks)


# -- propagating a mark ----------------------------------------------------------------------------

def evidence_features(net: torch.nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """The evidence layer's pre-activations (the last convolution's output before its ReLU) of the
    posterior mean network: N x C x u x v."""
    plain = explained_network(net, "mean")
    found = []
    hook = plain.evidence_layer.register_forward_hook(lambda module, inputs, output: found.append(output.detach()))
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                plain(images[start:start + batch])
    finally:
        hook.remove()
    return torch.cat(found)


def cell_centres(net: torch.nn.Module, image_shape, probe: int = 3) -> tuple[tuple[float, float], ...]:
    """Where the evidence layer's cells look: ``((a_y, b_y), (a_x, b_x))`` with cell (i, j) centred
    on pixel (a_y + b_y i, a_x + b_x j). Probed with a ``probe`` x ``probe`` square of ones on a
    zero image (C x H x W ``image_shape``) at every place along the diagonal. The step b is the
    network's stride: the smallest move of the square that moves its features by exactly one cell
    (convolutions and pools are translation-equivariant; a relative error under 1%); the offset a
    is the median over the square's places of its centre minus b × the centre of the cells whose
    features change (weighted by how much), edge cells left out. A network without such a stride
    gets the proportional grid (the cell's share of the image).

    >>> net = torch.nn.Sequential(); net.add_module("evidence_layer", torch.nn.Conv2d(1, 1, 5))
    >>> _ = torch.nn.init.ones_(net.evidence_layer.weight)
    >>> [tuple(round(v, 2) for v in axis) for axis in cell_centres(net, (1, 12, 12))]   # valid 5 x 5: +2 px
    [(2.0, 1.0), (2.0, 1.0)]
    """
    channels, height, width = image_shape
    side = min(height, width) - probe + 1
    probes = torch.zeros(side + 1, channels, height, width)
    for p in range(side):
        probes[p + 1, :, p:p + probe, p:p + probe] = 1.0
    features = evidence_features(net, probes)
    moved = (features[1:] - features[:1]).numpy()                                # side x C x u x v
    u, v = moved.shape[2:]
    stride = None
    for step in range(1, side // 2 + 1):
        before, after = moved[:side - step, :, :-1, :-1], moved[step:, :, 1:, 1:]
        scale = np.abs(before).sum()
        if scale > 0 and np.abs(after - before).sum() < 0.01 * scale:
            stride = step
            break
    change = np.linalg.norm(moved, axis=1)
    weight = change.reshape(side, -1).sum(1)
    seen = weight > 0
    centre = np.arange(side) + (probe - 1) / 2
    fits = []
    for cells, n, size in (((change.sum(2) * np.arange(u)).sum(1), u, height),
                           ((change.sum(1) * np.arange(v)).sum(1), v, width)):
        cells = cells / np.where(seen, weight, 1)
        inner = seen & (cells > 0.5) & (cells < n - 1.5)   # the edge cells also answer for squares beyond them
        if stride is None or not inner.any():
            fits.append(((size / n - 1) / 2, size / n))
        else:
            fits.append((float(np.median(centre[inner] - stride * cells[inner])), float(stride)))
    return tuple(fits)


def _proportional(cell_shape, image_shape):
    return tuple(((size / n - 1) / 2, size / n) for n, size in zip(cell_shape, image_shape))


def _cell_of_pixels(image_shape, cell_shape, centres) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel row and column, the index of the cell whose centre is nearest."""
    return tuple(np.clip(np.round((np.arange(size) - a) / b), 0, n - 1).astype(int)
                 for size, n, (a, b) in zip(image_shape, cell_shape, centres))


def pixels_to_cells(mask, cell_shape, centres=None) -> np.ndarray:
    """The cells whose centre lies on a marked pixel (at least the cell nearest the mark's centre).

    >>> pixels_to_cells(np.eye(4, dtype=bool), (2, 2)).astype(int)
    array([[1, 0],
           [0, 1]])
    """
    mask = np.asarray(mask, bool)
    centres = _proportional(cell_shape, mask.shape) if centres is None else centres
    at = [np.clip(np.round(a + b * np.arange(n)), 0, size - 1).astype(int)
          for n, size, (a, b) in zip(cell_shape, mask.shape, centres)]
    cells = mask[np.ix_(*at)]
    if not cells.any() and mask.any():
        rows, cols = _cell_of_pixels(mask.shape, cell_shape, centres)
        y, x = np.argwhere(mask).mean(0).round().astype(int)
        cells[rows[y], cols[x]] = True
    return cells


def cells_to_pixels(cells, shape, centres=None) -> np.ndarray:
    """A u x v cell mask spread to H x W pixels: each pixel takes the cell whose centre is
    nearest (``centres`` from :func:`cell_centres`; default the proportional grid).

    >>> cells_to_pixels(np.array([[True, False]]), (2, 4)).astype(int)
    array([[1, 1, 0, 0],
           [1, 1, 0, 0]])
    """
    cells = np.asarray(cells, bool)
    centres = _proportional(cells.shape, shape) if centres is None else centres
    rows, cols = _cell_of_pixels(shape, cells.shape, centres)
    return cells[np.ix_(rows, cols)]


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def similar_cells(source: torch.Tensor, marked, targets: torch.Tensor, center: Optional[torch.Tensor] = None
                  ) -> torch.Tensor:
    """N x u x v: per cell of each target, the highest cosine similarity of its feature vector with
    the feature vectors of the ``marked`` cells (u x v bool) of ``source`` (C x u x v), all minus
    ``center`` (C; default the targets' mean cell).

    >>> f = torch.zeros(2, 3, 1, 2); f[0, :, 0, 0] = torch.tensor([1., 0, 0]); f[1, :, 0, 1] = torch.tensor([1., 0, 0])
    >>> similar_cells(f[0], np.array([[True, False]]), f, center=torch.zeros(3))
    tensor([[[1., 0.]],
    <BLANKLINE>
            [[0., 1.]]])
    """
    marked = torch.as_tensor(np.asarray(marked, bool))
    if marked.shape != source.shape[1:] or not marked.any():
        raise DiscoveryError(f"the marked cells must be a non-empty {tuple(source.shape[1:])} mask of the evidence "
                             f"layer, got {tuple(marked.shape)} with {int(marked.sum())} cells")
    center = targets.mean(dim=(0, 2, 3)) if center is None else center
    prototypes = _unit(source.permute(1, 2, 0)[marked] - center)                 # m x C
    cells = _unit(targets.permute(0, 2, 3, 1) - center)                          # N x u x v x C
    return (cells @ prototypes.T).amax(-1)


def propagate_place(mask, maps, indices) -> list[tuple]:
    """The same ``mask`` on every image: ``(index, mask, "place", score, {})`` with score = the
    share of the image's map inside the mask."""
    mask = np.asarray(mask, bool)
    unit = _normalized(_maps(maps))
    return [(int(i), mask, "place", float(unit[r][mask].sum()), {}) for r, i in enumerate(indices)]


def _image(image) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64)
    return a[..., None] if a.ndim == 2 else a


def propagate_pixels(mask, source, images, indices, threshold: float = PIXEL_THRESHOLD, pad: int = PAD
                     ) -> list[tuple]:
    """"Mark once, find everywhere" in pixels: the region ``mask`` marks on the image ``source``
    (H x W x C or H x W) found again in ``images`` (N x H x W x C, or a sequence, or a function of
    the index) by normalized cross-correlation (module docstring): ``(index, mask, "pixels",
    score, {"threshold": ...})`` for each image where it reaches ``threshold``. Each connected
    piece of the mark (four corner squares, two patches) is a template of its own, found wherever
    it is, so a mark of several things finds each of them, in any arrangement; a piece smaller than
    ``1 / STRAY_FRACTION`` of the largest (a stray stroke of the brush) is not searched for.

    >>> images = np.zeros((2, 12, 12)); images[0, 1:4, 1:4] = 0.8; images[1, 7:10, 4:7] = 0.3
    >>> found = propagate_pixels(images[0] > 0, images[0], images, [10, 11])
    >>> [(i, np.argwhere(m).min(0).tolist(), round(s, 2)) for i, m, _, s, _ in found]
    [(10, [1, 1], 1.0), (11, [7, 4], 1.0)]
    """
    if not -1 <= threshold <= 1:
        raise DiscoveryError(f"the correlation threshold lies in [-1, 1], got {threshold}")
    mask, source = np.asarray(mask, bool), _image(source)
    if mask.shape != source.shape[:2] or not mask.any():
        raise DiscoveryError(f"the mark must be a non-empty mask of the image's size {source.shape[:2]}, "
                             f"got {mask.shape} with {int(mask.sum())} pixels")
    labels = label(mask, connectivity=2)
    sizes = np.bincount(labels.ravel())[1:]
    searched = [k + 1 for k in np.flatnonzero(sizes * STRAY_FRACTION >= sizes.max())]   # not the stray specks
    pieces = [p for p in (_template(labels == k, source, pad) for k in searched) if p is not None]
    if not pieces:
        raise DiscoveryError("the marked region and its surroundings are one flat colour; mark a region that "
                             "differs from what is around it, or propagate by place")
    found = []
    for k, index in enumerate(indices):
        image = _image(images(index) if callable(images) else images[k])
        marked, score = np.zeros(mask.shape, bool), -1.0
        for template, offsets in pieces:
            correlation = match_template(image, template, pad_input=True, mode="constant")[..., image.shape[2] // 2]
            places = peak_local_max(correlation, min_distance=max(1, min(template.shape[:2]) // 2),
                                    threshold_abs=threshold, exclude_border=False)
            if not len(places):
                continue
            at = (places[:, None, :] + offsets[None]).reshape(-1, 2)
            at = at[(at >= 0).all(1) & (at < mask.shape).all(1)]
            marked[at[:, 0], at[:, 1]] = True
            score = max(score, float(correlation.max()))
        if marked.any():
            found.append((int(index), marked, "pixels", score, {"threshold": float(threshold)}))
    return found


def _template(piece: np.ndarray, source: np.ndarray, pad: int):
    """The template of one connected piece of a mark and the piece's pixels as offsets from the
    template's centre: the source's pixels in the piece's bounding box when they differ (a coloured
    or textured patch: its surroundings, which change from image to image, would only blur the
    match), else widened by ``pad`` pixels of its surroundings (a flat square is found by its
    edges); None when even that is one flat value."""
    rows, cols = np.nonzero(piece)
    for widen in (0, pad):
        top, left = max(0, rows.min() - widen), max(0, cols.min() - widen)
        bottom, right = min(piece.shape[0], rows.max() + 1 + widen), min(piece.shape[1], cols.max() + 1 + widen)
        template = source[top:bottom, left:right]
        if np.ptp(template) > 0:
            centre = np.array(template.shape[:2]) // 2
            return template, np.argwhere(piece[top:bottom, left:right]) - centre
    return None


def propagate_features(mask, source: torch.Tensor, features: torch.Tensor, indices, centres=None,
                       threshold: float = FEATURE_THRESHOLD, center: Optional[torch.Tensor] = None) -> list[tuple]:
    """"Mark once, find everywhere" in the network's eyes: the pixels ``mask`` marks on the image
    whose evidence-layer features are ``source`` (C x u x v), found again in the images
    ``indices`` (features N x C x u x v; ``centres`` from :func:`cell_centres`, default the
    proportional grid): ``(index, mask, "features", score, {"threshold": ...})`` for each image
    with a cell of similarity ≥ ``threshold`` (:func:`similar_cells`); its mask is the marked
    pixels moved with each matched cell's offset from its prototype cell; score = its highest
    similarity."""
    if not -1 <= threshold <= 1:
        raise DiscoveryError(f"the similarity threshold is a cosine in [-1, 1], got {threshold}")
    mask = np.asarray(mask, bool)
    cell_shape = tuple(source.shape[1:])
    centres = _proportional(cell_shape, mask.shape) if centres is None else centres
    marked = pixels_to_cells(mask, cell_shape, centres)
    center = features.mean(dim=(0, 2, 3)) if center is None else center
    prototypes = _unit(source.permute(1, 2, 0)[torch.as_tensor(marked)] - center)    # m x C
    prototype_cells = np.argwhere(marked)
    # the marked pixels, each with the prototype cell nearest to it
    rows, cols = _cell_of_pixels(mask.shape, cell_shape, centres)
    pixels = np.argwhere(mask)
    nearest = np.argmin(np.abs(prototype_cells[None, :, 0] - rows[pixels[:, 0], None])
                        + np.abs(prototype_cells[None, :, 1] - cols[pixels[:, 1], None]), axis=1)
    step = np.array([centres[0][1], centres[1][1]])
    found = []
    for r, index in enumerate(indices):
        similarity = _unit(features[r].permute(1, 2, 0) - center) @ prototypes.T      # u x v x m
        best, which = similarity.max(-1)
        matched = np.argwhere((best >= threshold).numpy())
        if not len(matched):
            continue
        marked_here = np.zeros(mask.shape, bool)
        for cell in matched:
            k = int(which[tuple(cell)])
            at = pixels[nearest == k] + np.round((cell - prototype_cells[k]) * step).astype(int)
            at = at[(at >= 0).all(1) & (at < mask.shape).all(1)]
            marked_here[at[:, 0], at[:, 1]] = True
        if marked_here.any():
            found.append((int(index), marked_here, "features", float(best.max()), {"threshold": float(threshold)}))
    return found


def map_regions(mean_map, image: Optional[np.ndarray] = None, level: float = 0.2, max_regions: int = 5
                ) -> tuple[np.ndarray, list[int]]:
    """Regions to click on a group's mean map: (H x W segment labels, the proposed segment ids).
    The proposals are the connected components of the smoothed map (Gaussian, 1 px) at
    ≥ ``level`` × its maximum, strongest (by mass) first, at most ``max_regions``; the rest of the
    image is cut into superpixels (SLIC on ``image``, H x W x C, about 7 x 7 of them) so that
    any part can still be clicked.

    >>> m = np.zeros((28, 28)); m[:4, :4] = 1.0; m[-4:, -4:] = 0.5
    >>> segments, ids = map_regions(m)
    >>> len(ids), bool((segments[:4, :4] == ids[0]).all()), bool((segments[-4:, -4:] == ids[1]).all())
    (2, True, True)
    """
    heat = np.asarray(mean_map, dtype=np.float64)
    smooth = gaussian(heat, sigma=1.0) if heat.any() else heat
    components = label(smooth >= level * smooth.max(), connectivity=2) if smooth.any() else np.zeros(heat.shape, int)
    masses = [(heat[components == c].sum(), c) for c in range(1, components.max() + 1)]
    strongest = [c for _, c in sorted(masses, key=lambda mc: (-mc[0], mc[1]))[:max_regions]]
    image = np.zeros(heat.shape + (1,)) if image is None else np.asarray(image, dtype=np.float64)
    superpixels = slic(image, n_segments=49, compactness=0.1 if image.shape[-1] != 3 else 10, channel_axis=-1,
                       start_label=0, enforce_connectivity=True)
    segments = superpixels.astype(np.int64)
    ids = []
    for k, c in enumerate(strongest):
        segment = int(superpixels.max()) + 1 + k
        segments[components == c] = segment
        ids.append(segment)
    return segments, ids


# -- the pool's groups, for the page and the oracle ---------------------------------------------------

class Discovery:
    """The groups of a pool's explanations and what is needed to propagate a mark on them.

    ``load`` returns, when first needed (once, under a lock): ``indices`` (N dataset indices),
    ``maps`` (N x H x W explanations), ``predicted`` (N classes), ``features`` (N x C x u x v
    evidence-layer pre-activations, or None where propagation by features is not available) and,
    optionally, the cells' ``centres`` (:func:`cell_centres`).
    ``image(index)`` gives an image (H x W x C in [0, 1]); ``class_names`` name the classes.
    :meth:`~pyro_ebnn.annotate.task.AnnotationTask.discovery` builds the one of an annotation task."""

    def __init__(self, load: Callable[[], tuple], image: Callable[[int], np.ndarray], class_names: Sequence[str],
                 max_groups: int = MAX_GROUPS, seed: int = 0):
        self._load, self.image, self.class_names = load, image, [str(c) for c in class_names]
        self.max_groups, self.seed = max_groups, seed
        self._lock = threading.RLock()
        self._data = None

    def _loaded(self):
        with self._lock:
            if self._data is None:
                indices, maps, predicted, features, *centres = self._load()
                indices = np.asarray(indices).astype(np.int64)
                groups = discover(maps, predicted, indices, self.max_groups, self.seed)
                self._data = {"indices": indices, "maps": _maps(maps), "predicted": np.asarray(predicted),
                              "features": features, "centres": centres[0] if centres else None, "groups": groups,
                              "row": {int(i): r for r, i in enumerate(indices)},
                              "by_key": {g.key: g for g in groups}}
            return self._data

    @property
    def indices(self) -> np.ndarray:
        """The pool's dataset indices, in the order of :attr:`maps`."""
        return self._loaded()["indices"]

    @property
    def has_features(self) -> bool:
        """Whether the evidence-layer features are there (the ``features`` rule)."""
        return self._loaded()["features"] is not None

    @property
    def maps(self) -> np.ndarray:
        """N x H x W: the pool's explanation maps."""
        return self._loaded()["maps"]

    @property
    def predicted(self) -> np.ndarray:
        """N: the pool's predicted classes."""
        return self._loaded()["predicted"]

    def groups(self) -> list[Group]:
        """The groups, best first."""
        return self._loaded()["groups"]

    def group(self, key: str) -> Optional[Group]:
        return self._loaded()["by_key"].get(key)

    def map(self, index: int) -> np.ndarray:
        """The explanation map of pool image ``index``."""
        data = self._loaded()
        return data["maps"][data["row"][int(index)]]

    def mean_image(self, group: Group) -> np.ndarray:
        """The mean of the group's most typical images (H x W x C): where a shared mark shows."""
        return np.mean([np.asarray(self.image(i), dtype=np.float64) for i in group.shown()], axis=0)

    def propagate(self, group: Group, mask, rule: str, source: Optional[int] = None,
                  threshold: Optional[float] = None) -> list[tuple]:
        """The masks a mark on ``group`` propagates to by ``rule`` (module docstring), as
        :meth:`~pyro_ebnn.data.store.FeedbackStore.record_propagated` takes them, each with the
        group's key and the source image in its detail. ``source``: the member image the mark was
        drawn on (None: the mean map; ``pixels`` and ``features`` then read the representative);
        ``threshold``: the rule's (default ``PIXEL_THRESHOLD`` or ``FEATURE_THRESHOLD``). ``place``
        reaches the group's members, the others every pool image."""
        data = self._loaded()
        mask = np.asarray(mask, bool)
        if source is not None and int(source) not in group.members:
            raise DiscoveryError(f"image {source} is not a member of group {group.key}; mark on the mean map or on "
                                 "one of the group's images")
        origin = group.representative if source is None else int(source)
        if rule == "place":
            rows = [data["row"][i] for i in group.members]
            found = propagate_place(mask, data["maps"][rows], group.members)
        elif rule == "pixels":
            found = propagate_pixels(mask, self.image(origin), self.image, data["indices"],
                                     PIXEL_THRESHOLD if threshold is None else threshold)
        elif rule == "features":
            if data["features"] is None:
                raise DiscoveryError("this page has no evidence-layer features to compare; propagate by place or pixels")
            features = data["features"]
            found = propagate_features(mask, features[data["row"][origin]], features, data["indices"], data["centres"],
                                       FEATURE_THRESHOLD if threshold is None else threshold)
        else:
            raise DiscoveryError(f"unknown propagation rule {rule!r}; use one of {', '.join(RULES)}")
        return [(i, m, r, s, dict(d, group=group.key, source=source)) for i, m, r, s, d in found]

"""Explanation feedback as evidence ([000] Sec. 4, Eq. 4; [001] Sec. 3.3, Eq. 12-15).

A feedback mask E (1 = "irrelevant, do not look here") is down-sized to the spatial size of the
last convolution, broadcast over its channels, and the pre-activations in those cells are
*observed* to be zero:

    log P(y, a_F = 0 | x) = log P(y | a_F = 0, x)  +  lambda * log N(0; mu_U, sigma_U^2)
                            \\_ correct prediction _/    \\______ correct explanation ______/
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.distributions import constraints
import pyro
import pyro.distributions as dist
from pyro import poutine

__all__ = ["PREACTIVATION_SITE", "EVIDENCE_SITE", "CHANNELS", "HOLES", "downsize_mask", "attending_channels",
           "shared_holes", "preactivation_distribution", "MaskedNormal", "observe_irrelevant_activations", "FeedbackEvidence",
           "reaches_output"]

#: Pyro site names; they say what they hold.
PREACTIVATION_SITE = "last_conv.preactivation"
EVIDENCE_SITE = "feedback.irrelevant_preactivation"
#: which channels of a marked cell are observed: all of them ([000] Eq. 4) or those attending to the marked region ([000] Sec. 6)
CHANNELS = ("all", "attending")
#: which zeros the head sees: each image's own observed cells ([000] Eq. 4), those shared across the
#: batch, or none (the head sees the sampled pre-activations; the evidence alone moves them)
HOLES = ("own", "shared", "none")


def downsize_mask(mask: torch.Tensor, size: tuple[int, int], pool: str = "max") -> torch.Tensor:
    """J = f(E): N x 1 x H x W binary mask -> N x 1 x u x v boolean cells ([000] Fig. 2).

    ``pool="max"``: a cell is irrelevant if any of its pixels is (adaptive max pool, [000]).
    ``pool="min"``: only cells whose pixels are all irrelevant (1 - maxpool(1 - E)), for masks that
    cover most of the image such as backgrounds.
    Both over the bins of an adaptive pool, computed as "the bin's mean is > 0" (of E, or of 1 - E
    for "min"), which for a binary mask is the same as its maximum and does not search for indices:
    0.31 against 0.38 ms with the adaptive max pool for LeNet's 128 x 1 x 28 x 28 -> 11 x 11 on 1
    CPU thread.
    A mask that is not boolean must hold only 0 and 1 (a soft mask would change what "any pixel"
    means); otherwise ``ValueError``.

    >>> mask = torch.zeros(1, 1, 4, 4); mask[..., 0, 0] = 1
    >>> downsize_mask(mask, (2, 2)).flatten().tolist(), downsize_mask(mask, (2, 2), "min").flatten().tolist()
    ([True, False, False, False], [False, False, False, False])
    """
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise ValueError("a feedback mask must be binary (0 = relevant, 1 = irrelevant) or boolean; "
                         "threshold a soft mask first, e.g. mask > 0.5")
    m = mask.float()
    if pool == "max":
        return F.adaptive_avg_pool2d(m, size) > 0
    if pool == "min":
        return F.adaptive_avg_pool2d(1.0 - m, size) == 0
    raise ValueError(f"unknown mask pool {pool!r}; use 'max' or 'min'")


def attending_channels(mean: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Bool ... x C x 1 x 1: the channels that attend to the marked cells of each image ([000] Sec. 6,
    channel-selective evidence). A channel attends to them when it puts more of its positive
    activation there than a channel spread evenly over the map would:

        share_c = sum_{marked} relu(mu_c) / sum_{all cells} relu(mu_c)  >  marked cells / all cells.

    ``mean``: mu_U, ... x C x u x v; ``cells``: the marked cells, broadcastable to it. The choice is
    not differentiated (it selects which pre-activations are observed, like the mask itself).

    >>> mean = torch.zeros(1, 2, 2, 2)
    >>> mean[0, 0, 0, 0], mean[0, 0, 1, 1] = 3.0, 1.0        # channel 0: 3/4 of its mass on the marked cell
    >>> mean[0, 1] = 1.0                                      # channel 1: spread evenly (1/4 = the cell's share)
    >>> cells = torch.zeros(1, 1, 2, 2, dtype=torch.bool); cells[0, 0, 0, 0] = True
    >>> attending_channels(mean, cells).flatten().tolist()
    [True, False]
    """
    mass = mean.detach().clamp(min=0)
    cells = cells.expand_as(mass)
    inside = (mass * cells).sum((-2, -1), keepdim=True)
    share = inside / mass.sum((-2, -1), keepdim=True).clamp(min=torch.finfo(mass.dtype).tiny)
    area = cells.sum((-2, -1), keepdim=True) / (mass.shape[-2] * mass.shape[-1])
    return share > area


def shared_holes(irrelevant: torch.Tensor) -> torch.Tensor:
    """The cells the head sees as zero when holes are shared: an image's own observed cells, and for
    an image with none, those of the batch's marked images in turn (the first unmarked image takes
    the first marked image's cells, the second the second's, ...).

    Under [000] Eq. (4) the head sees a_F = 0 on the marked cells. When masks come with one class
    more than with the others, as a shortcut's do, a hole in the last convolution tells the class
    by itself, and the head learns it instead of the images' content. Shared holes come with every
    class alike; only an image's own are observed (the evidence is unchanged). ``irrelevant``:
    ... x B x C x u x v (B the batch); tensor operations only, nothing read back to the host.

    >>> cells = torch.zeros(3, 1, 2, 2, dtype=torch.bool); cells[1, 0, 0, 1] = True   # image 1 is marked
    >>> shared_holes(cells)[:, 0].flatten(1).int().tolist()
    [[0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]]
    """
    batch = irrelevant.shape[-4]
    marked = irrelevant.flatten(-3).any(-1).reshape(-1, batch).any(0)  # over the particles too
    first = torch.argsort((~marked).to(torch.uint8), stable=True)  # the marked images, in batch order, first
    turn = (torch.cumsum(~marked, 0) - 1) % marked.sum().clamp(min=1)
    donor = torch.where(marked, torch.arange(batch, device=marked.device), first[turn])
    return irrelevant.index_select(-4, donor)


def preactivation_distribution(mean: torch.Tensor, std: torch.Tensor) -> dist.Distribution:
    """The LRT Gaussian N(mu_U, sigma_U^2) of the last-conv pre-activation, one event per image.

    Model and guide give this site the same distribution, so its ELBO term log p(a) - log q(a) is
    identically zero (value and gradient). ``.mask(False)`` states that, and Pyro skips computing
    both densities; the sample itself is what the head sees (and what Predictive returns).
    """
    return dist.Normal(mean, std).to_event(3).mask(False)


class MaskedNormal(dist.TorchDistribution):
    """``Normal(loc, scale).mask(mask).to_event(3)``, with the density evaluated only where ``mask``
    is True (a few percent of the cells for decoy squares) instead of everywhere and then zeroed.
    A mask expanded over the channels (stride 0 there, as :meth:`FeedbackEvidence.irrelevant_cells`
    makes it) is searched once per cell, not once per channel, and the cells' channels are read in
    place (no transposed copy, so the gradient is as contiguous as loc and scale). Same values and
    gradients as the generic version (tests check it); the evidence on LeNet's 128 x 16 x 11 x 11
    pre-activations with decoy masks adds 1.1 ms to a sample's forward and backward pass on 1 CPU
    thread, validation off (1.7 ms reading the channels transposed, 2.7 ms computing the density
    of every entry and masking it). Off the CPU, and under ``torch.compile``, it computes the
    density of every entry and keeps the marked ones (:meth:`dense_log_prob`): ``nonzero`` reads
    its count back to the host, which stalls a GPU every step and which neither a CUDA graph nor
    a compiled graph can hold.

    >>> mask = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    >>> mask[0, 0, 0, 0] = True                          # one cell, all three channels
    >>> d = MaskedNormal(torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2), mask.expand(1, 3, 2, 2))
    >>> bool(torch.isclose(d.log_prob(torch.zeros(1, 3, 2, 2)), 3 * dist.Normal(0.0, 1.0).log_prob(torch.tensor(0.0))))
    True
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, mask, event_dim: int = 3, validate_args=None):
        self.loc, self.scale = loc, scale
        self.mask = mask.expand(loc.shape)
        shape = loc.shape
        super().__init__(shape[: len(shape) - event_dim], shape[len(shape) - event_dim:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.event_shape
        return MaskedNormal(self.loc.expand(shape), self.scale.expand(shape), self.mask.expand(shape),
                            len(self.event_shape))

    def rsample(self, sample_shape=torch.Size()):
        return dist.Normal(self.loc, self.scale).rsample(sample_shape)

    def log_prob(self, value):
        if self.loc.device.type != "cpu" or torch.compiler.is_compiling():
            return self.dense_log_prob(value)
        shape = torch.broadcast_shapes(value.shape, self.loc.shape)
        first = len(shape) - len(self.event_shape)  # the channel dimension
        mask = self.mask.expand(shape)
        if mask.stride(first) == 0:  # the mask's entries of channel 0 stand for all channels
            found = mask.select(first, 0).nonzero(as_tuple=True)
            where = found[:first] + (slice(None),) + found[first:]  # all channels of every found cell
            channels = -1 if first else 0  # where the channels are in what ``where`` picks
        else:
            where = found = mask.nonzero(as_tuple=True)
            channels = None
        loc, scale = self.loc.expand(shape)[where], self.scale.expand(shape)[where]
        z = (value.expand(shape)[where] - loc) / scale
        lp = z.square().mul(-0.5) - scale.log() - 0.5 * math.log(2 * math.pi)  # log N(value; loc, scale^2)
        if channels is not None:
            lp = lp.sum(channels)
        batch = shape[:first]
        row = torch.zeros_like(found[0])
        for index, size in zip(found[:first], batch):  # the flat batch index of every found entry
            row = row * size + index
        return lp.new_zeros(batch.numel()).index_add(0, row, lp).reshape(batch)

    def dense_log_prob(self, value):
        """:meth:`log_prob` from the density of every entry, kept where ``mask`` is True: the same
        values and gradients (zero off the mask), with nothing read back to the host."""
        shape = torch.broadcast_shapes(value.shape, self.loc.shape)
        z = (value - self.loc) / self.scale
        lp = z.square().mul(-0.5) - self.scale.log() - 0.5 * math.log(2 * math.pi)
        lp = torch.where(self.mask.expand(shape), lp.expand(shape), 0.0)
        first = len(shape) - len(self.event_shape)
        return lp.reshape(shape[:first] + (-1,)).sum(-1)


def observe_irrelevant_activations(mean: torch.Tensor, std: torch.Tensor, irrelevant: torch.Tensor,
                                   lam: float, holes: torch.Tensor | None = None) -> torch.Tensor:
    """[000] Eq. (4) inside the data plate: condition a_F = 0 on the irrelevant cells.

    The irrelevant pre-activations are observed to be zero with weight ``lam`` (the "correct
    explanation" term, lambda * log N(0; mu_U, sigma_U^2)); the pre-activation stays a latent site
    with the LRT Gaussian as its guide. Returns the activation the next layers see: zeros on a_F,
    or on ``holes`` where given (:func:`shared_holes`; all False: the sample itself).
    """
    with poutine.scale(scale=lam):
        pyro.sample(EVIDENCE_SITE, MaskedNormal(mean, std, irrelevant), obs=mean.new_zeros(()).expand(mean.shape))
    a = pyro.sample(PREACTIVATION_SITE, preactivation_distribution(mean, std))
    if holes is not None:
        return a * ~holes
    return a * ~_per_cell(irrelevant)  # a_F = 0; a product: 0.5 against 1.3 ms for masked_fill (fwd + bwd)


def _per_cell(mask: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """``mask`` with size 1 along ``dim`` if it is expanded there (the same bit for every channel)."""
    return mask.narrow(dim, 0, 1) if mask.stride(dim) == 0 else mask


@dataclass
class FeedbackEvidence:
    """How a feedback mask becomes evidence on the last convolution.

    lam: weight of the explanation term (lambda << 1 in [000]; [001] uses 1).
    pool: "max" (any irrelevant pixel marks the cell) or "min" (all pixels must be irrelevant), both
        over the adaptive-pool bins as in [000]; or "receptive": every cell whose receptive field
        holds an irrelevant pixel (stricter than "max": it also silences the cells next to a decoy
        that still see part of it; an extension beyond the papers).
    gradient_filter: [001] Eq. (12): keep only the cells whose activation reaches the output, i.e.
        has a non-zero gradient of the summed logits (evaluated at the LRT mean).
    channels: "all" (every channel of a marked cell, [000] Eq. 4) or "attending" (only the channels
        that attend to the marked region, :func:`attending_channels`; [000] Sec. 6's proposal).
    holes: "own" (the head sees zeros on an image's own observed cells, [000] Eq. 4), "shared"
        (images without a mark see a marked image's zeros too, :func:`shared_holes`) or "none" (the
        head sees the sampled pre-activations everywhere: the observed zeros are a second draw of
        the same distribution, so the evidence moves the network but the head never sees a hole,
        and no zero in the last convolution can tell the class); extensions.
    """

    lam: float = 1.0
    pool: str = "max"
    gradient_filter: bool = False
    channels: str = "all"
    holes: str = "own"

    def __post_init__(self):
        if not (isinstance(self.lam, (int, float)) and self.lam > 0):
            raise ValueError(f"feedback weight lam must be > 0 (got {self.lam}); "
                             "to train without feedback use mode 'none'")
        if self.pool not in ("max", "min", "receptive"):
            raise ValueError(f"unknown mask pool {self.pool!r}; use 'max', 'min' or 'receptive'")
        if self.channels not in CHANNELS:
            raise ValueError(f"unknown evidence channels {self.channels!r}; use 'all' or 'attending'")
        if self.holes not in HOLES:
            raise ValueError(f"unknown evidence holes {self.holes!r}; use 'own', 'shared' or 'none'")

    def irrelevant_cells(self, mask: torch.Tensor, mean: torch.Tensor, net=None) -> torch.Tensor:
        """Boolean B x C x u x v: the pre-activations to condition on zero. ``net`` (a BayesianCNN)
        is needed for the receptive-field pool and the gradient filter."""
        if self.pool == "receptive" and net is None:
            raise ValueError("mask pool 'receptive' needs the network")
        cells = self.marked_cells(mask, tuple(mean.shape[-2:]), net).expand(mean.shape[-4:])
        if self.channels == "attending":
            cells = cells & attending_channels(mean, cells)
        if self.gradient_filter:
            if net is None:
                raise ValueError("the gradient filter needs the network")
            cells = cells & reaches_output(net.head_at, mean)
        return cells

    def marked_cells(self, mask: torch.Tensor, size, net=None) -> torch.Tensor:
        """Bool N x 1 x u x v: the cells of a ``size`` = (u, v) map that ``pool`` takes as marked."""
        return net.receptive_field_cells(mask) if self.pool == "receptive" else downsize_mask(mask, size, self.pool)

    def holes_seen(self, mask: torch.Tensor, net) -> torch.Tensor:
        """Bool N x 1 x u x v: the cells the head sees as zero for a batch of masks (N x 1 x H x W),
        per cell (over the channels); nothing for ``holes="none"``. For
        :func:`~pyro_ebnn.metrics.holes.hole_information`, before training."""
        cells = self.marked_cells(mask, tuple(net.evidence_shape[-2:]), net)
        if self.holes == "shared":
            return shared_holes(cells)
        return cells & (self.holes == "own")

    def __call__(self, mean, std, irrelevant):
        if self.holes == "shared":
            holes = shared_holes(irrelevant)
        elif self.holes == "none":
            holes = irrelevant.new_zeros((1,) * irrelevant.dim())
        else:
            holes = None
        return observe_irrelevant_activations(mean, std, irrelevant, self.lam, holes)


def reaches_output(head: Callable[[torch.Tensor], torch.Tensor], activation: torch.Tensor) -> torch.Tensor:
    """[001] Eq. (12): True where d(sum of logits)/d(activation) != 0 (through ReLU / max-pool)."""
    with torch.enable_grad():
        a = activation.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(head(a).sum(), a)
    return grad != 0

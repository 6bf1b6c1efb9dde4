"""Mean-field Gaussian layers evaluated with the local reparameterization trick (LRT).

Each layer owns the variational parameters of its weights, q(w) = prod_i N(mu_i, sigma_i^2) with
sigma = softplus(rho), and never samples weights when it runs: it samples activations
(Kingma et al. 2015; [000] Sec. 2.2, [001] Ex. 1-2):

    linear:  gamma = z @ M + m_b,          delta = z^2 @ S^2 + s_b^2
    conv:    mu_U  = Z * M + m_b,          sigma_U^2 = Z^2 * S^2 + s_b^2
    sample:  U = mu_U + sigma_U * eps,     eps ~ N(0, 1)

Inputs may carry any number of leading sample dimensions (e.g. vectorized ELBO particles); they
are flattened into the batch for the convolution and restored afterwards.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

import pyro.distributions as dist

__all__ = ["VARIANCE_FLOOR", "BayesianLayer", "BayesianConv2d", "BayesianLinear", "run_lrt", "bayesian_layers",
           "shared_scales", "max_pool_2x2"]

#: Floor added to every activation variance so that sigma_U > 0 even for an all-zero input.
VARIANCE_FLOOR = 1e-8


class BayesianLayer(nn.Module):
    """Base class: variational parameters for ``weight`` and ``bias`` and the LRT moments."""

    def __init__(self, weight_shape, bias_shape, rho_init: float, fan_in: int):
        super().__init__()
        self.weight_loc = nn.Parameter(torch.empty(weight_shape))
        nn.init.kaiming_uniform_(self.weight_loc, nonlinearity="relu")
        bound = 1.0 / math.sqrt(fan_in)
        self.bias_loc = nn.Parameter(torch.empty(bias_shape).uniform_(-bound, bound))
        self.weight_rho = nn.Parameter(torch.full(weight_shape, float(rho_init)))
        self.bias_rho = nn.Parameter(torch.full(bias_shape, float(rho_init)))
        self._shared = None  # sigma of weight and bias while a shared_scales block is open

    # -- the variational posterior -------------------------------------------------------------
    def scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """sigma = softplus(rho) of the weight and of the bias; once per :func:`shared_scales` block."""
        if self._shared is None:
            return F.softplus(self.weight_rho), F.softplus(self.bias_rho)
        if not self._shared:
            self._shared.extend((F.softplus(self.weight_rho), F.softplus(self.bias_rho)))
        return self._shared[0], self._shared[1]

    @property
    def weight_scale(self) -> torch.Tensor:
        return self.scales()[0]

    @property
    def bias_scale(self) -> torch.Tensor:
        return self.scales()[1]

    def posterior(self) -> dict[str, dist.Distribution]:
        """q(w) for this layer's parameters, keyed by the parameter name ('weight', 'bias')."""
        weight_scale, bias_scale = self.scales()
        return {
            "weight": dist.Normal(self.weight_loc, weight_scale).to_event(self.weight_loc.dim()),
            "bias": dist.Normal(self.bias_loc, bias_scale).to_event(1),
        }

    def shapes(self) -> dict[str, torch.Size]:
        return {"weight": self.weight_loc.shape, "bias": self.bias_loc.shape}

    # -- the local reparameterization trick ----------------------------------------------------
    def _affine(self, z, weight, bias):  # pragma: no cover - abstract
        raise NotImplementedError

    _event_dims = 1

    def moments(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the pre-activation under q(w), given the input ``z``.

        Measured and not kept (LeNet, 1 CPU thread): one grouped convolution over [z, z^2] for mean
        and variance (conv1 9.8 against 9.7 ms, conv2 10.6 against 7.5 ms fwd + bwd), im2col with
        the patches shared by mean and variance (5.5 against 3.4 ms for conv1), channels-last
        (its max pool with the layout conversions 6.9 against 4.1 ms fwd + bwd), torch.compile of
        this function (91 s to compile, 5% faster)."""
        k = self._event_dims
        lead = z.shape[:-k]
        flat = z.reshape((-1,) + z.shape[-k:])
        weight_scale, bias_scale = self.scales()
        mean = self._affine(flat, self.weight_loc, self.bias_loc)
        var = self._affine(flat.square(), weight_scale.square(), bias_scale.square())
        std = var.add_(VARIANCE_FLOOR).sqrt_()  # in place (no autograd node keeps var): 3% of a step
        out = mean.shape[1:]
        return mean.reshape(lead + out), std.reshape(lead + out)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """The pre-activation of the posterior-mean weights (the mean of the LRT Gaussian)."""
        k = self._event_dims
        out = self._affine(z.reshape((-1,) + z.shape[-k:]), self.weight_loc, self.bias_loc)
        return out.reshape(z.shape[:-k] + out.shape[1:])

    def forward(self, z: torch.Tensor, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """One LRT sample of the pre-activation (its mean in eval mode)."""
        if not self.training:
            return self.mean(z)
        mean, std = self.moments(z)
        eps = torch.randn(sample_shape + mean.shape, device=mean.device, dtype=mean.dtype)
        return torch.addcmul(mean, std, eps)  # mean + std * eps; one op: the predictive 5% faster


class BayesianConv2d(BayesianLayer):
    _event_dims = 3

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, rho_init: float = -2.0):
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        super().__init__(shape, (out_channels,), rho_init, in_channels * kernel_size ** 2)
        self.stride, self.padding = stride, padding

    def _affine(self, z, weight, bias):
        return F.conv2d(z, weight, bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight_loc.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}"


class BayesianLinear(BayesianLayer):
    _event_dims = 1

    def __init__(self, in_features: int, out_features: int, rho_init: float = -2.0):
        super().__init__((out_features, in_features), (out_features,), rho_init, in_features)

    def _affine(self, z, weight, bias):
        return F.linear(z, weight, bias)

    def extra_repr(self) -> str:
        o, i = self.weight_loc.shape
        return f"in_features={i}, out_features={o}"


@contextmanager
def shared_scales(module: nn.Module):
    """Inside the block, every Bayesian layer of ``module`` evaluates sigma = softplus(rho) once and
    reuses it: one training step needs sigma for q(w) (the guide's weight sites) and again for the
    LRT variance; sharing it saves 10 of LeNet's 20 softplus per step (0.6 ms on 1 CPU thread).
    Open it around one loss evaluation, not across parameter updates.

    >>> layer = BayesianLinear(3, 2)
    >>> with shared_scales(layer):
    ...     layer.weight_scale is layer.posterior()["weight"].base_dist.scale
    True
    >>> layer.weight_scale is layer.weight_scale      # outside: a fresh softplus each time
    False
    """
    layers = [m for m in module.modules() if isinstance(m, BayesianLayer)]
    for layer in layers:
        layer._shared = []
    try:
        yield module
    finally:
        for layer in layers:
            layer._shared = None


def run_lrt(module: nn.Module, z: torch.Tensor, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
    """Run a (possibly nested) stack of modules whose Bayesian layers sample activations.

    Deterministic modules (ReLU, pooling, flatten) see the leading sample dimensions folded into
    the batch. ``sample_shape`` adds independent draws at the first Bayesian layer only.
    """
    if isinstance(module, BayesianLayer):
        return module(z, sample_shape)
    if hasattr(module, "run_lrt"):  # a block of its own (pyro_ebnn.bnn.backbones.ResidualBlock)
        return module.run_lrt(z, sample_shape)
    if isinstance(module, nn.Sequential):
        for child in module:
            z = run_lrt(child, z, sample_shape)
            if isinstance(child, BayesianLayer) or hasattr(child, "run_lrt"):
                sample_shape = torch.Size()
        return z
    if _is_pool_2x2(module):
        return max_pool_2x2(z)
    # plain module: fold leading sample dims into the batch
    lead = z.dim() - _input_rank(module, z)
    if lead <= 0:
        return module(z)
    out = module(z.flatten(0, lead))
    return out.reshape(z.shape[: lead + 1] + out.shape[1:])


def _windows(z: torch.Tensor) -> list[torch.Tensor]:
    """The four strided views of the 2 x 2 windows of ``z``'s last two dimensions, in the order
    F.max_pool2d scans a window: (0, 0), (0, 1), (1, 0), (1, 1); an odd last row or column is left out."""
    h, w = z.shape[-2] // 2 * 2, z.shape[-1] // 2 * 2
    return [z[..., i:h:2, j:w:2] for i in (0, 1) for j in (0, 1)]


def _window_max(v00, v01, v10, v11):
    """(maximum of the top row, of the bottom row, of the window) of the four views."""
    top, bottom = torch.maximum(v00, v01), torch.maximum(v10, v11)
    return top, bottom, torch.maximum(top, bottom)


_CORNERS: dict = {}


def _corners(height: int, width: int, device) -> torch.Tensor:
    """The flat index (row * width + column) of the top-left pixel of every 2 x 2 window."""
    key = (height, width, device)
    if key not in _CORNERS:
        rows = torch.arange(height // 2, device=device) * (2 * width)
        cols = torch.arange(width // 2, device=device) * 2
        _CORNERS[key] = rows[:, None] + cols[None, :]
    return _CORNERS[key]


class _MaxPool2x2(torch.autograd.Function):
    """``F.max_pool2d(z, 2)`` on an N x C x H x W tensor: the maximum of the four strided views, and
    the index of each window's first maximum (the one ``F.max_pool2d`` keeps) from three comparisons,
    for the backward pass of ``F.max_pool2d`` itself."""

    @staticmethod
    def forward(ctx, z):
        v00, v01, v10, v11 = _windows(z)
        top, bottom, out = _window_max(v00, v01, v10, v11)
        low = bottom > top  # the first maximum is in the bottom row only if the top row has none
        right = v01 > v00  # ... and in the right column only if the left one has none: in the top row,
        right.logical_xor_(low.logical_and((v11 > v10).logical_xor_(right)))  # or in the bottom row if low
        width = z.shape[-1]
        index = low.to(torch.int64).mul_(width).add_(right).add_(_corners(z.shape[-2], width, z.device))
        ctx.save_for_backward(z, index)
        return out

    @staticmethod
    def backward(ctx, grad):
        z, index = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, z, [2, 2], [2, 2], [0, 0], [1, 1], False, index)


def max_pool_2x2(z: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(z, 2)`` over the last two dimensions as the maximum of the four strided views of
    each 2 x 2 window: the same values and, with a gradient, the same gradient (all of it to the
    window's first maximum, by F.max_pool2d's own backward kernel). On the CPU it is the faster:
    F.max_pool2d's forward is slow there (LeNet's 128 x 6 x 26 x 26 activations, 1 thread: 1.0
    against 2.4 ms with the indices for the backward pass; 640 x 6 x 26 x 26 without: 1.2
    against 15 ms). :func:`run_lrt` runs every 2 x 2 max pool through it; a gradient through it
    on another device goes through F.max_pool2d. In a window that holds a NaN the output is NaN as
    F.max_pool2d's, but the gradient may go to another entry of the window (training stops on a
    NaN loss anyway).

    >>> z = torch.randn(3, 4, 11, 11, requires_grad=True)
    >>> torch.equal(max_pool_2x2(z), F.max_pool2d(z, 2))
    True
    """
    if not (torch.is_grad_enabled() and z.requires_grad):
        return _window_max(*_windows(z))[2]
    flat = z.flatten(0, z.dim() - 4) if z.dim() > 4 else z  # leading sample dimensions into the batch
    # measured on the CPU only; torch.compile makes its own kernel of F.max_pool2d (and cannot trace the Function)
    eager_cpu = z.device.type == "cpu" and not torch.compiler.is_compiling()
    out = _MaxPool2x2.apply(flat) if eager_cpu else F.max_pool2d(flat, 2)
    return out.unflatten(0, z.shape[:-3]) if z.dim() > 4 else out


def _is_pool_2x2(module: nn.Module) -> bool:
    """A max pool with 2 x 2 windows and stride 2 and nothing else (what :func:`max_pool_2x2` is)."""
    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    return (isinstance(module, nn.MaxPool2d) and pair(module.kernel_size) == (2, 2)
            and pair(module.stride or module.kernel_size) == (2, 2) and pair(module.padding) == (0, 0)
            and pair(module.dilation) == (1, 1) and not module.ceil_mode and not module.return_indices)


#: Plain modules that expect an N x C x H x W input (all others act elementwise).
_IMAGE_MODULES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                  nn.BatchNorm2d, nn.Flatten)


def _input_rank(module: nn.Module, z: torch.Tensor) -> int:
    """Rank (batch included) that a plain module expects."""
    return 4 if isinstance(module, _IMAGE_MODULES) else z.dim()


def bayesian_layers(module: nn.Module) -> dict[str, BayesianLayer]:
    """All Bayesian layers of a network in definition order, named like the papers' diagrams:
    conv1, conv2, ..., fc1, fc2, ... (these names prefix the weight sites)."""
    names, counts = {}, {"conv": 0, "fc": 0}
    for m in module.modules():
        if isinstance(m, BayesianLayer):
            kind = "conv" if isinstance(m, BayesianConv2d) else "fc"
            counts[kind] += 1
            names[f"{kind}{counts[kind]}"] = m
    return names

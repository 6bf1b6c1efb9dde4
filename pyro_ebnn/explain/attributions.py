"""Attributions of Bayesian (and point) networks with Captum.

The Bayesian layers never hold a weight tensor: they hold q(w) = N(weight_loc, softplus(weight_rho)^2)
and sample activations (LRT). Captum needs a plain differentiable ``forward``, so every explanation
is computed on :func:`pyro_ebnn.bnn.posterior_network`, a plain copy of the network that carries
one weight setting: the posterior mean (the network of ``net.eval(); net(x)``) or one draw
w ~ q(w). ``samples=S`` averages the (signed) attributions of S such draws: a Monte Carlo estimate
of the attribution's posterior expectation E_q[T(w)].

Methods ([001] Table 2; every one targets the logit of the **true label** y of each image):

  saliency   input gradient d logit_y / dx                            (captum Saliency, abs=False)
  deeplift   DeepLIFT (rescale rule) against a reference image: all zeros (black; default) or every
             pixel at the training images' mean                       (captum DeepLift)
  gradcam    Grad-CAM on the last convolution (``evidence_layer``, its pre-activation, the layer
             that carries the evidence), summed over channels, then upsampled bilinearly to the
             input size                      (captum LayerGradCam + LayerAttribution.interpolate)
  occlusion  the drop of logit_y when a k x k window is set to the reference (black by default),
             stride 1 (captum Occlusion);
             k defaults by image size: 3 for 28-pixel images, 23 for 224-pixel images

The *reference* is what Captum calls ``baselines``: the input that DeepLIFT and Occlusion compare
the image with.
"""
from __future__ import annotations

import copy
import warnings
from typing import Optional

import torch
from captum.attr import DeepLift, LayerAttribution, LayerGradCam, Occlusion, Saliency
from torch import nn

from ..bnn import BayesianCNN, posterior_network
from ..bnn.nets import channel_moments
from ..errors import EBNNError
from ..progress import progress_bar

__all__ = ["METHODS", "REFERENCE_METHODS", "REFERENCES", "ExplainError", "explained_network", "default_occlusion_window",
           "parse_methods", "gradcam_layer_map", "reference_image", "channel_mean", "attribute", "explain"]

METHODS = ("saliency", "deeplift", "gradcam", "occlusion")
#: the methods that compare the image with a reference image
REFERENCE_METHODS = ("deeplift", "occlusion")
#: the reference images: all zeros, or every pixel at the training images' channel mean
REFERENCES = ("black", "mean")


class ExplainError(EBNNError):
    """Bad arguments to the explanation tools (unknown method, shapes, runs that do not match)."""


def explained_network(net: nn.Module, at: str = "mean", generator: Optional[torch.Generator] = None) -> nn.Sequential:
    """The plain network that Captum explains: :func:`~pyro_ebnn.bnn.posterior_network` of a
    :class:`~pyro_ebnn.bnn.BayesianCNN` at ``at`` ("mean" or "sample"), or a frozen copy of a point
    network (an ``nn.Sequential`` with an ``evidence_layer``), which has one weight setting only."""
    if isinstance(net, BayesianCNN):
        return posterior_network(net, at, generator)
    if isinstance(net, nn.Sequential) and hasattr(net, "evidence_layer"):
        if at != "mean":
            raise ExplainError("a deterministic network has no posterior to sample weights from; use samples=0")
        plain = copy.deepcopy(net).eval()
        for p in plain.parameters():
            p.requires_grad_(False)
        return plain
    raise ExplainError(f"expected a BayesianCNN or a point network, got {type(net).__name__}")


def default_occlusion_window(image_size: int) -> int:
    """Side of the occlusion window: the odd integer nearest to a tenth of the image side, at least 3
    (28 px -> 3, as [001] on Decoy MNIST; 224 or 227 px -> 23, as [001] on the image datasets).

    >>> default_occlusion_window(28), default_occlusion_window(224)
    (3, 23)
    """
    k = int(round(image_size / 10.0))
    if k % 2 == 0:
        k = k + 1 if image_size / 10.0 >= k else k - 1
    return max(3, k)


def parse_methods(methods) -> tuple[str, ...]:
    """``"saliency,deeplift"`` or a sequence -> a validated tuple of method names.

    >>> parse_methods("saliency, gradcam")
    ('saliency', 'gradcam')
    """
    if methods is None:
        return METHODS
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = tuple(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ExplainError(f"unknown attribution method(s) {', '.join(map(repr, bad)) or '(none)'}; "
                           f"use a comma-separated subset of {','.join(METHODS)}")
    return methods


def gradcam_layer_map(net: nn.Sequential, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Grad-CAM at the last convolution before upsampling: N x 1 x h x w (11 x 11 for LeNet on 28 px).

    Per channel, the spatial mean of d logit_y / d A times A (A: the pre-activation of
    ``net.evidence_layer``), summed over channels; no ReLU, so the sign is kept."""
    return LayerGradCam(net, net.evidence_layer).attribute(images, target=labels, relu_attributions=False)


def reference_image(reference, images: torch.Tensor) -> torch.Tensor:
    """The reference input of DeepLIFT and Occlusion for ``images``: ``None`` -> all zeros (a black
    image); C values, one per channel (e.g. :func:`channel_mean` of the training images) -> every
    pixel of a channel at its value.

    >>> reference_image(torch.tensor([0.5]), torch.rand(2, 1, 3, 3))[0, 0, 0]
    tensor([0.5000, 0.5000, 0.5000])
    """
    if reference is None:
        return torch.zeros_like(images)
    b = torch.as_tensor(reference, dtype=images.dtype, device=images.device).flatten()
    if len(b) != images.shape[1]:
        raise ExplainError(f"the reference image has {len(b)} channel values; the images have {images.shape[1]} "
                           "channels (give one value per channel)")
    return b.view(1, -1, 1, 1).expand_as(images)  # a view: Captum only reads it


def channel_mean(images) -> torch.Tensor:
    """Per-channel mean of N x C x H x W images, one tensor or an iterable of batches (the ``mean``
    reference)."""
    return channel_moments(images)[0].float()


def attribute(net: nn.Sequential, images: torch.Tensor, labels: torch.Tensor, method: str,
              occlusion_window: Optional[int] = None, occlusion_stride: int = 1,
              perturbations_per_eval: int = 64, reference=None) -> torch.Tensor:
    """Signed attributions of one batch for the true labels: N x C x H x W (Grad-CAM: N x 1 x H x W),
    on a plain network (:func:`explained_network`). ``reference``: DeepLIFT's reference and
    Occlusion's fill (:func:`reference_image`; default black)."""
    x = images.detach().clone().requires_grad_(method in ("saliency", "deeplift", "gradcam"))
    y = labels.long()
    if method == "saliency":
        out = Saliency(net).attribute(x, target=y, abs=False)
    elif method == "deeplift":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum announces its temporary hooks on every call
            out = DeepLift(net).attribute(x, baselines=reference_image(reference, x), target=y)
    elif method == "gradcam":
        out = LayerAttribution.interpolate(gradcam_layer_map(net, x, y), tuple(x.shape[2:]),
                                           interpolate_mode="bilinear")
    elif method == "occlusion":
        k = occlusion_window or default_occlusion_window(x.shape[-1])
        c = x.shape[1]
        out = Occlusion(net).attribute(x, sliding_window_shapes=(c, k, k), strides=(c, occlusion_stride, occlusion_stride),
                                       baselines=reference_image(reference, x), target=y,
                                       perturbations_per_eval=perturbations_per_eval)
    else:
        parse_methods([method])
        raise AssertionError  # unreachable
    return out.detach()


def explain(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, methods=METHODS, samples: int = 0,
            batch_size: int = 250, occlusion_batch: Optional[int] = None, occlusion_window: Optional[int] = None,
            perturbations_per_eval: Optional[int] = None, device=None, seed: int = 0, progress: bool = True,
            reference=None) -> dict:
    """Attributions of ``images`` (N x C x H x W) for their true ``labels``, method -> N x C' x H x W
    (CPU tensors; C' = C, or 1 for Grad-CAM).

    ``samples=0``: at the posterior mean. ``samples=S > 0``: the mean of the signed attributions of
    S networks whose weights are drawn from q(w) (seeded by ``seed``). Batched over images
    (``batch_size``; ``occlusion_batch`` images at a time for Occlusion, which runs
    ``perturbations_per_eval`` windows per forward pass; by default 10 x 48 on a CPU, where forward
    batches of a few hundred images run fastest, and 100 x 256 on a GPU), on ``device`` (default:
    the network's). ``reference``: DeepLIFT's reference and Occlusion's fill (:func:`reference_image`).

    >>> from pyro_ebnn import lenet
    >>> maps = explain(lenet(), torch.rand(2, 1, 28, 28), torch.tensor([3, 7]), "saliency,gradcam", progress=False)
    >>> {m: tuple(a.shape) for m, a in maps.items()}
    {'saliency': (2, 1, 28, 28), 'gradcam': (2, 1, 28, 28)}
    """
    methods = parse_methods(methods)
    if images.dim() != 4 or len(images) != len(labels):
        raise ExplainError(f"images must be N x C x H x W with one label each, got {tuple(images.shape)} "
                           f"and {tuple(labels.shape)} labels")
    if tuple(images.shape[1:]) != tuple(net.input_shape):
        raise ExplainError(f"the network takes {tuple(net.input_shape)} images, got {tuple(images.shape[1:])}")
    if samples < 0:
        raise ExplainError(f"samples must be >= 0 (0 = posterior mean), got {samples}")
    device = torch.device(device) if device is not None else next(net.parameters()).device
    gpu = device.type == "cuda"
    occlusion_batch = occlusion_batch or (100 if gpu else 10)
    perturbations_per_eval = perturbations_per_eval or (256 if gpu else 48)
    gen = torch.Generator().manual_seed(seed)
    draws = max(samples, 1)
    n = len(images)
    totals = {m: None for m in methods}
    bar = progress_bar(total=n * len(methods) * draws, desc="attributions", unit="img", disable=not progress,
                       leave=False)
    for _ in range(draws):
        plain = explained_network(net, "sample" if samples > 0 else "mean", gen).to(device)
        for m in methods:
            bs = occlusion_batch if m == "occlusion" else batch_size
            parts = []
            for start in range(0, n, bs):
                x = images[start:start + bs].to(device)
                y = labels[start:start + bs].to(device)
                parts.append(attribute(plain, x, y, m, occlusion_window=occlusion_window,
                                       perturbations_per_eval=perturbations_per_eval, reference=reference).cpu())
                bar.set_postfix(method=m)
                bar.update(len(x))
            a = torch.cat(parts)
            totals[m] = a if totals[m] is None else totals[m] + a
    bar.close()
    return {m: t / draws for m, t in totals.items()}

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
from torch import nn

from ..bnn import BayesianCNN, posterior_network
from ..bnn.nets import channel_moments
from ..errors import EBNNError
from ..progress import progress_bar

__all__ = ["METHODS", "REFERENCE_METHODS", "REFERENCES", "ExplainError", "explained_network", "default_occlusion_window",
           "parse_methods", "gradcam_layer_map", "reference_image", "channel_mean", "attribute", "explain",
           "bytes_per_image", "occlusion_windows", "batch_sizes"]

METHODS = ("saliency", "deeplift", "gradcam", "occlusion")
#: the methods that compare the image with a reference image
REFERENCE_METHODS = ("deeplift", "occlusion")
#: the reference images: all zeros, or every pixel at the training images' channel mean
REFERENCES = ("black", "mean")
#: memory that one forward batch may take: on a CPU a size that stays in cache (LeNet on 28-pixel
#: images: about 1,000 images, where a forward pass runs fastest); on a GPU a quarter of the free memory
CPU_BATCH_BYTES = 64 * 2 ** 20
GPU_MEMORY_SHARE = 0.25
#: at most this many images in one forward pass (Occlusion's windows included), one gradient pass
MAX_FORWARD_IMAGES = {"cpu": 4096, "cuda": 16384}
MAX_GRADIENT_IMAGES = {"cpu": 500, "cuda": 4096}
#: Occlusion's windows per image in one forward pass, before more images are added: Captum builds
#: every window's input once per call, so a call over more images with fewer windows each costs less
OCCLUSION_WINDOWS = 48


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
    from captum.attr import LayerGradCam  # imported where used, as Captum takes a second to import
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


def bytes_per_image(net: nn.Module, input_shape, device=None) -> int:
    """Memory one image takes in a forward pass of ``net`` (an upper bound: its input plus the
    outputs of every module that has no submodules, all kept at once), measured with one black image
    on ``device`` (default: the network's).

    >>> from pyro_ebnn import lenet
    >>> bytes_per_image(explained_network(lenet()), (1, 28, 28)) > 4 * 28 * 28
    True
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    total = [0]

    def count(module, inputs, output):
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    leaves = [m for m in net.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        x = torch.zeros((1, *tuple(input_shape)), device=device)
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return int(total[0] + x.numel() * x.element_size())


def occlusion_windows(image_shape, window: int, stride: int = 1) -> int:
    """How many positions Captum's Occlusion slides a ``window`` x ``window`` window over a C x H x W
    image with ``stride``: one forward pass of the image per position.

    >>> occlusion_windows((1, 28, 28), 3)
    676
    """
    h, w = image_shape[-2:]
    return (-(-(h - window) // stride) + 1) * (-(-(w - window) // stride) + 1)


def batch_sizes(net: nn.Module, input_shape, device=None, n_images: int = 1, windows: int = 1) -> dict:
    """Batch sizes sized to memory for ``n_images`` images of ``input_shape``: ``batch_size``
    (images per pass of the gradient methods: four times an image's forward memory each, for the
    backward pass and DeepLIFT's reference), ``occlusion_batch`` (images per Occlusion call) and
    ``perturbations_per_eval`` (Occlusion's windows per forward pass, of ``windows`` per image).

    The budget: :data:`CPU_BATCH_BYTES` on a CPU, :data:`GPU_MEMORY_SHARE` of the free memory on a
    GPU; a forward pass holds at most :data:`MAX_FORWARD_IMAGES` images. Occlusion fills the forward
    pass with :data:`OCCLUSION_WINDOWS` windows of as many images as fit, then with more windows.
    LeNet on 28-pixel images on a CPU (60 kB an image): 279 images per gradient pass, Occlusion 23
    images x 48 windows (of 676) per forward pass.

    >>> from pyro_ebnn import lenet
    >>> batch_sizes(explained_network(lenet()), (1, 28, 28), "cpu", n_images=250, windows=676)
    {'batch_size': 279, 'occlusion_batch': 23, 'perturbations_per_eval': 48}
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    kind = "cuda" if device.type == "cuda" else "cpu"
    per = bytes_per_image(net, input_shape, device)
    budget = torch.cuda.mem_get_info(device)[0] * GPU_MEMORY_SHARE if kind == "cuda" else CPU_BATCH_BYTES
    forward = int(max(1, min(budget // per, MAX_FORWARD_IMAGES[kind])))
    gradient = int(max(1, min(budget // (4 * per), MAX_GRADIENT_IMAGES[kind])))
    images = max(1, min(n_images, forward // min(windows, OCCLUSION_WINDOWS)))
    return {"batch_size": gradient, "occlusion_batch": images,
            "perturbations_per_eval": int(max(1, min(windows, forward // images)))}


def attribute(net: nn.Sequential, images: torch.Tensor, labels: torch.Tensor, method: str,
              occlusion_window: Optional[int] = None, occlusion_stride: int = 1,
              perturbations_per_eval: int = 64, reference=None) -> torch.Tensor:
    """Signed attributions of one batch for the true labels: N x C x H x W (Grad-CAM: N x 1 x H x W),
    on a plain network (:func:`explained_network`). ``reference``: DeepLIFT's reference and
    Occlusion's fill (:func:`reference_image`; default black)."""
    from captum.attr import DeepLift, LayerAttribution, Occlusion, Saliency
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
            batch_size: Optional[int] = None, occlusion_batch: Optional[int] = None,
            occlusion_window: Optional[int] = None,
            perturbations_per_eval: Optional[int] = None, device=None, seed: int = 0, progress: bool = True,
            reference=None) -> dict:
    """Attributions of ``images`` (N x C x H x W) for their true ``labels``, method -> N x C' x H x W
    (CPU tensors; C' = C, or 1 for Grad-CAM).

    ``samples=0``: at the posterior mean. ``samples=S > 0``: the mean of the signed attributions of
    S networks whose weights are drawn from q(w) (seeded by ``seed``). Batched over images
    (``batch_size``; ``occlusion_batch`` images at a time for Occlusion, which runs
    ``perturbations_per_eval`` windows per forward pass; by default sized to the memory of
    ``device``, :func:`batch_sizes`), on ``device`` (default: the network's), to which the network
    and each batch are moved. ``reference``: DeepLIFT's reference and Occlusion's fill
    (:func:`reference_image`).

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
    gen = torch.Generator().manual_seed(seed)
    draws = max(samples, 1)
    n = len(images)
    totals = {m: None for m in methods}
    bar = progress_bar(total=n * len(methods) * draws, desc="attributions", unit="img", disable=not progress,
                       leave=False)
    for _ in range(draws):
        plain = explained_network(net, "sample" if samples > 0 else "mean", gen).to(device)
        if None in (batch_size, occlusion_batch, perturbations_per_eval):
            k = occlusion_window or default_occlusion_window(images.shape[-1])
            sized = batch_sizes(plain, images.shape[1:], device, n, occlusion_windows(images.shape[1:], k))
            batch_size = batch_size or sized["batch_size"]
            occlusion_batch = occlusion_batch or sized["occlusion_batch"]
            perturbations_per_eval = perturbations_per_eval or sized["perturbations_per_eval"]
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

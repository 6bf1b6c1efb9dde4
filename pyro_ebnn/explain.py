"""Attributions of the Bayesian networks (Captum) and their overlap with the feedback masks.

The Bayesian layers never hold a weight tensor: they hold q(w) = N(weight_loc, softplus(weight_rho)^2)
and sample activations (LRT). Captum needs a plain differentiable ``forward``, so every explanation
is computed on a deterministic copy of the network, :func:`deterministic_network`, that carries one
weight setting: the posterior mean (``weight_loc``; the network of ``net.eval(); net(x)``) or one
draw w ~ q(w). ``samples=S`` averages the (signed) attributions of S such draws: a Monte Carlo
estimate of the attribution's posterior expectation E_q[T(w)].

Methods ([001] Table 2; every one targets the logit of the **true label** y of each image):

  saliency   input gradient d logit_y / dx                            (captum Saliency, abs=False)
  deeplift   DeepLIFT (rescale rule) against a reference image: all zeros (black; default) or every
             pixel at the training images' mean                       (captum DeepLift)
  gradcam    Grad-CAM on the last convolution (``evidence_layer``, its pre-activation, the layer
             that carries the evidence), summed over channels, then upsampled bilinearly to the
             input size                      (captum LayerGradCam + LayerAttribution.interpolate)
  occlusion  the drop of logit_y when a k x k window is set to the reference (0 by default),
             stride 1 (captum Occlusion);
             k defaults by image size: 3 for 28-pixel images, 23 for 224-pixel images

Overlap ([001] Eq. 17): for the images that carry a non-empty mask E,
    overlap = mean_i ||E_i * T_i||_1 / ||T_i||_1,   T_i = |attribution_i| summed over channels.
It lies in [0, 1]; lower means less attention on the irrelevant region.
"""
from __future__ import annotations

import copy
import sys
import warnings
from collections import OrderedDict
from typing import Optional, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import ConfigError, EBNNError
from .layers import BayesianConv2d, BayesianLayer, BayesianLinear
from .nets import BayesianCNN, channel_moments

METHODS = ("saliency", "deeplift", "gradcam", "occlusion")
#: the methods that compare the image with a reference (``attribution_baseline``)
REFERENCE_METHODS = ("deeplift", "occlusion")


class ExplainError(EBNNError):
    """Bad arguments to the explanation tools (unknown method, shapes, runs that do not match)."""


# -- a deterministic copy of the network ------------------------------------------------------
def _plain_layer(layer: BayesianLayer, sample: bool, generator: Optional[torch.Generator]) -> nn.Module:
    with torch.no_grad():
        w, b = layer.weight_loc.detach(), layer.bias_loc.detach()
        if sample:
            def draw(loc, scale):
                eps = torch.randn(loc.shape, generator=generator, dtype=loc.dtype,
                                  device="cpu" if generator is not None else loc.device).to(loc.device)
                return loc + scale.detach() * eps
            w, b = draw(w, layer.weight_scale), draw(b, layer.bias_scale)
        if isinstance(layer, BayesianConv2d):
            o, i, k, _ = w.shape
            m = nn.Conv2d(i, o, k, stride=layer.stride, padding=layer.padding)
        elif isinstance(layer, BayesianLinear):
            o, i = w.shape
            m = nn.Linear(i, o)
        else:  # pragma: no cover - only two Bayesian layer kinds exist
            raise ExplainError(f"cannot convert {type(layer).__name__} to a deterministic layer")
        m = m.to(device=w.device, dtype=w.dtype)
        m.weight.copy_(w)
        m.bias.copy_(b)
    return m


def _convert(module: nn.Module, sample: bool, generator) -> nn.Module:
    if isinstance(module, BayesianLayer):
        return _plain_layer(module, sample, generator)
    if isinstance(module, nn.Sequential):
        return nn.Sequential(OrderedDict((name, _convert(child, sample, generator))
                                         for name, child in module.named_children()))
    if any(isinstance(m, BayesianLayer) for m in module.modules()):
        raise ExplainError(f"cannot convert module {type(module).__name__} holding Bayesian layers; "
                           "nest Bayesian layers in nn.Sequential only")
    return copy.deepcopy(module)  # a distinct instance (DeepLIFT must not see a ReLU twice)


def deterministic_network(net: BayesianCNN, sample: bool = False,
                          generator: Optional[torch.Generator] = None) -> nn.Sequential:
    """A plain ``nn.Sequential(body, evidence_layer, head)`` of nn.Conv2d / nn.Linear / ReLU / pooling
    with the structure of ``net`` and one weight setting: the posterior mean (``sample=False``;
    then ``det(x) == net.eval()(x)``) or one draw w ~ q(w) (``sample=True``).

    ``det.evidence_layer`` is the last convolution; its output is the pre-activation that the
    evidence acts on. The copy is in eval mode with frozen parameters and shares no module
    instance with ``net``.
    """
    if isinstance(net, nn.Sequential) and hasattr(net, "evidence_layer") and hasattr(net, "input_shape"):
        # a point network (pyro_ebnn.point): it has one weight setting only
        if sample:
            raise ExplainError("a deterministic network has no posterior to sample weights from; use samples=0")
        det = copy.deepcopy(net)
        det.eval()
        for p in det.parameters():
            p.requires_grad_(False)
        return det
    if not isinstance(net, BayesianCNN):
        raise ExplainError(f"expected a BayesianCNN or a point network, got {type(net).__name__}")
    det = nn.Sequential(OrderedDict([
        ("body", _convert(net.body, sample, generator)),
        ("evidence_layer", _plain_layer(net.evidence_layer, sample, generator)),
        ("head", _convert(net.head, sample, generator)),
    ]))
    det.eval()
    for p in det.parameters():
        p.requires_grad_(False)
    return det


# -- attributions ---------------------------------------------------------------------------------
def default_occlusion_window(image_size: int) -> int:
    """Side of the occlusion window: the odd integer nearest to a tenth of the image side, at least 3
    (28 px -> 3, as [001] on Decoy MNIST; 224 or 227 px -> 23, as [001] on the image datasets)."""
    k = int(round(image_size / 10.0))
    if k % 2 == 0:
        k = k + 1 if image_size / 10.0 >= k else k - 1
    return max(3, k)


def parse_methods(methods) -> tuple[str, ...]:
    """``"saliency,deeplift"`` or a sequence -> a validated tuple of method names."""
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


def gradcam_layer_map(det: nn.Sequential, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Grad-CAM at the last convolution before upsampling: N x 1 x h x w (11 x 11 for LeNet on 28 px).

    Per channel, the spatial mean of d logit_y / d A times A (A: the pre-activation of
    ``det.evidence_layer``), summed over channels; no ReLU (Captum's default), so the sign is kept."""
    from captum.attr import LayerGradCam
    return LayerGradCam(det, det.evidence_layer).attribute(images, target=labels, relu_attributions=False)


def reference_image(baseline, images: torch.Tensor) -> torch.Tensor:
    """The reference input of DeepLIFT and Occlusion for ``images``: ``None`` -> all zeros (a black
    image); C values, one per channel (e.g. :func:`channel_mean` of the training images) -> every
    pixel of a channel at its value."""
    if baseline is None:
        return torch.zeros_like(images)
    b = torch.as_tensor(baseline, dtype=images.dtype, device=images.device).flatten()
    if len(b) != images.shape[1]:
        raise ExplainError(f"the attribution baseline has {len(b)} values; the images have {images.shape[1]} "
                           "channels (give one value per channel)")
    return b.view(1, -1, 1, 1).expand_as(images)  # a view: Captum only reads it


def channel_mean(images: torch.Tensor) -> torch.Tensor:
    """Per-channel mean of N x C x H x W images (the ``mean`` attribution baseline)."""
    return channel_moments(images)[0].float()


def attribute(det: nn.Sequential, images: torch.Tensor, labels: torch.Tensor, method: str,
              occlusion_window: Optional[int] = None, occlusion_stride: int = 1,
              perturbations_per_eval: int = 64, baseline=None) -> torch.Tensor:
    """Signed attributions of one batch for the true labels: N x C x H x W (Grad-CAM: N x 1 x H x W).
    ``baseline``: DeepLIFT's reference and Occlusion's fill (:func:`reference_image`; default black)."""
    from captum.attr import DeepLift, LayerAttribution, Occlusion, Saliency
    x = images.detach().clone().requires_grad_(method in ("saliency", "deeplift", "gradcam"))
    y = labels.long()
    if method == "saliency":
        out = Saliency(det).attribute(x, target=y, abs=False)
    elif method == "deeplift":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum announces its temporary hooks on every call
            out = DeepLift(det).attribute(x, baselines=reference_image(baseline, x), target=y)
    elif method == "gradcam":
        out = LayerAttribution.interpolate(gradcam_layer_map(det, x, y), tuple(x.shape[2:]),
                                           interpolate_mode="bilinear")
    elif method == "occlusion":
        k = occlusion_window or default_occlusion_window(x.shape[-1])
        c = x.shape[1]
        out = Occlusion(det).attribute(x, sliding_window_shapes=(c, k, k), strides=(c, occlusion_stride, occlusion_stride),
                                       baselines=reference_image(baseline, x), target=y,
                                       perturbations_per_eval=perturbations_per_eval)
    else:
        parse_methods([method])
        raise AssertionError  # unreachable
    return out.detach()


def explain(net: BayesianCNN, images: torch.Tensor, labels: torch.Tensor, methods=METHODS, samples: int = 0,
            batch_size: int = 250, occlusion_batch: Optional[int] = None, occlusion_window: Optional[int] = None,
            perturbations_per_eval: Optional[int] = None, device=None, seed: int = 0, progress: bool = True,
            baseline=None) -> dict:
    """Attributions of ``images`` (N x C x H x W) for their true ``labels``, method -> N x C' x H x W
    (CPU tensors; C' = C, or 1 for Grad-CAM).

    ``samples=0``: at the posterior mean. ``samples=S > 0``: the mean of the signed attributions of
    S networks whose weights are drawn from q(w) (seeded by ``seed``). Batched over images
    (``batch_size``; ``occlusion_batch`` images at a time for Occlusion, which runs
    ``perturbations_per_eval`` windows per forward pass; by default 10 x 48 on a CPU, where forward
    batches of a few hundred images run fastest, and 100 x 256 on a GPU), on ``device`` (default:
    the network's). ``baseline``: DeepLIFT's reference and Occlusion's fill (:func:`reference_image`)."""
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
    nets = [None] if samples == 0 else [None] * samples
    n = len(images)
    totals = {m: None for m in methods}
    bar = tqdm(total=n * len(methods) * len(nets), desc="attributions", unit="img", disable=not progress,
               file=sys.stderr, leave=False, dynamic_ncols=True)
    for _ in nets:
        det = deterministic_network(net, sample=samples > 0, generator=gen).to(device)
        for m in methods:
            bs = occlusion_batch if m == "occlusion" else batch_size
            parts = []
            for start in range(0, n, bs):
                x = images[start:start + bs].to(device)
                y = labels[start:start + bs].to(device)
                parts.append(attribute(det, x, y, m, occlusion_window=occlusion_window,
                                       perturbations_per_eval=perturbations_per_eval, baseline=baseline).cpu())
                bar.set_postfix(method=m)
                bar.update(len(x))
            a = torch.cat(parts)
            totals[m] = a if totals[m] is None else totals[m] + a
    bar.close()
    return {m: t / len(nets) for m, t in totals.items()}


# -- overlap with the feedback mask (Eq. 17) -------------------------------------------------------
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


def overlap_metrics(net: BayesianCNN, data, methods=METHODS, samples: int = 0, max_images: Optional[int] = None,
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


# -- comparing runs ---------------------------------------------------------------------------------
#: config keys that fix the test images; runs compared in one figure must agree on them
DATA_KEYS = ("dataset", "rule", "npz_path", "num_classes", "max_test_images", "data_seed")


def check_same_data(configs: Sequence, names: Sequence[str]):
    ref = {k: getattr(configs[0], k) for k in DATA_KEYS}
    for cfg, name in zip(configs[1:], names[1:]):
        diff = [k for k in DATA_KEYS if getattr(cfg, k) != ref[k]]
        if diff:
            detail = ", ".join(f"{k}: {ref[k]!r} vs {getattr(cfg, k)!r}" for k in diff)
            raise ExplainError(f"runs {names[0]} and {name} were trained on different data ({detail}); "
                               "compare only runs that share the data config")


def compare_runs(run_dirs: Sequence, out, n_images: int = 8, methods=METHODS, samples: int = 0, device=None,
                 progress: bool = True, baseline: str = "zero") -> dict:
    """One attribution grid per method (image with its mask | run A | run B | ...) on the same first
    ``n_images`` masked test images; ``baseline`` as the config key ``attribution_baseline`` (the
    training images of the first run's fold give the mean). Returns {method: [png, pdf]}."""
    from pathlib import Path

    from .build import resolve_device
    from .config import load_config
    from .figures import attribution_grid, attribution_title
    from .train import MODEL, load_model, prepare_split

    methods = parse_methods(methods)
    if baseline not in ("zero", "mean"):
        raise ExplainError(f"unknown attribution baseline {baseline!r}; use zero or mean")
    run_dirs = [Path(r) for r in run_dirs]
    if len(run_dirs) < 2:
        raise ExplainError("explain compares two or more runs; pass --run at least twice")
    if n_images < 1:
        raise ExplainError(f"--n-images must be >= 1, got {n_images}")
    configs = []
    for r in run_dirs:
        if not (r / MODEL).exists() or not (r / "config.yaml").exists():
            raise ConfigError(f"no saved model in {r}; pass the --out directory of a finished train run")
        configs.append(load_config(str(r / "config.yaml")))
    names = [_run_label(r, run_dirs) for r in run_dirs]
    check_same_data(configs, [str(r) for r in run_dirs])
    dev = resolve_device(device or configs[0].device)
    split = prepare_split(configs[0])
    test = split.test
    reference = channel_mean(split.train.images) if baseline == "mean" else None
    idx = masked_indices(test.masks, n_images)
    if len(idx) == 0:
        raise ExplainError("the test set has no image with a non-empty mask; nothing to compare")
    x, y, masks = test.images[idx], test.labels[idx], test.masks[idx]
    columns = []
    for r, name in zip(run_dirs, names):
        bnn, _, _ = load_model(r, dev)
        if tuple(bnn.net.input_shape) != tuple(x.shape[1:]):
            raise ExplainError(f"the model in {r} takes {tuple(bnn.net.input_shape)} images, the test set has "
                               f"{tuple(x.shape[1:])}")
        attrs = explain(bnn.net, x, y, methods, samples=samples, device=dev, progress=progress, baseline=reference)
        with torch.no_grad():
            bnn.net.eval()
            probs = bnn.net(x.to(dev)).softmax(-1).cpu()
        columns.append({"name": name, "attributions": attrs, "probs": probs})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for m in methods:
        cols = [(c["name"], c["attributions"][m], c["probs"]) for c in columns]
        written[m] = attribution_grid(x, masks, y, cols, m, out / f"attributions_{m}",
                                      title_suffix=attribution_title(m, samples, baseline))
    return written


def _run_label(run, runs) -> str:
    """A short column title: the path components that tell the runs apart (at most three)."""
    parts = [p.parts for p in runs]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    label = "/".join(run.parts[common:][-3:])
    return label or run.name

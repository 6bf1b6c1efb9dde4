"""Baselines that steer a network away from masked (irrelevant) pixels by other means than evidence.

All of them take the feedback mask E (N x 1 x H x W, 1 = irrelevant, broadcast over channels):

* **augment** -- counterexamples ([000] Sec. 5.2; Teso & Kersting 2019): the masked pixels are
  replaced by U(0, 1) noise before the image reaches the network (:func:`replace_with_noise`).
* **rrr** -- "Right for the Right Reasons" (Ross et al. 2017): per image
  ``sum_d (E_d * d/dx_d sum_k log softmax_k(x))^2``, a double-backward penalty (:func:`rrr_penalty`).
* **l1grad** -- the thesis penalty ([002] Eq. 4.8-4.9): per image ``||E (x) grad_x yhat_y||_1 / (w h c)``
  with ``yhat_y`` the softmax probability of the true class (:func:`l1_grad_penalty`).
* **cdep** -- contextual decomposition explanation penalization (Rieger et al. 2020, [004]): the
  logits are split into ``beta`` (the part that comes from the masked pixels) and ``gamma`` (the
  rest), and the penalty is the mean over classes of ``softmax([beta_c, gamma_c])[0]``
  (:func:`cd_decompose`, :func:`cdep_penalty`).
* **eg** -- Expected Gradients as an attribution prior (Erion et al. 2021; the fourth column of
  [004] Table 3): the attribution of the true-class probability along the straight path from a
  reference image x' (another training image) to x, ``phi = (x - x') * grad p_y(x' + alpha (x - x'))``
  with alpha ~ U(0, 1), one draw per image and step (Erion et al.'s training estimator), and per
  image the L1 mass of phi on the mask, ``sum_d E_d |phi_d|`` (the penalty of [004]'s code)
  (:func:`expected_gradients`, :func:`eg_penalty`).

The four penalties return one value per image (shape ``(B,)``), so that they serve both

* a plain PyTorch loss ``mean(CE) + weight * mean(penalty)`` (:class:`pyro_ebnn.point.PointModel`,
  the deterministic network of the papers' own, non-Bayesian setting: ``network: deterministic``), and
* the ``penalty`` hook of :class:`pyro_ebnn.model.FeedbackBNN`, which adds
  ``pyro.factor("explanation_penalty", -weight * penalty)`` inside the data plate, i.e. the same
  per-image weighting against the log-likelihood, scaled by N/B like it (:func:`make_penalty`).
  The objective is then no longer an ELBO ([000] Sec. 1); that is the point of the comparison.

Bayesian networks (:class:`pyro_ebnn.nets.BayesianCNN`): the penalties are computed on the
network at its **posterior mean** (``weight_loc``, ``bias_loc``; the network of ``net.eval()``) by
default, ``weights="sample"`` uses one reparameterized draw w ~ q(w) per call instead. Why not an
LRT sample: the LRT noise ``sigma_U * eps`` of a layer is not a sum of a masked and an unmasked
part (sigma_U is the square root of a sum), so contextual decomposition has no exact split of it,
and input gradients of an LRT sample mix the attribution with the gradient of the noise scale.
The posterior mean is also the network whose attributions the evaluation scores
(``pyro_ebnn.explain`` at ``samples=0``). With the mean, the penalty moves only the means of q(w);
with ``"sample"`` it also moves the scales (an unbiased one-sample estimate of E_q[penalty(w)]).

Modes without a penalty (``none``, ``feedback``, ``augment``) get ``None`` from :func:`make_penalty`.
How ``augment`` enters training: per batch, ``x = replace_with_noise(x, mask)`` (fresh noise every
step) and then the ordinary step **without** a mask (no evidence, no penalty); images without
feedback (all-zero mask) are left unchanged.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .layers import BayesianConv2d, BayesianLayer, BayesianLinear
from .nets import BayesianCNN, Standardize

#: modes that add a loss penalty (the others: none, feedback, augment)
PENALTY_MODES = ("rrr", "l1grad", "cdep", "eg")

#: Published / chosen default weights of the penalties (``weight=None`` means these):
#: * rrr: lambda_1 = 1000, Ross et al. 2017 on Decoy MNIST (their Sec. 4 / the RRR reference code;
#:   METHOD.md Sec. 9: 0.516 -> 0.961 with lambda_1 = 1000).
#: * cdep: lambda = 1000, the best value of the DecoyMNIST sweep of [004] over {1, 10, 100, 1000,
#:   10000} (test accuracy 97.2%, the number of [004] Table 3; 10000 gives 96.7%, 100 gives 95.7%).
#: * l1grad: lambda_2 = 1000. [002] gives no value, so this is our choice, in the range of the
#:   published gradient penalties (RRR 1000; CDEP's "Grad" baseline is best at 1000-10000 in the
#:   same [004] sweep). Measured on Decoy MNIST (rrr rule, LeNet, batch 256): the raw penalty is
#:   ~1e-5..1e-4 per image at initialisation (so 0.01-0.1 against a cross-entropy of 2.3) and
#:   ~1e-6 on an overfitted network (0.001 against a cross-entropy of 5e-4): it matters without
#:   dominating. A sweep is advised before quoting results.
#: * eg: 100. Neither [004] nor the CDEP code states its chosen value. The masked attributions of one
#:   image sum to at most the change of a probability (completeness: sum_d phi_d -> p_y(x) - p_y(x')),
#:   so the raw penalty is O(0.1) per image on a network that reads the decoy, and 100 makes it
#:   outweigh a cross-entropy of O(1) there. Sweep it (compare --penalty-weights) before quoting.
DEFAULT_WEIGHTS = {"rrr": 1000.0, "cdep": 1000.0, "l1grad": 1000.0, "eg": 100.0}


# ---------------------------------------------------------------------------------------------
# counterexamples
# ---------------------------------------------------------------------------------------------
def replace_with_noise(x: torch.Tensor, mask: Optional[torch.Tensor], generator: Optional[torch.Generator] = None,
                       normalize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """Counterexamples ([000] Sec. 5.2): masked pixels (mask N x 1 x H x W, broadcast over the
    channels) replaced by U(0, 1) noise; the other pixels are kept. ``x`` is in [0, 1] and not
    standardized; ``normalize`` (e.g. a standardization) is applied to the result afterwards.
    Returns a new tensor (``x`` is not modified)."""
    out = x
    if mask is not None:
        m = _pixel_mask(mask, x).bool().expand_as(x)
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype,
                           device=x.device if generator is None else generator.device)
        out = torch.where(m, noise.to(x.device), x)
    return normalize(out) if normalize is not None else out


# ---------------------------------------------------------------------------------------------
# one walker over the layers of both kinds of network
# ---------------------------------------------------------------------------------------------
def layer_sequence(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The flat list of (name, module) that a network applies in order: ``body``,
    ``evidence_layer``, ``head`` of a :class:`BayesianCNN`; the children of any ``nn.Sequential``, e.g.
    a point network of :mod:`pyro_ebnn.point` (nested sequentials are unrolled)."""
    if isinstance(net, BayesianCNN):
        parts = [("body", net.body), ("evidence_layer", net.evidence_layer), ("head", net.head)]
    elif isinstance(net, nn.Sequential):
        parts = [("", net)]
    else:
        raise TypeError(f"no layer sequence for {type(net).__name__}; use a BayesianCNN or an nn.Sequential")
    out = []

    def walk(prefix, m):
        if isinstance(m, nn.Sequential):
            for name, child in m.named_children():
                walk(f"{prefix}.{name}" if prefix else name, child)
        else:
            out.append((prefix, m))
    for name, m in parts:
        walk(name, m)
    return out


def _check_weights(weights: str):
    if weights not in ("mean", "sample"):
        raise ValueError(f"weights must be 'mean' (posterior mean) or 'sample' (one draw from q), got {weights!r}")


def _affine_parameters(module: nn.Module, weights: str):
    """(weight, bias) of an affine layer: plain layers as they are; Bayesian layers at the
    posterior mean or one reparameterized draw from q."""
    if isinstance(module, BayesianLayer):
        if weights == "mean":
            return module.weight_loc, module.bias_loc
        return (module.weight_loc + module.weight_scale * torch.randn_like(module.weight_loc),
                module.bias_loc + module.bias_scale * torch.randn_like(module.bias_loc))
    return module.weight, module.bias


def _is_conv(module):
    return isinstance(module, (nn.Conv2d, BayesianConv2d))


def _is_linear(module):
    return isinstance(module, (nn.Linear, BayesianLinear))


def _affine(module, z, weight, bias):
    if _is_conv(module):
        if isinstance(module, nn.Conv2d):
            return F.conv2d(z, weight, bias, module.stride, module.padding, module.dilation, module.groups)
        return F.conv2d(z, weight, bias, module.stride, module.padding)
    return F.linear(z, weight, bias)


def network_logits(net: nn.Module, x: torch.Tensor, weights: str = "mean") -> torch.Tensor:
    """Logits of one weight setting: a plain network as it is; a :class:`BayesianCNN` at its
    posterior mean (``weights="mean"``, equal to ``net.eval()(x)``) or at one draw w ~ q(w)."""
    _check_weights(weights)
    if not isinstance(net, BayesianCNN):
        return net(x)
    z = x
    for _, m in layer_sequence(net):
        if _is_conv(m) or _is_linear(m):
            z = _affine(m, z, *_affine_parameters(m, weights))
        else:
            z = m(z)
    return z


def logits_function(net: nn.Module, weights: str = "mean") -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> logits`` for the gradient penalties (see :func:`network_logits`). A draw from q is
    taken once per call of the returned function."""
    _check_weights(weights)
    return lambda x: network_logits(net, x, weights)


# ---------------------------------------------------------------------------------------------
# input-gradient penalties (double backward)
# ---------------------------------------------------------------------------------------------
def _pixel_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W (or N x C x H x W) mask as a float tensor that broadcasts over x's channels."""
    if mask.dim() != x.dim() or mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:] \
            or mask.shape[1] not in (1, x.shape[1]):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}; "
                         "masks must be N x 1 x H x W")
    return mask.to(dtype=x.dtype, device=x.device)


def _input_gradient(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """d score / d x with the graph kept, so that a penalty of it can be differentiated again.
    ``score_fn`` returns one score per image; images are independent, so the gradient of their sum
    is the per-image gradient."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(score_fn(xg).sum(), xg, create_graph=True)
    return grad


def _true_class_score(logits_fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor,
                      score: str = "prob") -> Callable[[torch.Tensor], torch.Tensor]:
    """``z -> score of the true class y_i`` per image: its softmax probability (``"prob"``) or its
    logit (``"logit"``); what the L1 gradient penalty and Expected Gradients attribute."""
    if score not in ("prob", "logit"):
        raise ValueError(f"score must be 'prob' or 'logit', got {score!r}")
    idx = y.long()[:, None]

    def true_class(z):
        logits = logits_fn(z)
        return (logits.softmax(-1) if score == "prob" else logits).gather(-1, idx).squeeze(-1)
    return true_class


def rrr_penalty(logits_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """Ross et al. (2017), "right reasons" term: per image
    ``sum_d (E_d * d/dx_d sum_k log softmax_k(logits_fn(x)))^2``. Returns shape (B,).
    Exactly zero for an image with an all-zero mask."""
    m = _pixel_mask(mask, x)
    grad = _input_gradient(lambda z: F.log_softmax(logits_fn(z), dim=-1).sum(-1), x)
    return (m * grad).square().flatten(1).sum(1)


def l1_grad_penalty(logits_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                    mask: torch.Tensor, score: str = "prob") -> torch.Tensor:
    """The thesis penalty ([002] Eq. 4.8-4.9): per image ``||E (x) grad_x yhat_y||_1 / (w h c)``.
    Returns shape (B,); exactly zero for an image with an all-zero mask.

    ``yhat_y`` is the **softmax probability** of the true class (``score="prob"``, the default):
    [002] defines ``yhat = f(X)`` as the softmax output of the classifier (Sec. 4.3), and Eq. 4.9 is
    written on it. (Its gradient vanishes on images the network classifies confidently, so the
    penalty acts mostly on uncertain images; ``score="logit"`` uses the true-class logit instead,
    whose gradient does not saturate.)"""
    m = _pixel_mask(mask, x)
    grad = _input_gradient(_true_class_score(logits_fn, y.to(x.device), score), x)
    c, h, w = x.shape[1:]
    return (m * grad).abs().flatten(1).sum(1) / (w * h * c)


def other_images(n: int, device=None) -> torch.Tensor:
    """A random derangement of ``range(n)`` for n > 1: image ``i`` is paired with image ``index[i]``,
    never with itself (a plain permutation would pair an image with itself with probability 1/n,
    and its attribution ``(x - x') * ...`` would then be zero). The images are put in a random
    cycle: ``order[k]`` takes ``order[k + 1]``. For n = 1 the only image is its own reference."""
    order = torch.randperm(n, device=device)
    index = torch.empty_like(order)
    index[order] = order.roll(-1)
    return index


def expected_gradients(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                       references: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """One-sample Expected Gradients (Erion et al. 2021): per image
    ``phi = (x - x') * d score / d x~`` at ``x~ = x' + alpha (x - x')``, with the graph kept (the
    penalty is differentiated again). ``references`` x' has the shape of x, ``alpha`` shape (B,).
    Averaged over alpha ~ U(0, 1) the attributions of an image sum to ``score(x) - score(x')``
    (completeness of the path integral); over references drawn from the data they are Expected
    Gradients."""
    a = alpha.to(dtype=x.dtype, device=x.device).view(-1, *([1] * (x.dim() - 1)))
    delta = x - references
    return delta * _input_gradient(score_fn, references + a * delta)


def eg_penalty(logits_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               mask: torch.Tensor, references: Optional[torch.Tensor] = None,
               alpha: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Expected Gradients attribution prior: per image ``sum_d E_d |phi_d|`` with ``phi`` the
    Expected Gradients attribution of the true-class softmax probability (:func:`expected_gradients`).
    References default to other images of the batch (:func:`other_images`: training images, as
    Erion et al. sample them, never the image itself), alpha to U(0, 1) draws. Returns shape (B,);
    exactly zero for an image with an all-zero mask."""
    m = _pixel_mask(mask, x)
    if references is None:
        references = x[other_images(len(x), x.device)]
    if alpha is None:
        alpha = torch.rand(len(x), device=x.device, dtype=x.dtype)
    if references.shape != x.shape or alpha.shape != (len(x),):
        raise ValueError(f"references must have the images' shape {tuple(x.shape)} and alpha shape ({len(x)},); "
                         f"got {tuple(references.shape)} and {tuple(alpha.shape)}")
    phi = expected_gradients(_true_class_score(logits_fn, y.to(x.device)), x, references.detach(), alpha)
    return (m * phi).abs().flatten(1).sum(1)


# ---------------------------------------------------------------------------------------------
# contextual decomposition (Singh et al. 2018 for CNNs; CDEP, Rieger et al. 2020)
# ---------------------------------------------------------------------------------------------
def _cd_affine(module, beta, gamma, weights):
    """Conv / linear: ``W beta`` and ``W gamma`` without the bias, which is split between them in
    proportion to their absolute values, |W beta| : |W gamma| (CD). Where both are zero the bias
    goes to gamma (the unmasked part), so that an empty mask gives beta = 0 exactly."""
    weight, bias = _affine_parameters(module, weights)
    both = _affine(module, torch.cat([beta, gamma]), weight, None)
    wb, wg = both[: len(beta)], both[len(beta):]
    if bias is None:
        return wb, wg
    return _cd_split_bias(wb, wg, bias.view((1, -1) + (1,) * (wb.dim() - 2)))


def _cd_split_bias(wb, wg, b):
    ab, ag = wb.abs(), wg.abs()
    total = ab + ag
    share = ab / torch.where(total > 0, total, torch.ones_like(total))  # 0 where both are 0
    return wb + share * b, wg + (1 - share) * b


def _cd_standardize(module, beta, gamma):
    """The input standardization (x - mean) / std: an affine layer, its shift -mean / std split
    like a bias."""
    scale, shift = module.scale_shift()
    return _cd_split_bias(beta * scale, gamma * scale, shift)


def _cd_relu(beta, gamma):
    rb = F.relu(beta)
    return rb, F.relu(beta + gamma) - rb


def _cd_maxpool(module, beta, gamma):
    """Max pool: the winning positions are those of the full activation beta + gamma; both parts
    are read at them."""
    out, idx = F.max_pool2d(beta + gamma, module.kernel_size, module.stride, module.padding,
                            module.dilation, ceil_mode=module.ceil_mode, return_indices=True)
    flat = idx.flatten(2)
    pick = lambda t: t.flatten(2).gather(2, flat).view_as(out)
    return pick(beta), pick(gamma)


def cd_decompose(net: nn.Module, x: torch.Tensor, mask: torch.Tensor, weights: str = "mean",
                 return_layers: bool = False):
    """Contextual decomposition of the logits of ``net`` into ``(beta, gamma)``.

    ``beta``: the contribution of the masked (irrelevant) pixels, starting from ``x * E``;
    ``gamma``: everything else, starting from ``x * (1 - E)``. At every layer ``beta + gamma`` is
    the activation of the full network (of a :class:`BayesianCNN` at its posterior mean, or at one
    draw from q with ``weights="sample"``). Known layers: Conv2d / Linear (plain or Bayesian; bias
    split by |.|), Standardize (its shift split like a bias), ReLU, MaxPool2d (indices of
    beta + gamma), Flatten, Dropout / Identity (as in eval), AvgPool2d / AdaptiveAvgPool2d (linear,
    no bias).

    ``return_layers=True`` also returns ``[(name, beta, gamma), ...]`` after every layer.
    """
    _check_weights(weights)
    m = _pixel_mask(mask, x)
    beta, gamma = x * m, x * (1 - m)
    trace = []
    for name, module in layer_sequence(net):
        if _is_conv(module) or _is_linear(module):
            beta, gamma = _cd_affine(module, beta, gamma, weights)
        elif isinstance(module, Standardize):
            beta, gamma = _cd_standardize(module, beta, gamma)
        elif isinstance(module, nn.ReLU):
            beta, gamma = _cd_relu(beta, gamma)
        elif isinstance(module, nn.MaxPool2d):
            beta, gamma = _cd_maxpool(module, beta, gamma)
        elif isinstance(module, (nn.Flatten, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            beta, gamma = module(beta), module(gamma)
        elif isinstance(module, (nn.Dropout, nn.Identity)):
            pass
        else:
            raise TypeError(f"contextual decomposition does not know the layer {name} ({type(module).__name__})")
        if return_layers:
            trace.append((name, beta, gamma))
    return (beta, gamma, trace) if return_layers else (beta, gamma)


def cdep_penalty(net: nn.Module, x: torch.Tensor, mask: torch.Tensor, weights: str = "mean") -> torch.Tensor:
    """CDEP ([004] Eq. 5, METHOD.md Sec. 6): per image, the mean over classes c of
    ``softmax([beta_c, gamma_c])[0]``, the softmax weight of the masked part. Returns shape (B,).

    An image without feedback (all-zero mask) gets exactly 0 (beta = 0 there, but
    ``softmax([0, gamma_c])[0]`` is not 0 and would push all logits up; [004] gives every image
    the same non-empty mask, so it never meets this case)."""
    m = _pixel_mask(mask, x)
    beta, gamma = cd_decompose(net, x, m, weights)
    weight_of_masked = torch.stack([beta, gamma], dim=-1).softmax(-1)[..., 0]  # = sigmoid(beta - gamma)
    has_mask = m.flatten(1).amax(1) > 0
    return torch.where(has_mask, weight_of_masked.mean(-1), torch.zeros_like(weight_of_masked[:, 0]))


# ---------------------------------------------------------------------------------------------
# the hook for FeedbackBNN and the plain PyTorch step
# ---------------------------------------------------------------------------------------------
def default_weight(mode: str) -> float:
    if mode not in DEFAULT_WEIGHTS:
        raise ValueError(f"mode {mode!r} has no penalty weight; penalty modes: {', '.join(PENALTY_MODES)}")
    return DEFAULT_WEIGHTS[mode]


def penalty_terms(mode: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  weights: str = "mean") -> torch.Tensor:
    """The unweighted per-image penalty (B,) of a penalty mode."""
    if mode == "rrr":
        return rrr_penalty(logits_function(net, weights), x, mask)
    if mode == "l1grad":
        return l1_grad_penalty(logits_function(net, weights), x, y, mask)
    if mode == "cdep":
        return cdep_penalty(net, x, mask, weights)
    if mode == "eg":
        return eg_penalty(logits_function(net, weights), x, y, mask)
    raise ValueError(f"mode {mode!r} has no penalty; penalty modes: {', '.join(PENALTY_MODES)}")


def make_penalty(mode: str, weight: Optional[float] = None, weights: str = "mean") -> Optional[Callable]:
    """``penalty(net, x, y, mask) -> weight * per-image penalty (B,)`` for the ``penalty`` hook of
    :class:`pyro_ebnn.model.FeedbackBNN`; ``None`` for the modes without a penalty (none, feedback,
    augment). ``weight=None``: the default of the mode (:data:`DEFAULT_WEIGHTS`)."""
    if mode in ("none", "feedback", "augment"):
        return None
    w = default_weight(mode) if weight is None else float(weight)
    if not (math.isfinite(w) and w > 0):
        raise ValueError(f"penalty weight must be > 0, got {weight}")
    _check_weights(weights)

    def penalty(net, x, y, mask):
        return w * penalty_terms(mode, net, x, y, mask, weights)
    penalty.mode, penalty.weight = mode, w
    return penalty

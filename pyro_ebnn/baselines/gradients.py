"""Input-gradient penalties (double backward): Right for the Right Reasons (Ross et al. 2017), the
thesis' L1 gradient penalty ([002] Eq. 4.8-4.9) and Expected Gradients as an attribution prior
(Erion et al. 2021). Each takes ``logits_fn: x -> logits`` and returns one value per image."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .masks import pixel_mask

__all__ = ["rrr_penalty", "l1_grad_penalty", "other_images", "expected_gradients", "eg_penalty"]


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
    m = pixel_mask(mask, x)
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
    m = pixel_mask(mask, x)
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
    m = pixel_mask(mask, x)
    if references is None:
        references = x[other_images(len(x), x.device)]
    if alpha is None:
        alpha = torch.rand(len(x), device=x.device, dtype=x.dtype)
    if references.shape != x.shape or alpha.shape != (len(x),):
        raise ValueError(f"references must have the images' shape {tuple(x.shape)} and alpha shape ({len(x)},); "
                         f"got {tuple(references.shape)} and {tuple(alpha.shape)}")
    phi = expected_gradients(_true_class_score(logits_fn, y.to(x.device)), x, references.detach(), alpha)
    return (m * phi).abs().flatten(1).sum(1)


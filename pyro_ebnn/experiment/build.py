"""Turn a :class:`Config` into the swappable pieces: network, prior, likelihood, evidence, penalty,
ELBO, and the loss the training loop minimizes."""
from __future__ import annotations

import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ..baselines import PointModel, make_penalty, point_network
from ..bnn import ARCHITECTURES, PRIORS, CategoricalLikelihood, FeedbackBNN, FeedbackEvidence, standardized
from ..errors import ConfigError

__all__ = ["build_net", "build_evidence", "build_model", "build_elbo", "resolve_device"]


def build_net(cfg, input_shape, num_classes):
    c, h, w = input_shape
    net = ARCHITECTURES[cfg.architecture](num_classes, in_channels=c, image_size=h, rho_init=cfg.rho_init)
    return standardized(net) if cfg.standardize else net


def build_evidence(cfg, lam=None):
    if cfg.mode != "feedback":
        return None
    return FeedbackEvidence(lam=cfg.lam if lam is None else lam, pool=cfg.mask_pool,
                            gradient_filter=cfg.gradient_filter)


def build_model(cfg, input_shape, num_classes, lam=None):
    """The model of ``cfg.mode``: feedback -> evidence; rrr / l1grad / cdep / eg -> a loss penalty
    and no evidence; none / augment -> neither (augment acts on the images, in the training loop).
    ``network: deterministic`` -> a :class:`~pyro_ebnn.baselines.PointModel` of the same architecture."""
    net = build_net(cfg, input_shape, num_classes)
    if cfg.network == "deterministic":
        return PointModel(point_network(net), cfg.mode, cfg.penalty_weight)
    prior = PRIORS[cfg.prior](scale=cfg.prior_scale)
    return FeedbackBNN(net, prior=prior, likelihood=CategoricalLikelihood(cfg.class_weights),
                       evidence=build_evidence(cfg, lam), penalty=make_penalty(cfg.mode, cfg.penalty_weight))


def build_elbo(cfg):
    cls = TraceMeanField_ELBO if cfg.elbo == "meanfield" else Trace_ELBO
    return cls(num_particles=cfg.num_particles, vectorize_particles=cfg.num_particles > 1,
               max_plate_nesting=1)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)

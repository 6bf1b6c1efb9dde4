"""Turn a :class:`Config` into the swappable pieces: network, prior, likelihood, evidence, penalty,
ELBO, and the loss the training loop minimizes."""
from __future__ import annotations

from pathlib import Path

import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ..baselines import PointModel, check_rbr_cost, make_penalty, point_network
from ..bnn import (ARCHITECTURES, PRIORS, TORCHVISION_PREFIX, is_torchvision, torchvision_cnn, torchvision_state, CategoricalLikelihood, FeedbackBNN, FeedbackEvidence, imagenet_alexnet_state,
                   load_means, load_pretrained_means, normalized, standardized)
from ..errors import ConfigError
from .config import AUTO

__all__ = ["RUN_MODEL", "build_net", "initial_state", "build_evidence", "build_model", "build_elbo", "resolve_device"]

#: the selected network of a run directory (rundir.MODEL; rundir imports this module, not back)
RUN_MODEL = "model.pt"


def build_net(cfg, input_shape, num_classes, initialize: bool = True):
    """The network ``cfg`` names for C x H x W inputs and ``num_classes`` classes, behind its fixed
    first layer (``standardize``, ``normalize``). With ``initialize`` the posterior means start at
    ``pretrained`` ImageNet weights or at the network of the run ``init_from``; without, at the
    architecture's own start (a network about to receive a saved state)."""
    c, h, w = input_shape
    if c != 3 and (cfg.normalize == "imagenet" or cfg.pretrained is not False):
        raise ConfigError(f"ImageNet weights and normalization take RGB images, these have {c} channel(s); set "
                          "normalize: none and pretrained: false, or read the images with channels: 3")
    trained = initial_state(cfg.init_from) if initialize and cfg.init_from else None
    if is_torchvision(cfg.architecture):
        name = cfg.architecture[len(TORCHVISION_PREFIX):]
        state = torchvision_state(name, cfg.pretrained) if initialize and cfg.pretrained is not False else None
        net = torchvision_cnn(name, num_classes, in_channels=c, image_size=h, rho_init=cfg.rho_init,
                              evidence_layer=cfg.evidence_layer, state=state)
        net = standardized(net) if cfg.standardize else normalized(net, cfg.normalize)
        if trained is not None:
            load_means(net, trained[1], str(trained[0]))
        return net
    pretrained = imagenet_alexnet_state(cfg.pretrained) if initialize and cfg.pretrained is not False else None
    extra = {"batch_norm": cfg.batch_norm} if cfg.architecture == "alexnet" else {}
    net = ARCHITECTURES[cfg.architecture](num_classes, in_channels=c, image_size=h, rho_init=cfg.rho_init, **extra)
    if pretrained is not None:
        load_pretrained_means(net, pretrained, "torchvision's ImageNet AlexNet" if cfg.pretrained is True
                              else str(cfg.pretrained))
    net = standardized(net) if cfg.standardize else normalized(net, cfg.normalize)
    if trained is not None:
        load_means(net, trained[1], str(trained[0]))
    return net


def initial_state(run) -> tuple[Path, dict]:
    """``(file, state dict)`` of the network saved in a run directory (or a model.pt file)."""
    path = Path(run)
    path = path if path.suffix == ".pt" else path / RUN_MODEL
    if not path.is_file():
        raise ConfigError(f"init_from: no saved network at {path}; pass the --out directory of a finished run")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or "net" not in payload:
        raise ConfigError(f"init_from: {path} is not a model saved by pyro-ebnn (no network in it); pass the --out "
                          "directory of a finished run")
    return path, payload["net"]


def build_evidence(cfg, lam=None, holes=None):
    """The evidence of a feedback run; ``lam`` replaces the config's (needed when it says ``auto``);
    none for ``lam = 0``, the candidate of ``lam: auto`` that trains without feedback. ``holes``
    replaces ``evidence_holes``; ``auto`` builds ``shared``, which :func:`~.runs.train` turns into
    ``none`` when even shared holes tell the class (:func:`~.holes.look_at_holes`)."""
    if cfg.mode != "feedback":
        return None
    lam = cfg.lam if lam is None else lam
    if lam == 0:
        return None
    if lam == "auto":
        raise ConfigError("lam: auto is a search, not a weight: the train and finetune commands choose the number "
                          "(pyro_ebnn.experiment.search); pass lam= to build a model directly")
    holes = holes or cfg.evidence_holes
    return FeedbackEvidence(lam=lam, pool=cfg.mask_pool, gradient_filter=cfg.gradient_filter,
                            channels=cfg.evidence_channels, holes="shared" if holes == AUTO else holes)


def build_model(cfg, input_shape, num_classes, lam=None, initialize: bool = True):
    """The model of ``cfg.mode``: feedback -> evidence; rrr / l1grad / cdep / eg / ... -> a loss penalty
    and no evidence; none / augment -> neither (augment acts on the images, in the training loop).
    ``network: deterministic`` -> a :class:`~pyro_ebnn.baselines.PointModel` of the same architecture.
    ``initialize``: see :func:`build_net` (false when a saved state is loaded next)."""
    net = build_net(cfg, input_shape, num_classes, initialize)
    if cfg.mode == "rbr":
        c, h, w = input_shape
        check_rbr_cost(sum(p.numel() for name, p in net.named_parameters() if not name.endswith("_rho")), c * h * w)
    if cfg.network == "deterministic":
        return PointModel(point_network(net), cfg.mode, cfg.penalty_weight)
    prior = PRIORS[cfg.prior](scale=cfg.prior_scale)
    return FeedbackBNN(net, prior=prior, likelihood=CategoricalLikelihood(cfg.class_weights),
                       evidence=build_evidence(cfg, lam), penalty=make_penalty(cfg.mode, cfg.penalty_weight),
                       analytic_kl=cfg.elbo == "meanfield", kl_scale=cfg.kl_scale)


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

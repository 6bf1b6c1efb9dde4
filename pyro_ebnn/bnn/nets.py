"""Architectures: a Bayesian CNN split at its last convolution, which carries the evidence.

``body``  : everything that produces the input of the last convolution;
``evidence_layer``: the last (Bayesian) convolution, whose pre-activation is a Pyro sample site;
``head``  : the nonlinearity after it, pooling, and the classifier.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..errors import ConfigError, DataError
from .layers import BayesianConv2d, BayesianLayer, BayesianLinear, bayesian_layers, run_lrt

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "NORMALIZATIONS", "ARCHITECTURES", "channel_moments", "Standardize",
           "BayesianCNN", "AT", "layer_sequence", "plain_network", "weights_at", "logits_at", "posterior_network",
           "lenet", "alexnet", "cdep_cnn", "standardized", "normalized", "fit_standardization",
           "standardization_of", "imagenet_alexnet_file", "pretrained_state", "imagenet_alexnet_state", "load_pretrained_means",
           "load_means"]

#: torchvision's ImageNet channel statistics, what its pretrained weights expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: fixed first layers of a network (config key ``normalize``)
NORMALIZATIONS = ("none", "imagenet")

def channel_moments(images, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (n - 1) of N x C x H x W images, given as one tensor
    or as an iterable of such batches (images read from disk), accumulated in double precision
    one chunk at a time (no full-size double copy of the data)."""
    parts = (images[s:s + chunk] for s in range(0, len(images), chunk)) if isinstance(images, torch.Tensor) else images
    total = squares = None
    n = 0
    for part in parts:
        if part.dim() != 4:
            raise DataError(f"images must be N x C x H x W, got shape {tuple(part.shape)}")
        x = part.detach().to("cpu", torch.float64)
        total = x.sum((0, 2, 3)) if total is None else total + x.sum((0, 2, 3))
        squares = x.square().sum((0, 2, 3)) if squares is None else squares + x.square().sum((0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
    if total is None:
        raise DataError("no images to compute channel statistics from")
    mean = total / n
    var = (squares - n * mean.square()).clamp_min(0) / max(n - 1, 1)
    return mean, var.sqrt()


class Standardize(nn.Module):
    """x -> (x - mean) / std per channel, with the statistics of the training images (:meth:`fit`)
    or given ones (ImageNet's, :func:`normalized`).

    [000] Sec. 5.2 standardizes its inputs (after the counterexamples' noise is put in). Here the
    standardization is the network's fixed first layer (buffers, saved with the model): data, masks,
    decoys and counterexamples stay in pixel space [0, 1], and attributions are taken w.r.t. pixels.

    >>> layer = Standardize(3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    >>> [round(v, 4) for v in layer(torch.full((1, 3, 1, 1), 0.5)).flatten().tolist()]
    [0.0655, 0.1964, 0.4178]
    """

    def __init__(self, channels: int, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels) if mean is None else torch.tensor(mean, dtype=torch.float))
        self.register_buffer("std", torch.ones(channels) if std is None else torch.tensor(std, dtype=torch.float))
        if self.mean.shape != (channels,) or self.std.shape != (channels,):
            raise ValueError(f"mean and std need {channels} values, one per channel")

    def fit(self, images) -> "Standardize":
        """Set mean and std per channel from N x C x H x W images, one tensor or an iterable of batches
        (in double precision)."""
        if isinstance(images, torch.Tensor) and (images.dim() != 4 or images.shape[1] != len(self.mean)):
            raise DataError(f"standardization of {len(self.mean)}-channel inputs needs N x {len(self.mean)} x H x W "
                            f"images, got shape {tuple(images.shape)}")
        mean, std = channel_moments(images)
        if len(mean) != len(self.mean):
            raise DataError(f"standardization of {len(self.mean)}-channel inputs got {len(mean)}-channel images")
        if not (std > 1e-8).all():
            bad = [int(c) for c in (std <= 1e-8).nonzero().flatten()]
            raise DataError(f"channel(s) {bad} of the training images are constant, so they cannot be "
                            "standardized; set standardize: false")
        with torch.no_grad():
            self.mean.copy_(mean.to(self.mean))
            self.std.copy_(std.to(self.std))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.view(-1, 1, 1)) / self.std.view(-1, 1, 1)

    def extra_repr(self) -> str:
        return f"{len(self.mean)}"


class BayesianCNN(nn.Module):
    """A Bayesian CNN split at its last convolution, which carries the evidence.

    >>> net = lenet(num_classes=10)
    >>> net.evidence_shape                     # the last convolution's pre-activation, C x u x v
    (16, 11, 11)
    >>> mean, std = net.evidence_moments(torch.zeros(2, 1, 28, 28))
    >>> tuple(mean.shape), bool((std > 0).all())
    ((2, 16, 11, 11), True)
    """

    def __init__(self, body: nn.Module, evidence_layer: BayesianConv2d, head: nn.Module, input_shape):
        super().__init__()
        self.body, self.evidence_layer, self.head = body, evidence_layer, head
        self.input_shape = tuple(input_shape)
        self._point_body = not any(isinstance(m, BayesianLayer) for m in body.modules())
        norms = [b for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
        kept = [b.clone() for b in norms]  # a zero image must not move batch norms' running statistics
        with torch.no_grad():
            mean, _ = self.evidence_moments(torch.zeros((1,) + self.input_shape))
            for b, k in zip(norms, kept):
                b.copy_(k)
        self.evidence_shape = tuple(mean.shape[1:])

    def evidence_moments(self, x: torch.Tensor, sample_shape: torch.Size = torch.Size()):
        """mu_U and sigma_U of the last-conv pre-activation (LRT through the body)."""
        z = run_lrt(self.body, x, sample_shape)
        if sample_shape and self._point_body:  # a body of point estimates: the draws start at the evidence layer
            z = z.expand(sample_shape + z.shape)
        return self.evidence_layer.moments(z)

    def classify(self, a: torch.Tensor) -> torch.Tensor:
        """Logits from a (sampled) last-conv pre-activation."""
        return run_lrt(self.head, a)

    def receptive_field_cells(self, mask: torch.Tensor) -> torch.Tensor:
        """N x 1 x u x v: True for every last-conv cell whose receptive field holds an irrelevant
        pixel (each convolution and pooling up to the last convolution, replayed as a max pool
        over the mask)."""
        m = mask.float()
        for name, module in layer_sequence(self):
            if isinstance(module, BayesianConv2d):
                k = module.weight_loc.shape[-1]
                m = F.max_pool2d(m, k, module.stride, module.padding)
            elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
                m = F.max_pool2d(m, module.kernel_size, module.stride, module.padding, ceil_mode=module.ceil_mode)
            elif not isinstance(module, (nn.ReLU, nn.BatchNorm2d, nn.Dropout, Standardize)):
                raise ValueError(f"receptive-field pooling does not know {type(module).__name__}; "
                                 "use mask_pool: max or min")
            if module is self.evidence_layer:
                return m > 0.5
        raise AssertionError("the evidence layer is part of the network")  # pragma: no cover

    def head_at(self, a: torch.Tensor, at: str = "mean") -> torch.Tensor:
        """The head applied to a last-conv pre-activation with one weight setting (see
        :func:`weights_at`); used by the gradient filter of [001] Eq. (12)."""
        head = {k[len("head."):]: v for k, v in weights_at(self, at).items() if k.startswith("head.")}
        skeleton = plain_network(self).head
        skeleton.train(self.training)
        return functional_call(skeleton, head, (a,), strict=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One LRT sample of the logits in train mode; the logits of the posterior mean in eval
        mode (the network :func:`logits_at` runs at ``"mean"``, here through :func:`run_lrt`: with
        its max pool without gradient, validation of LeNet runs at 48,000 instead of 23,000 images/s
        on 1 CPU thread)."""
        if not self.training:
            return self.classify(self.evidence_layer(run_lrt(self.body, x)))
        mean, std = self.evidence_moments(x)
        return self.classify(mean + std * torch.randn_like(std))


# -- the network with one weight setting: the posterior mean or a draw from q(w) ------------------
AT = ("mean", "sample")


def layer_sequence(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers a network applies, in order, as ``(qualified name, module)``: the body, the
    evidence layer and the head of a :class:`BayesianCNN` or of its :func:`plain_network`, or the
    children of any ``nn.Sequential`` (nested sequentials unrolled). The names are those of
    ``net.named_modules()``, so ``name + ".weight"`` keys :func:`weights_at`.

    >>> [name for name, _ in layer_sequence(lenet())][:4]
    ['body.0', 'body.1', 'body.2', 'evidence_layer']
    """
    if not isinstance(net, (BayesianCNN, nn.Sequential)):
        raise TypeError(f"no layer sequence for {type(net).__name__}; use a BayesianCNN or an nn.Sequential")
    out = []

    def walk(prefix, module):
        children = list(module.named_children())
        if isinstance(module, (BayesianCNN, nn.Sequential)) and children:
            for name, child in children:
                walk(f"{prefix}.{name}" if prefix else name, child)
        else:
            out.append((prefix, module))
    walk("", net)
    return out


def _plain_layer(layer: BayesianLayer) -> nn.Module:
    shape = layer.weight_loc.shape
    if isinstance(layer, BayesianConv2d):
        return nn.Conv2d(shape[1], shape[0], shape[2], stride=layer.stride, padding=layer.padding, device="meta")
    return nn.Linear(shape[1], shape[0], device="meta")


def plain_network(net: BayesianCNN) -> nn.Sequential:
    """The plain skeleton of ``net``: ``nn.Sequential(body, evidence_layer, head)`` with
    ``nn.Conv2d`` / ``nn.Linear`` in place of the Bayesian layers (on the meta device: it holds no
    weights of its own) and the same module names. Built once per network; :func:`logits_at`
    runs it with ``torch.func.functional_call`` and :func:`posterior_network` fills a copy."""
    cached = net.__dict__.get("_plain_network")
    if cached is not None:
        return cached

    def convert(module):
        if isinstance(module, BayesianLayer):
            return _plain_layer(module)
        if hasattr(module, "converted"):  # a block with Bayesian convolutions (backbones.ResidualBlock)
            return module.converted(convert)
        if isinstance(module, nn.Sequential):
            return nn.Sequential(OrderedDict((name, convert(child)) for name, child in module.named_children()))
        if any(isinstance(m, BayesianLayer) for m in module.modules()):
            raise TypeError(f"cannot convert {type(module).__name__} holding Bayesian layers; nest Bayesian "
                            "layers in nn.Sequential only")
        return copy.deepcopy(module)  # a distinct instance (DeepLIFT must not see a ReLU twice)

    skeleton = nn.Sequential(OrderedDict([("body", convert(net.body)),
                                          ("evidence_layer", convert(net.evidence_layer)),
                                          ("head", convert(net.head))]))
    skeleton.input_shape = tuple(net.input_shape)
    net.__dict__["_plain_network"] = skeleton  # not a submodule: no parameters, no state_dict entries
    return skeleton


def weights_at(net: BayesianCNN, at: str = "mean", generator: Optional[torch.Generator] = None) -> dict:
    """Parameters and buffers of :func:`plain_network` with one weight setting of q(w): the posterior
    mean (``at="mean"``) or one draw w = mu + softplus(rho) * eps (``at="sample"``; differentiable
    in mu and rho; ``generator`` seeds eps on the CPU). Layers that are not Bayesian (batch norm,
    :class:`Standardize`) keep their own tensors."""
    if at not in AT:
        raise ValueError(f"at must be 'mean' (the posterior mean) or 'sample' (one draw from q), got {at!r}")
    state = dict(net.named_buffers())
    state.update((name, p) for name, p in net.named_parameters()
                 if not name.endswith(("_loc", "_rho")))
    for name, layer in net.named_modules():
        if isinstance(layer, BayesianLayer):
            for part in ("weight", "bias"):
                loc = getattr(layer, f"{part}_loc")
                if at == "sample":
                    eps = torch.randn(loc.shape, generator=generator, dtype=loc.dtype,
                                      device="cpu" if generator is not None else loc.device).to(loc.device)
                    loc = loc + getattr(layer, f"{part}_scale") * eps
                state[f"{name}.{part}"] = loc
    return state


def logits_at(net: nn.Module, x: torch.Tensor, at: str = "mean") -> torch.Tensor:
    """Logits of one weight setting, differentiable: a :class:`BayesianCNN` at its posterior mean
    (``at="mean"``, what ``net.eval(); net(x)`` returns) or at one draw from q(w); a plain network
    as it is.

    >>> net = lenet()
    >>> x = torch.rand(3, 1, 28, 28)
    >>> bool(torch.allclose(logits_at(net, x), net.eval()(x)))
    True
    """
    if not isinstance(net, BayesianCNN):
        return net(x)
    skeleton = plain_network(net)
    skeleton.train(net.training)
    return functional_call(skeleton, weights_at(net, at), (x,), strict=True)


def posterior_network(net: BayesianCNN, at: str = "mean", generator: Optional[torch.Generator] = None) -> nn.Sequential:
    """A plain ``nn.Sequential(body, evidence_layer, head)`` of ``nn.Conv2d`` / ``nn.Linear`` / ReLU /
    pooling that carries one weight setting of ``net`` (:func:`weights_at`): what Captum explains
    and the point networks start from. It is a copy in eval mode with frozen parameters, shares no
    module instance with ``net``, and keeps ``net.input_shape``; ``.evidence_layer`` is the last
    convolution.

    >>> net = lenet()
    >>> plain = posterior_network(net)
    >>> x = torch.rand(2, 1, 28, 28)
    >>> bool(torch.allclose(plain(x), net.eval()(x)))
    True
    """
    if not isinstance(net, BayesianCNN):
        raise TypeError(f"expected a BayesianCNN, got {type(net).__name__}")
    plain = copy.deepcopy(plain_network(net))
    with torch.no_grad():
        state = {k: v.detach().clone() for k, v in weights_at(net, at, generator).items()}
    plain.load_state_dict(state, assign=True)
    plain.input_shape = tuple(net.input_shape)
    plain.eval()
    for p in plain.parameters():
        p.requires_grad_(False)
    return plain


def lenet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, rho_init: float = -2.0) -> BayesianCNN:
    """LeNet of [000]: conv(c->6,3) ReLU pool2 conv(6->16,3) ReLU pool2 fc 400-120-84-K.

    For 28-pixel inputs the last conv is 16 x 11 x 11."""
    body = nn.Sequential(BayesianConv2d(in_channels, 6, 3, rho_init=rho_init), nn.ReLU(), nn.MaxPool2d(2))
    evidence = BayesianConv2d(6, 16, 3, rho_init=rho_init)
    side = ((image_size - 2) // 2 - 2) // 2
    head = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(1),
                         BayesianLinear(16 * side * side, 120, rho_init), nn.ReLU(),
                         BayesianLinear(120, 84, rho_init), nn.ReLU(),
                         BayesianLinear(84, num_classes, rho_init))
    return BayesianCNN(body, evidence, head, (in_channels, image_size, image_size))


def alexnet(num_classes: int, in_channels: int = 3, image_size: int = 224, rho_init: float = -3.8,
            batch_norm: bool = False) -> BayesianCNN:
    """AlexNet of [000] (torchvision layout; last conv 256 x 13 x 13 for 224-pixel inputs).

    ``batch_norm=True`` adds batch norm after each convolution, as [001] does (no dropout).
    """
    def bn(c):
        return [nn.BatchNorm2d(c)] if batch_norm else []

    body = nn.Sequential(
        BayesianConv2d(in_channels, 64, 11, 4, 2, rho_init), *bn(64), nn.ReLU(), nn.MaxPool2d(3, 2),
        BayesianConv2d(64, 192, 5, padding=2, rho_init=rho_init), *bn(192), nn.ReLU(), nn.MaxPool2d(3, 2),
        BayesianConv2d(192, 384, 3, padding=1, rho_init=rho_init), *bn(384), nn.ReLU(),
        BayesianConv2d(384, 256, 3, padding=1, rho_init=rho_init), *bn(256), nn.ReLU())
    evidence = BayesianConv2d(256, 256, 3, padding=1, rho_init=rho_init)
    head = nn.Sequential(*bn(256), nn.ReLU(), nn.MaxPool2d(3, 2), nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(1),
                         BayesianLinear(256 * 6 * 6, 4096, rho_init), nn.ReLU(),
                         BayesianLinear(4096, 4096, rho_init), nn.ReLU(),
                         BayesianLinear(4096, num_classes, rho_init))
    return BayesianCNN(body, evidence, head, (in_channels, image_size, image_size))


def cdep_cnn(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, rho_init: float = -2.0) -> BayesianCNN:
    """The MNIST CNN of [004] (S2.1): conv(c->20,5) pool2 conv(20->50,5) pool2 fc 256-K, ReLUs.

    The network the CDEP paper reports its DecoyMNIST numbers on; for 28-pixel inputs the last
    conv is 50 x 8 x 8."""
    body = nn.Sequential(BayesianConv2d(in_channels, 20, 5, rho_init=rho_init), nn.ReLU(), nn.MaxPool2d(2))
    evidence = BayesianConv2d(20, 50, 5, rho_init=rho_init)
    side = ((image_size - 4) // 2 - 4) // 2
    head = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(1),
                         BayesianLinear(50 * side * side, 256, rho_init), nn.ReLU(),
                         BayesianLinear(256, num_classes, rho_init))
    return BayesianCNN(body, evidence, head, (in_channels, image_size, image_size))


def standardized(net: BayesianCNN, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None) -> BayesianCNN:
    """``net`` with a :class:`Standardize` layer in front of its body; any architecture. Without
    ``mean`` and ``std`` the statistics are set later by :func:`fit_standardization`."""
    body = list(net.body.children()) if isinstance(net.body, nn.Sequential) else [net.body]
    first = Standardize(net.input_shape[0], mean, std)
    return BayesianCNN(nn.Sequential(first, *body), net.evidence_layer, net.head, net.input_shape)


def normalized(net: BayesianCNN, normalize: str = "imagenet") -> BayesianCNN:
    """``net`` behind a fixed normalization layer (``normalize``: one of :data:`NORMALIZATIONS`;
    ``"none"`` returns ``net``): ``imagenet`` = torchvision's ImageNet mean and std.

    >>> net = normalized(alexnet(num_classes=2, image_size=64))
    >>> net.body[0]
    Standardize(3)
    """
    if normalize == "none":
        return net
    if normalize != "imagenet":
        raise ValueError(f"unknown normalization {normalize!r}; use one of {', '.join(NORMALIZATIONS)}")
    return standardized(net, IMAGENET_MEAN, IMAGENET_STD)


# -- starting points for the posterior means ----------------------------------------------------------
def imagenet_alexnet_file() -> Path:
    """Where torchvision keeps its ImageNet AlexNet weights: the torch hub cache
    (``$TORCH_HOME/hub/checkpoints``, or ``torch.hub.set_dir``)."""
    from torchvision.models import AlexNet_Weights
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(AlexNet_Weights.IMAGENET1K_V1.url).name


def pretrained_state(weights, name: str, source: Union[bool, str] = True) -> dict:
    """The state dict of torchvision's network ``name`` with the pretrained ``weights`` (a torchvision
    ``Weights`` entry): ``True`` = from the torch hub cache (downloaded there when missing and online),
    a path = a state-dict file. Unavailable weights are a :class:`ConfigError` naming the file, where
    it comes from and the way out (``pretrained: false``)."""
    if source is True:
        where = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        try:
            return weights.get_state_dict(progress=False)
        except Exception as e:  # offline (URLError, OSError), or a corrupt file
            raise ConfigError(f"pretrained: true needs torchvision's ImageNet {name} weights; looked for {where} "
                              f"(downloaded from {weights.url}) and could not get them ({type(e).__name__}); put "
                              "the file there, set pretrained: PATH to a copy, or set pretrained: false")
    path = Path(str(source))
    if not path.is_file():
        raise ConfigError(f"pretrained: {path} does not exist; it should be a state dict of torchvision's {name} "
                          f"(e.g. {Path(weights.url).name} from {weights.url}), or set pretrained: true or false")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"pretrained: cannot read {path} as a state dict ({type(e).__name__}); save one with "
                          "torch.save(model.state_dict(), path), or set pretrained: false")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"pretrained: {path} is not a state dict (a dict of tensors); save one with "
                          "torch.save(model.state_dict(), path), or set pretrained: false")
    return state


def imagenet_alexnet_state(source: Union[bool, str] = True) -> dict:
    """The state dict of torchvision's AlexNet (``AlexNet_Weights.IMAGENET1K_V1``), as :func:`pretrained_state` reads it."""
    from torchvision.models import AlexNet_Weights
    return pretrained_state(AlexNet_Weights.IMAGENET1K_V1, "AlexNet", source)


def load_pretrained_means(net: BayesianCNN, state: dict, where: str = "the pretrained weights",
                          last: bool = False) -> list[str]:
    """Set the posterior means of ``net``'s Bayesian layers to the convolution and linear weights
    of a plain network's ``state`` (torchvision naming: ``<layer>.weight`` and ``<layer>.bias``, in
    the network's order), all but the last layer unless ``last`` (the classifier's last layer is
    sized to the dataset's classes). Returns the names of the layers set; the scales keep rho_init.
    """
    plain = [k[: -len(".weight")] for k, v in state.items() if k.endswith(".weight") and v.dim() in (2, 4)]
    layers = list(bayesian_layers(net).items())
    if len(plain) != len(layers):
        raise ConfigError(f"{where} hold {len(plain)} convolution and linear layers, the network has {len(layers)}; "
                          "they do not belong to this architecture")
    done = []
    for source, (name, layer) in list(zip(plain, layers))[: None if last else -1]:
        for part in ("weight", "bias"):
            value, target = state.get(f"{source}.{part}"), getattr(layer, f"{part}_loc")
            if value is None or tuple(value.shape) != tuple(target.shape):
                got = "nothing" if value is None else f"shape {tuple(value.shape)}"
                raise ConfigError(f"{where}: {source}.{part} has {got}, the network's {name}.{part} needs "
                                  f"{tuple(target.shape)}; they do not belong to this architecture")
            with torch.no_grad():
                target.copy_(value)
        done.append(name)
    return done


def load_means(net: nn.Module, state: dict, where: str = "the saved network") -> None:
    """Start ``net`` from a trained network of the same architecture: posterior means from a plain
    network's ``<name>.weight`` (a deterministic run) or a Bayesian one's ``<name>.weight_loc``;
    every other parameter and buffer (batch norm, normalization) copied; the scales keep rho_init."""
    for key, target in list(net.state_dict(keep_vars=True).items()):
        if key.endswith("_rho"):
            continue
        value = state.get(key, state.get(key[: -len("_loc")]) if key.endswith("_loc") else None)
        if value is None or tuple(value.shape) != tuple(target.shape):
            got = "no such entry" if value is None else f"shape {tuple(value.shape)}"
            raise ConfigError(f"{where}: {key.removesuffix('_loc')} has {got}, the network needs "
                              f"{tuple(target.shape)}; init_from needs a run of the same architecture, classes, "
                              "image size and first layers")
        with torch.no_grad():
            target.copy_(value)


def fit_standardization(net: nn.Module, images) -> dict:
    """Fit the :class:`Standardize` layer of ``net`` (Bayesian or point network) to the training
    ``images`` (a tensor or an iterable of batches); returns ``{"input_mean": [...], "input_std": [...]}`` for the run's metrics."""
    layers = [m for m in net.modules() if isinstance(m, Standardize)]
    if len(layers) != 1:
        raise ValueError(f"expected one Standardize layer in the network, found {len(layers)}")
    layers[0].fit(images)
    return standardization_of(net)


def standardization_of(net: nn.Module) -> dict:
    """``{"input_mean": [...], "input_std": [...]}`` of the network's :class:`Standardize` layer, or
    ``{}`` for a network that takes raw inputs."""
    layers = [m for m in net.modules() if isinstance(m, Standardize)]
    return {"input_mean": layers[0].mean.tolist(), "input_std": layers[0].std.tolist()} if layers else {}


ARCHITECTURES = {"lenet": lenet, "alexnet": alexnet, "cdep_cnn": cdep_cnn}

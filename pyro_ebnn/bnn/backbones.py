"""torchvision's residual networks as Bayesian CNNs: the evidence on a stage's output.

``architecture: torchvision:<name>`` (resnet18, resnet34, resnet50, resnet101, resnet152, the
ResNet family of ``torchvision.models``) with ``evidence_layer: <stage>`` (``layer1`` … ``layer4``)
splits torchvision's network as [000] splits LeNet:

``body``: the stem and every block before the last block of the stage, torchvision's own modules
    (point estimates, trained with the rest, or started from torchvision's ImageNet weights);
``evidence_layer``: the stage's last block, its convolutions Bayesian with LRT, *without* its final
    ReLU: its output is the stage's pre-activation, ``bn(conv(h)) + shortcut(x)``, Gaussian given
    its input (:meth:`ResidualBlock.moments`);
``head``: that ReLU, the later stages' blocks (Bayesian with LRT), the global average pool and a
    Bayesian linear classifier.

The stage's cells are the evidence's cells: for 224-pixel images 7 x 7 after ``layer4``, 14 x 14
after ``layer3``; ``evidence_layer: auto`` takes the deepest stage with at least
:data:`MIN_CELLS` cells a side.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError
from .layers import BayesianConv2d, BayesianLinear, run_lrt
from .nets import BayesianCNN, pretrained_state

__all__ = ["TORCHVISION_PREFIX", "STAGES", "MIN_CELLS", "ResidualBlock", "torchvision_cnn", "torchvision_state",
           "is_torchvision"]

#: ``architecture: torchvision:<name>``
TORCHVISION_PREFIX = "torchvision:"
#: the stages of a torchvision ResNet, in order
STAGES = ("layer1", "layer2", "layer3", "layer4")
#: ``evidence_layer: auto``: the deepest stage whose map has at least this many cells a side
MIN_CELLS = 7


def is_torchvision(architecture: str) -> bool:
    """Whether an ``architecture`` names a torchvision network.

    >>> is_torchvision("torchvision:resnet18"), is_torchvision("lenet")
    (True, False)
    """
    return architecture.startswith(TORCHVISION_PREFIX)


def _pair(v) -> int:
    a, b = (v, v) if isinstance(v, int) else tuple(v)
    if a != b:
        raise ConfigError(f"a convolution with unequal sides ({a}, {b}) has no Bayesian counterpart here")
    return a


def _bayesian_conv(conv: nn.Conv2d, rho_init: float) -> BayesianConv2d:
    """A Bayesian convolution whose posterior mean starts at ``conv``'s weights (bias 0 where it has none)."""
    if conv.groups != 1 or _pair(conv.dilation) != 1:
        raise ConfigError("grouped or dilated convolutions (ResNeXt, wide dilated ResNets) have no Bayesian "
                          "counterpart here; use resnet18, resnet34, resnet50, resnet101 or resnet152")
    out, inp, k, _ = conv.weight.shape
    layer = BayesianConv2d(inp, out, k, _pair(conv.stride), _pair(conv.padding), rho_init)
    with torch.no_grad():
        layer.weight_loc.copy_(conv.weight)
        layer.bias_loc.copy_(conv.bias if conv.bias is not None else torch.zeros(out))
    return layer


def _batch_norm_scale(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """The factor by which ``bn`` multiplies its input's deviations, C x 1 x 1: weight / sqrt(var + eps),
    with the batch's variance of ``x`` in train mode (what ``bn(x)`` divides by) or the running one."""
    if bn.training or bn.running_var is None:
        var = x.var((0, 2, 3), unbiased=False)
    else:
        var = bn.running_var
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    return scale.view(-1, 1, 1)


def _folded(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """A 4-d module applied to ``z`` with its leading sample dimensions folded into the batch."""
    out = module(z.flatten(0, z.dim() - 4))
    return out.reshape(z.shape[:-3] + out.shape[1:])


class ResidualBlock(nn.Module):
    """torchvision's ``BasicBlock`` / ``Bottleneck`` with plain or Bayesian convolutions:
    ``out = relu(bn_k(conv_k(... relu(bn_1(conv_1(x))))) + shortcut(x))``, the shortcut the identity
    or ``downsample`` (a 1 x 1 convolution and batch norm). Modules keep torchvision's names
    (``conv1``, ``bn1``, …, ``downsample.0``). ``final_relu=False``: the block's pre-activation.

    >>> block = ResidualBlock([BayesianConv2d(4, 4, 3, padding=1), BayesianConv2d(4, 4, 3, padding=1)],
    ...                       [nn.BatchNorm2d(4), nn.BatchNorm2d(4)], final_relu=False).eval()
    >>> mean, std = block.moments(torch.rand(2, 4, 5, 5))
    >>> tuple(mean.shape), bool((std > 0).all())
    ((2, 4, 5, 5), True)
    """

    def __init__(self, convs: Sequence[nn.Module], norms: Sequence[nn.Module], downsample: Optional[nn.Module] = None,
                 final_relu: bool = True):
        super().__init__()
        if len(convs) != len(norms) or not convs:
            raise ValueError("a residual block needs one batch norm per convolution")
        self.depth = len(convs)
        for i, (conv, norm) in enumerate(zip(convs, norms), 1):
            self.add_module(f"conv{i}", conv)
            self.add_module(f"bn{i}", norm)
            if i < len(convs) or final_relu:
                self.add_module(f"relu{i}", nn.ReLU())  # one ReLU per use (DeepLIFT must not see one twice)
        self.downsample = downsample
        self.final_relu = final_relu

    def _part(self, kind: str, i: int) -> nn.Module:
        return getattr(self, f"{kind}{i}")

    def _shortcut(self, x: torch.Tensor, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        if self.downsample is None:
            return x
        return _folded(self.downsample[1], run_lrt(self.downsample[0], x, sample_shape))

    def _inner(self, x: torch.Tensor, sample_shape: torch.Size) -> torch.Tensor:
        """The input of the last convolution (one LRT sample where the convolutions are Bayesian)."""
        h = x
        for i in range(1, self.depth):
            h = self._part("relu", i)(_folded(self._part("bn", i), run_lrt(self._part("conv", i), h, sample_shape)))
            sample_shape = torch.Size()
        return h

    def run_lrt(self, x: torch.Tensor, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """One LRT sample of the block's output (the posterior mean's output in eval mode)."""
        h = self._inner(x, sample_shape)
        last = self.depth
        out = _folded(self._part("bn", last), run_lrt(self._part("conv", last), h))
        out = out + self._shortcut(x, sample_shape)
        return self._part("relu", last)(out) if self.final_relu else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_lrt(x)

    def moments(self, x: torch.Tensor, sample_shape: torch.Size = torch.Size()) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the block's pre-activation under q(w) given its input, with
        the inner convolutions sampled (LRT): the last convolution's LRT Gaussian through its batch
        norm (an affine map: the batch's statistics in train mode, the running ones in eval mode) plus
        the shortcut (the identity, or the downsampling convolution's own Gaussian through its batch
        norm, independent of the first)."""
        h = self._inner(x, sample_shape)
        last, bn = self._part("conv", self.depth), self._part("bn", self.depth)
        mean, std = last.moments(h)
        flat = mean.flatten(0, mean.dim() - 4)
        scale = _batch_norm_scale(bn, flat)
        mean = _folded(bn, mean)
        std = std * scale.abs()
        if self.downsample is None:
            return mean + x, std
        conv, norm = self.downsample
        short_mean, short_std = conv.moments(x)
        short_scale = _batch_norm_scale(norm, short_mean.flatten(0, short_mean.dim() - 4))
        return mean + _folded(norm, short_mean), torch.sqrt(std.square() + (short_std * short_scale.abs()).square())

    def converted(self, convert) -> "ResidualBlock":
        """The same block with ``convert`` applied to its convolutions (the plain skeleton of
        :func:`~pyro_ebnn.bnn.nets.plain_network`); batch norms copied."""
        convs = [convert(self._part("conv", i)) for i in range(1, self.depth + 1)]
        norms = [copy.deepcopy(self._part("bn", i)) for i in range(1, self.depth + 1)]
        down = None if self.downsample is None else nn.Sequential(convert(self.downsample[0]),
                                                                  copy.deepcopy(self.downsample[1]))
        return ResidualBlock(convs, norms, down, self.final_relu)


def _torchvision_block(block: nn.Module, rho_init: float, final_relu: bool = True) -> ResidualBlock:
    """A torchvision ``BasicBlock`` or ``Bottleneck`` as a :class:`ResidualBlock` with Bayesian
    convolutions whose posterior means start at the block's weights."""
    depth = 3 if hasattr(block, "conv3") else 2
    convs = [_bayesian_conv(getattr(block, f"conv{i}"), rho_init) for i in range(1, depth + 1)]
    norms = [copy.deepcopy(getattr(block, f"bn{i}")) for i in range(1, depth + 1)]
    down = None
    if block.downsample is not None:
        down = nn.Sequential(_bayesian_conv(block.downsample[0], rho_init), copy.deepcopy(block.downsample[1]))
    return ResidualBlock(convs, norms, down, final_relu)


def _point_block(block: nn.Module) -> ResidualBlock:
    """A torchvision block as a :class:`ResidualBlock` of its own (point-estimated) modules, with a
    ReLU per use instead of torchvision's one shared in-place ReLU (what DeepLIFT needs)."""
    depth = 3 if hasattr(block, "conv3") else 2
    return ResidualBlock([getattr(block, f"conv{i}") for i in range(1, depth + 1)],
                         [getattr(block, f"bn{i}") for i in range(1, depth + 1)], block.downsample)


def torchvision_state(name: str, source: Union[bool, str] = True) -> dict:
    """The state dict of torchvision's ``name`` with ImageNet weights: ``True`` = its default weights
    from the torch hub cache (downloaded there when missing and online), a path = a state-dict file.
    Unavailable weights are a :class:`ConfigError` that names the file and the way out."""
    import torchvision  # imported where used: it takes 2 s, which every command would pay
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except Exception:
        raise ConfigError(f"torchvision has no pretrained weights for {name!r}; set pretrained: false")
    return pretrained_state(weights, name, source)


def _resnet(name: str) -> nn.Module:
    import torchvision
    try:
        net = torchvision.models.get_model(name, weights=None)
    except Exception:
        names = ", ".join(n for n in torchvision.models.list_models(torchvision.models) if n.startswith("resnet"))
        raise ConfigError(f"architecture: torchvision has no classification network {name!r}; the ResNet family "
                          f"works here: {names}")
    if not all(hasattr(net, s) for s in STAGES + ("conv1", "fc")):
        raise ConfigError(f"architecture: torchvision:{name} is not a ResNet (stages layer1 … layer4); the ResNet "
                          "family works here: resnet18, resnet34, resnet50, resnet101, resnet152")
    return net


def _stem(net: nn.Module, in_channels: int) -> list[nn.Module]:
    conv = net.conv1
    if in_channels != conv.in_channels:
        wide = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
        with torch.no_grad():  # grey (or other) images: the RGB filters averaged over their channels
            wide.weight.copy_(conv.weight.mean(1, keepdim=True).expand_as(wide.weight))
        conv = wide
    return [conv, net.bn1, nn.ReLU(), net.maxpool]


def _stage_sides(net: nn.Module, stem: list[nn.Module], in_channels: int, image_size: int) -> dict[str, int]:
    sides, z = {}, torch.zeros(1, in_channels, image_size, image_size)
    with torch.no_grad():
        for m in stem:
            z = m.eval()(z) if isinstance(m, nn.BatchNorm2d) else m(z)
        for stage in STAGES:
            z = getattr(net, stage).eval()(z)
            sides[stage] = min(z.shape[-2:])
    net.train()
    return sides


def torchvision_cnn(name: str, num_classes: int, in_channels: int = 3, image_size: int = 224,
                    rho_init: float = -3.8, evidence_layer: str = "auto", state: Optional[dict] = None) -> BayesianCNN:
    """torchvision's ResNet ``name`` as a :class:`BayesianCNN` with the evidence on the output of the
    stage ``evidence_layer`` (``auto``: the deepest with at least :data:`MIN_CELLS` cells a side);
    ``state``: torchvision's weights to start from (its classifier is left out: it is sized to the
    dataset's classes), e.g. :func:`torchvision_state`.

    >>> net = torchvision_cnn("resnet18", num_classes=2, image_size=64)
    >>> net.evidence_shape                       # layer2's output: 128 channels, 8 x 8 cells
    (128, 8, 8)
    """
    net = _resnet(name)
    if state is not None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("fc.")]:
            raise ConfigError(f"the pretrained weights do not belong to torchvision's {name} (missing "
                              f"{len(missing)}, unexpected {len(unexpected)} entries); set pretrained: false")
    stem = _stem(net, in_channels)
    sides = _stage_sides(net, stem, in_channels, image_size)
    if evidence_layer == "auto":
        deep = [s for s in STAGES if sides[s] >= MIN_CELLS]
        if not deep:
            raise ConfigError(f"{image_size}-pixel images leave fewer than {MIN_CELLS} cells a side after every stage "
                              f"of {name} ({sides['layer1']} after layer1); use image_size of at least "
                              f"{4 * MIN_CELLS} or name evidence_layer")
        evidence_layer = deep[-1]
    if evidence_layer not in STAGES:
        raise ConfigError(f"evidence_layer: {evidence_layer!r} is not a stage of {name}; use auto or one of "
                          f"{', '.join(STAGES)}")
    k = STAGES.index(evidence_layer)
    stage = list(getattr(net, evidence_layer))
    body = nn.Sequential(*stem, *[_point_block(b) for s in STAGES[:k] for b in getattr(net, s)],
                         *[_point_block(b) for b in stage[:-1]])
    evidence = _torchvision_block(stage[-1], rho_init, final_relu=False)
    later = [_torchvision_block(b, rho_init) for s in STAGES[k + 1:] for b in getattr(net, s)]
    fc = net.fc
    classifier = BayesianLinear(fc.in_features, num_classes, rho_init)
    head = nn.Sequential(nn.ReLU(), *later, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), classifier)
    cnn = BayesianCNN(body, evidence, head, (in_channels, image_size, image_size))
    cnn.evidence_stage = evidence_layer
    return cnn


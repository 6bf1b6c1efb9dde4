"""torchvision ResNets as Bayesian CNNs (pyro_ebnn.bnn.backbones): the evidence block's Gaussian
against weight draws, the split network against its plain copy, config errors, and a run through
the CLI on an image folder."""
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from pyro_ebnn.bnn import BayesianConv2d, ResidualBlock, posterior_network, torchvision_cnn
from pyro_ebnn.errors import ConfigError
from pyro_ebnn.experiment.config import load_config

from image_fixtures import write_folder


def _drawn(layer: BayesianConv2d, generator) -> nn.Conv2d:
    """A plain convolution with weights drawn from the layer's q(w)."""
    conv = nn.Conv2d(layer.weight_loc.shape[1], layer.weight_loc.shape[0], layer.weight_loc.shape[-1],
                     layer.stride, layer.padding)
    with torch.no_grad():
        conv.weight.copy_(layer.weight_loc + layer.weight_scale * torch.randn(layer.weight_loc.shape, generator=generator))
        conv.bias.copy_(layer.bias_loc + layer.bias_scale * torch.randn(layer.bias_loc.shape, generator=generator))
    return conv


def test_the_evidence_blocks_gaussian_is_that_of_its_output_under_weight_draws():
    torch.manual_seed(0)
    convs = [BayesianConv2d(3, 4, 3, padding=1, rho_init=-2.0), BayesianConv2d(4, 4, 3, stride=2, padding=1, rho_init=-2.0)]
    norms = [nn.BatchNorm2d(4), nn.BatchNorm2d(4)]
    for bn in norms:  # running statistics and affine parameters away from the identity
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(-1.5, 1.5), bn.bias.data.uniform_(-0.5, 0.5)
    down = nn.Sequential(BayesianConv2d(3, 4, 1, stride=2, rho_init=-2.0), nn.BatchNorm2d(4))
    down[1].running_var.uniform_(0.5, 2.0), down[1].weight.data.uniform_(0.5, 1.5)
    block = ResidualBlock(convs, norms, down, final_relu=False).eval()   # eval: conv1 at its mean
    x = torch.rand(2, 3, 6, 6)
    with torch.no_grad():
        mean, std = block.moments(x)
        h = block.relu1(norms[0](convs[0].mean(x)))
        g = torch.Generator().manual_seed(1)
        draws = torch.stack([norms[1](_drawn(convs[1], g)(h)) + down[1](_drawn(down[0], g)(x)) for _ in range(4000)])
    # 4000 draws: the standard error of the mean is std / 63, of the std about std / 89
    assert torch.allclose(draws.mean(0), mean, atol=float(5 * std.max() / 63))
    assert torch.allclose(draws.std(0), std, rtol=0.08)


def test_the_split_resnet_is_the_plain_resnet_and_chooses_its_evidence_stage_by_size():
    torch.manual_seed(0)
    net = torchvision_cnn("resnet18", num_classes=3, image_size=64)
    assert (net.evidence_stage, net.evidence_shape) == ("layer2", (128, 8, 8))      # 4 x 4 after layer3
    assert torchvision_cnn("resnet18", 3, image_size=64, evidence_layer="layer3").evidence_shape == (256, 4, 4)
    assert torchvision_cnn("resnet18", 3, in_channels=1, image_size=224).evidence_shape == (512, 7, 7)
    x = torch.rand(2, 3, 64, 64)
    net.eval()
    assert torch.allclose(posterior_network(net)(x), net(x), atol=1e-5)
    net.train()
    mean, std = net.evidence_moments(x, torch.Size([4]))        # four particles, drawn from the evidence block on
    assert mean.shape == (4, 2, 128, 8, 8) and not torch.allclose(mean[0], mean[1])


@pytest.mark.parametrize("settings, message", [
    ({"architecture": "torchvision:resnet18", "mask_pool": "receptive"}, "receptive pool would mark every cell"),
    ({"architecture": "lenet", "evidence_layer": "layer3"}, "set evidence_layer: auto"),
    ({"architecture": "torchvision:resnet18", "evidence_layer": "layer5"}, "use auto or one of layer1"),
    ({"architecture": "torchvis:resnet18"}, "torchvision:<name>"),
])
def test_config_refuses_what_a_resnet_cannot_do(settings, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/image_folder_small.yaml", settings)


def test_unknown_networks_and_missing_weights_name_the_way_out(tmp_path):
    with pytest.raises(ConfigError, match="the ResNet family works here: resnet"):
        torchvision_cnn("resnet19", 2, image_size=64)
    with pytest.raises(ConfigError, match="is not a ResNet"):
        torchvision_cnn("vgg11", 2, image_size=64)
    from pyro_ebnn.bnn import torchvision_state
    with pytest.raises(ConfigError, match="does not exist.*resnet18-"):
        torchvision_state("resnet18", str(tmp_path / "weights.pth"))


def test_a_resnet_trains_with_feedback_from_an_image_folder(tmp_path):
    root = write_folder(tmp_path / "images", per_class=(12, 4), masked=range(6))
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "pyro_ebnn.run", "train", "--config", "configs/image_folder_small.yaml",
                           "--set", f"data_dir={root}", "--set", "architecture=torchvision:resnet18",
                           "--set", "image_size=32", "--set", "lam=1e-3", "--set", "epochs=1", "--set", "batch_size=8",
                           "--set", "threads=1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0 and "worst_group_accuracy" in metrics

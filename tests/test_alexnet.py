"""AlexNet as the papers use it: posterior means from ImageNet weights (a fake state-dict file, no
network access), [001]'s batch-norm variant, ImageNet normalization as a fixed first layer, and
starting from a trained run (init_from)."""
from urllib.error import URLError

import pytest
import torch
from torch import nn

from pyro_ebnn.bnn import (IMAGENET_MEAN, IMAGENET_STD, Standardize, bayesian_layers, imagenet_alexnet_file, lenet,
                           normalized, posterior_network)
from pyro_ebnn.errors import ConfigError
from pyro_ebnn.experiment.build import build_model, build_net
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.rundir import load_model, save_model

#: torchvision's AlexNet state dict: (key, shape) of each convolution and linear layer, in order
TORCHVISION_ALEXNET = [("features.0", (64, 3, 11, 11)), ("features.3", (192, 64, 5, 5)),
                       ("features.6", (384, 192, 3, 3)), ("features.8", (256, 384, 3, 3)),
                       ("features.10", (256, 256, 3, 3)), ("classifier.1", (4096, 9216)),
                       ("classifier.4", (4096, 4096)), ("classifier.6", (1000, 4096))]


def fake_alexnet_state(seed=0) -> dict:
    """A state dict with torchvision's AlexNet keys and shapes and distinct values; the two large
    linear weights are expanded from one column (distinct rows), so the file stays small."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in TORCHVISION_ALEXNET:
        if len(shape) == 2 and shape[1] > 4096 - 1:
            state[f"{key}.weight"] = torch.randn(shape[0], 1, generator=g).expand(shape)
        else:
            state[f"{key}.weight"] = torch.randn(shape, generator=g)
        state[f"{key}.bias"] = torch.randn(shape[0], generator=g)
    return state


@pytest.fixture(scope="module")
def state_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "alexnet.pth"
    torch.save(fake_alexnet_state(), path)
    assert path.stat().st_size < 12e6                  # not the 233 MB of the real file
    return path


def _cfg(**kw):
    return load_config(None, {"architecture": "alexnet", "normalize": "imagenet", "rho_init": -5.0, **kw})


def test_pretrained_means_equal_the_state_dict_but_the_last_layer_fits_the_classes(state_file):
    state = torch.load(state_file, weights_only=True)
    net = build_net(_cfg(pretrained=str(state_file)), (3, 224, 224), num_classes=5)
    layers = list(bayesian_layers(net).values())
    for (key, _), layer in zip(TORCHVISION_ALEXNET[:-1], layers[:-1]):
        assert torch.equal(layer.weight_loc, state[f"{key}.weight"]), key
        assert torch.equal(layer.bias_loc, state[f"{key}.bias"]), key
        assert torch.allclose(layer.weight_rho, torch.full_like(layer.weight_rho, -5.0))
    assert layers[-1].weight_loc.shape == (5, 4096)
    assert not torch.equal(layers[-1].bias_loc[:5], state["classifier.6.bias"][:5])
    assert net.evidence_shape == (256, 13, 13) and net.evidence_layer is layers[4]
    assert isinstance(net.body[0], Standardize)


def test_pretrained_true_reads_torchvisions_file_from_the_torch_hub_cache(state_file, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    cached = imagenet_alexnet_file()
    assert cached.name == "alexnet-owt-7be5be79.pth" and cached.parent == tmp_path / "hub" / "checkpoints"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(state_file.read_bytes())
    net = build_net(_cfg(pretrained=True, batch_norm=True), (3, 224, 224), num_classes=2)
    conv1 = list(bayesian_layers(net).values())[0]
    assert torch.equal(conv1.weight_loc, torch.load(state_file, weights_only=True)["features.0.weight"])
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 5       # [001]'s variant


def test_without_the_weights_offline_one_line_names_the_file_where_it_comes_from_and_the_way_out(tmp_path,
                                                                                                 monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise URLError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConfigError, match=r"looked for .*hub/checkpoints/alexnet-owt-7be5be79\.pth \(downloaded from "
                                          r"https://download\.pytorch\.org/models/alexnet-owt-7be5be79\.pth\).*"
                                          r"pretrained: false") as e:
        build_net(_cfg(pretrained=True), (3, 64, 64), 2)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"pretrained: .*nowhere\.pth does not exist; .*or set pretrained: true or false"):
        build_net(_cfg(pretrained=str(tmp_path / "nowhere.pth")), (3, 64, 64), 2)
    torch.save(posterior_network(lenet()).state_dict(), tmp_path / "lenet.pth")
    with pytest.raises(ConfigError, match="hold 5 convolution and linear layers, the network has 8"):
        build_net(_cfg(pretrained=str(tmp_path / "lenet.pth")), (3, 64, 64), 2)


def test_imagenet_normalization_is_a_fixed_first_layer_saved_with_the_model(tmp_path):
    """(on LeNet with 3 channels, which saves and loads in a blink; the layer is the same for AlexNet)"""
    trained = posterior_network(normalized(lenet(in_channels=3, num_classes=2)))   # a run with the same layers
    (tmp_path / "init").mkdir()
    torch.save({"net": trained.state_dict()}, tmp_path / "init" / "model.pt")
    cfg = load_config(None, {"normalize": "imagenet", "init_from": str(tmp_path / "init")})
    model = build_model(cfg, (3, 28, 28), 2)
    first = model.net.body[0]
    x = torch.rand(2, 3, 28, 28)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(first(x), (x - mean) / std)
    assert not any(p is first.mean for p in model.net.parameters())      # buffers, not trained
    model.net.eval()
    assert torch.allclose(model.net(x), trained(x), atol=1e-5)            # started from the run
    save_model(tmp_path / "model.pt", model, cfg, (3, 28, 28), 2)
    (tmp_path / "init" / "model.pt").unlink()                            # loading needs no starting point
    loaded, _, _ = load_model(tmp_path / "model.pt")
    assert torch.equal(loaded.net.body[0].mean, torch.tensor(IMAGENET_MEAN))
    loaded.net.eval()
    assert torch.allclose(loaded.net(x), model.net(x))
    with pytest.raises(ConfigError, match="was trained with normalize: imagenet, the config asks for none"):
        load_model(tmp_path / "model.pt", cfg=load_config(None))


def test_init_from_starts_the_means_at_a_trained_deterministic_run(tmp_path):
    cfg = load_config(None, {"architecture": "lenet", "rho_init": -4.0})
    trained = posterior_network(lenet())                                 # what a network: deterministic run saves
    torch.save({"net": trained.state_dict(), "config": cfg.to_dict()}, tmp_path / "model.pt")
    net = build_net(load_config(None, {"init_from": str(tmp_path), "rho_init": -4.0}), (1, 28, 28), 10)
    for name, layer in zip(["body.0", "evidence_layer", "head.3", "head.5", "head.7"], bayesian_layers(net).values()):
        assert torch.equal(layer.weight_loc, trained.state_dict()[f"{name}.weight"]), name
        assert torch.allclose(layer.weight_rho, torch.full_like(layer.weight_rho, -4.0))
    with pytest.raises(ConfigError, match="body.0.weight has shape .6, 1, 3, 3., the network needs .6, 3, 3, 3.; "
                                          "init_from needs a run of the same architecture"):
        build_net(load_config(None, {"init_from": str(tmp_path)}), (3, 28, 28), 10)
    with pytest.raises(ConfigError, match="init_from: no saved network at .*elsewhere/model.pt"):
        build_net(load_config(None, {"init_from": str(tmp_path / "elsewhere")}), (1, 28, 28), 10)


def test_config_refuses_what_does_not_fit():
    with pytest.raises(ConfigError, match="pretrained weights exist for alexnet and torchvision"):
        load_config(None, {"pretrained": True})
    with pytest.raises(ConfigError, match="batch norm is a variant of alexnet"):
        load_config(None, {"batch_norm": True})
    with pytest.raises(ConfigError, match="standardize and normalize both"):
        load_config(None, {"standardize": True, "normalize": "imagenet"})
    with pytest.raises(ConfigError, match="use none or imagenet, got 'cifar'"):
        load_config(None, {"normalize": "cifar"})
    with pytest.raises(ConfigError, match="either pretrained weights or a trained run"):
        load_config(None, {"architecture": "alexnet", "pretrained": True, "init_from": "runs/x"})
    with pytest.raises(ConfigError, match="ImageNet weights and normalization take RGB images, these have 1 channel"):
        build_net(load_config(None, {"normalize": "imagenet"}), (1, 28, 28), 10)       # grey digits
    assert load_config(None, {"architecture": "alexnet", "pretrained": "no"}).pretrained is False
    assert load_config(None, {"architecture": "alexnet", "pretrained": "w.pth"}).pretrained == "w.pth"

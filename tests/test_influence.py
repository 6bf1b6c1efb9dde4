"""RBR (pyro_ebnn.baselines.influence): the influence map is the input gradient of the summed
parameter gradient, checked against a closed form by finite differences; it vanishes for a linear
softmax model; the penalty is zero off the mask and trains both networks' weights; networks too
large for it are refused in one line."""
import pytest
import torch
import torch.nn.functional as F

from pyro_ebnn.baselines import influence_map, rbr_penalty
from pyro_ebnn.baselines.influence import rbr_on
from pyro_ebnn.bnn import lenet
from pyro_ebnn.errors import ConfigError
from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config


def _two_layer(seed=0):
    g = torch.Generator().manual_seed(seed)
    v, c = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    w, b = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    return v, c, w, b


def _summed_gradient(x, y, v, c, w, b):
    """Closed form of sum_j d loss / d theta_j for logits = W tanh(V x + c) + b: the output layer adds
    sum_k (p_k - y_k) (sum_j h_j + 1) = 0; the hidden layer adds sum_j delta_j (sum_d x_d + 1)
    with delta_j = sum_k (p_k - y_k) W_kj (1 - h_j^2)."""
    h = torch.tanh(x @ v.T + c)
    p = (h @ w.T + b).softmax(-1)
    delta = ((p - F.one_hot(y, 3)) @ w) * (1 - h ** 2)
    return (delta.sum(-1) * (x.sum(-1) + 1)).sum()


def test_influence_is_the_input_gradient_of_the_summed_parameter_gradient():
    v, c, w, b = (t.requires_grad_(True) for t in _two_layer())
    x = torch.rand(3, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    ours = influence_map(lambda z: torch.tanh(z @ v.T + c) @ w.T + b, [v, c, w, b], x, y)
    eps, numeric = 1e-6, torch.zeros_like(x)
    with torch.no_grad():
        for i in range(3):
            for d in range(4):
                up, down = x.clone(), x.clone()
                up[i, d] += eps
                down[i, d] -= eps
                numeric[i, d] = (_summed_gradient(up, y, v, c, w, b) - _summed_gradient(down, y, v, c, w, b)) / (2 * eps)
    assert torch.allclose(ours, numeric, atol=1e-6)
    assert numeric.abs().max() > 1e-2


def test_a_linear_softmax_model_has_no_influence():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 3, 0])
    assert influence_map(net, list(net.parameters()), x, y).abs().max() < 1e-6


@pytest.mark.parametrize("at", ["mean", "sample"])
def test_rbr_is_zero_off_the_mask_and_trains_the_weights(at):
    torch.manual_seed(0)
    net = lenet()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([1, 2, 3, 4])
    mask = torch.zeros(4, 1, 28, 28)
    mask[:2, :, :4, :4] = 1
    p = rbr_penalty(*rbr_on(net, at), x, y, mask)
    assert (p[2:] == 0).all() and (p[:2] > 0).all()
    p.sum().backward()
    assert net.body[0].weight_loc.grad.abs().sum() > 0 and net.head[-1].weight_loc.grad.abs().sum() > 0


def test_rbr_refuses_a_network_too_large_for_its_graph():
    cfg = load_config(None, {"mode": "rbr", "architecture": "alexnet", "image_size": 224, "channels": 3})
    with pytest.raises(ConfigError, match="mode rbr .* use rrr"):
        build_model(cfg, (3, 224, 224), 2)
    assert build_model(load_config(None, {"mode": "rbr"}), (1, 28, 28), 10).penalty.mode == "rbr"

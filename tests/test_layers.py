"""The LRT moments must be the exact mean and variance of the pre-activation under q(w)."""
import pytest
import torch
import torch.nn.functional as F

from pyro_ebnn.bnn import BayesianConv2d, BayesianLinear, run_lrt
from pyro_ebnn.bnn import lenet

K = 40000  # Monte Carlo weight draws


def _randomize(layer):
    with torch.no_grad():
        layer.weight_rho.uniform_(-3.0, 0.5)  # sigma from 0.05 to 0.97: softplus vs exp differ by > 10%
        layer.bias_rho.uniform_(-3.0, 0.5)
        layer.weight_loc.normal_(0, 0.5)
        layer.bias_loc.normal_(0, 0.5)


def _check(mc_out, mean, std):
    mc_mean, mc_var = mc_out.mean(0), mc_out.var(0)
    var = std ** 2
    # standard errors: mean sigma/sqrt(K); variance ~ var*sqrt(2/K) (Gaussian); allow 5 SE
    assert torch.all((mc_mean - mean).abs() <= 5 * std / K ** 0.5 + 1e-6)
    assert torch.all((mc_var - var).abs() <= 5 * var * (2 / K) ** 0.5 + 1e-6)


def _weight_draws(layer):
    """K draws of (weight, bias) from q(w) = N(loc, softplus(rho)^2)."""
    w = layer.weight_loc + layer.weight_scale * torch.randn((K,) + layer.weight_loc.shape)
    b = layer.bias_loc + layer.bias_scale * torch.randn((K,) + layer.bias_loc.shape)
    return w, b


def test_linear_lrt_moments_match_weight_sampling():
    torch.manual_seed(1)
    layer = BayesianLinear(5, 3)
    _randomize(layer)
    z = torch.randn(2, 5)
    with torch.no_grad():
        mean, std = layer.moments(z)
        w, b = _weight_draws(layer)
        mc = torch.einsum("kji,ni->knj", w, z) + b[:, None]
    _check(mc, mean, std)


def test_conv_lrt_moments_match_weight_sampling():
    torch.manual_seed(2)
    layer = BayesianConv2d(2, 3, 3)
    _randomize(layer)
    z = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        mean, std = layer.moments(z)
        w, b = _weight_draws(layer)
        # K weight draws as one grouped convolution
        mc = F.conv2d(z.repeat(1, K, 1, 1), w.reshape(K * 3, 2, 3, 3), b.reshape(-1), groups=K)
        mc = mc.reshape(K, 3, 3, 3)
    _check(mc, mean[0], std[0])


def test_layer_samples_have_the_lrt_moments():
    torch.manual_seed(3)
    layer = BayesianLinear(4, 2)
    _randomize(layer)
    z = torch.randn(1, 4)
    with torch.no_grad():
        mean, std = layer.moments(z)
        draws = layer(z, torch.Size([K]))
    _check(draws[:, 0], mean[0], std[0])
    layer.eval()
    assert torch.equal(layer(z), mean)


def test_leading_sample_dimensions_are_independent_draws():
    net = lenet()
    x = torch.rand(3, 1, 28, 28)
    out = run_lrt(net.body, x, torch.Size([4]))
    assert out.shape == (4, 3, 6, 13, 13)
    assert not torch.allclose(out[0], out[1])


def test_lenet_never_sees_the_last_two_input_rows_and_columns():
    # 28 -> conv 3 -> 26 -> pool -> 13 -> conv 3 -> 11 -> pool (floor) -> 5 drops the evidence layer's
    # last row and column, whose receptive field is the only one holding input rows/columns 26-27;
    # docs/results/finetune.md explains the top-left corner's larger attribution share by this
    torch.manual_seed(0)
    net = lenet(num_classes=10).eval()
    x = torch.rand(8, 1, 28, 28, requires_grad=True)
    net(x).sum().backward()
    seen = x.grad.abs().sum((0, 1)) > 0
    assert not seen[26:].any() and not seen[:, 26:].any()
    assert seen[:26, :26].all()


@pytest.mark.parametrize("shape,values", [((4, 6, 26, 26), "gaussian"), ((4, 6, 26, 26), "relu"),
                                          ((3, 16, 11, 11), "relu"), ((2, 3, 4, 7, 9), "binary"),
                                          ((5, 6, 8), "binary")])
def test_the_2x2_max_pool_has_the_values_and_gradient_of_torchs(shape, values):
    """Values and gradients equal to F.max_pool2d, also where a window holds its maximum twice (the
    zeros after a ReLU, binary inputs: the gradient goes to the first), for odd sizes (the last row
    and column are left out) and with leading sample dimensions."""
    from pyro_ebnn.bnn import max_pool_2x2
    g = torch.Generator().manual_seed(0)
    z = torch.randn(shape, generator=g)
    z = {"gaussian": z, "relu": z.relu(), "binary": (z > 0).float()}[values]
    ours, ref = z.clone().requires_grad_(), z.clone().requires_grad_()
    out = max_pool_2x2(ours)
    lead = ref.flatten(0, ref.dim() - 4) if ref.dim() > 4 else ref
    expected = F.max_pool2d(lead, 2).reshape(out.shape)
    assert torch.equal(out, expected)
    grad = torch.randn(out.shape, generator=g)
    out.backward(grad)
    expected.backward(grad)
    assert torch.equal(ours.grad, ref.grad)
    with torch.no_grad():
        assert torch.equal(max_pool_2x2(z), expected)

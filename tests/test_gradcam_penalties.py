"""RRR-G and HINT (pyro_ebnn.baselines.gradcam): the differentiable Grad-CAM map is Captum's
LayerGradCam scaled to [0, 1]; the penalties are their closed forms on it; a weight sample is shared
by the map's two halves; the penalties move the weights."""
import pytest
import torch
from captum.attr import LayerGradCam

from pyro_ebnn.baselines import hint_penalty, rrr_gradcam_penalty, split_at_evidence
from pyro_ebnn.baselines.gradcam import cell_mask, gradcam_map
from pyro_ebnn.bnn import lenet, logits_at, posterior_network


@pytest.fixture
def batch():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    mask = torch.zeros(6, 1, 28, 28)
    mask[:4, :, :4, :4] = 1      # a decoy in the top-left corner on four images
    mask[1, :, 20:, 20:] = 1
    return x, y, mask


def _captum(net, x, target):
    plain = posterior_network(net)
    g = LayerGradCam(plain, plain.evidence_layer).attribute(x, target=target, relu_attributions=False)[:, 0]
    low, high = g.flatten(1).min(1).values[:, None, None], g.flatten(1).max(1).values[:, None, None]
    return (g - low) / (high - low)


def test_the_map_is_captums_gradcam_scaled_to_unit_range(batch):
    x, y, _ = batch
    net = lenet()
    ours = gradcam_map(*split_at_evidence(net), x, y)
    assert ours.shape == (6, 11, 11)
    assert torch.allclose(ours, _captum(net, x, y), atol=1e-5)
    assert torch.allclose(ours.flatten(1).amin(1), torch.zeros(6)) and torch.allclose(ours.flatten(1).amax(1), torch.ones(6))


def test_penalties_are_their_closed_forms(batch):
    x, y, mask = batch
    net = lenet()
    predicted = logits_at(net, x).argmax(-1)
    m = torch.nn.functional.adaptive_avg_pool2d(mask, (11, 11))[:, 0]
    assert torch.allclose(cell_mask(mask, x, (11, 11)), m)
    rrr_g = rrr_gradcam_penalty(*split_at_evidence(net), x, mask)
    assert torch.allclose(rrr_g, (m * _captum(net, x, predicted)).square().flatten(1).sum(1), atol=1e-5)
    assert (rrr_g[4:] == 0).all() and (rrr_g[:4] > 0).all()
    hint = hint_penalty(*split_at_evidence(net), x, y, mask)
    expected = (_captum(net, x, y) - (1 - m)).square().flatten(1).sum(1)
    assert torch.allclose(hint[:4], expected[:4], atol=1e-4)
    assert (hint[4:] == 0).all()          # no mask: no importance map, no penalty


def test_a_weight_sample_is_shared_by_features_and_head(batch):
    x, _, _ = batch
    net = lenet()
    torch.manual_seed(1)
    features, classify = split_at_evidence(net, "sample")
    torch.manual_seed(1)
    expected = logits_at(net, x, "sample")
    assert torch.allclose(classify(features(x)), expected, atol=1e-5)


@pytest.mark.parametrize("which", ["rrr_gradcam", "hint"])
def test_the_penalty_moves_the_weights_below_the_evidence_layer_too(batch, which):
    x, y, mask = batch
    net = lenet()
    parts = split_at_evidence(net)
    p = rrr_gradcam_penalty(*parts, x, mask) if which == "rrr_gradcam" else hint_penalty(*parts, x, y, mask)
    p.sum().backward()
    assert net.body[0].weight_loc.grad.abs().sum() > 0
    assert net.evidence_layer.weight_loc.grad.abs().sum() > 0

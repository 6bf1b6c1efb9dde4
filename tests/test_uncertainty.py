"""Calibration and uncertainty metrics against numbers computed by hand, and the posterior
predictive sites returned by pyro.infer.Predictive."""
import math

import numpy as np
import pytest
import torch

from pyro_ebnn import FeedbackBNN, lenet
from pyro_ebnn.data.base import ImageSet, Split
from pyro_ebnn.errors import EBNNError
from pyro_ebnn.bnn import PREACTIVATION_SITE, bayesian_layers, posterior_predictive, predictive_probs
from pyro_ebnn.metrics import (brier, ece, mutual_information, mutual_information_per_image, nll, plugin_metrics,
                               predictive_entropy, reliability, uncertainty_metrics)

# five images, three classes; confidences 0.70, 0.50, 0.75, 0.62, 0.72 (none on a bin edge of 1/15)
P = np.array([[0.70, 0.20, 0.10],   # y 0: correct
              [0.20, 0.50, 0.30],   # y 2: predicts 1, wrong
              [0.10, 0.15, 0.75],   # y 2: correct
              [0.62, 0.28, 0.10],   # y 1: predicts 0, wrong
              [0.72, 0.18, 0.10]])  # y 1: predicts 0, wrong
Y = np.array([0, 2, 2, 1, 1])


def test_ece_by_hand():
    # bins of width 1/15: 0.70 and 0.72 share bin (10/15, 11/15]; 0.50, 0.75, 0.62 are alone.
    # bin (10/15, 11/15]: accuracy 1/2, mean confidence 0.71 -> |0.5 - 0.71| = 0.21, weight 2/5
    # the others: |0 - 0.50| = 0.50, |1 - 0.75| = 0.25, |0 - 0.62| = 0.62, weight 1/5 each
    expected = 2 / 5 * 0.21 + (0.50 + 0.25 + 0.62) / 5
    assert expected == pytest.approx(0.358)
    assert ece(Y, P) == pytest.approx(expected, abs=1e-12)
    table = reliability(Y, P)
    assert table["count"].sum() == 5 and table["count"][10] == 2
    assert table["accuracy"][10] == pytest.approx(0.5) and table["confidence"][10] == pytest.approx(0.71)
    # a perfectly calibrated toy: confidence 1 and always right
    assert ece([0, 1], [[1.0, 0.0], [0.0, 1.0]]) == pytest.approx(0.0)


def test_brier_by_hand():
    rows = [0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2,
            0.2 ** 2 + 0.5 ** 2 + 0.7 ** 2,
            0.1 ** 2 + 0.15 ** 2 + 0.25 ** 2,
            0.62 ** 2 + 0.72 ** 2 + 0.1 ** 2,
            0.72 ** 2 + 0.82 ** 2 + 0.1 ** 2]
    assert sum(rows) / 5 == pytest.approx(0.62572)
    assert brier(Y, P) == pytest.approx(0.62572, abs=1e-9)


def test_nll_by_hand_uses_the_mean_predictive():
    expected = -(math.log(0.70) + math.log(0.30) + math.log(0.75) + math.log(0.28) + math.log(0.18)) / 5
    assert nll(Y, P) == pytest.approx(expected, abs=1e-9)
    # two posterior samples whose mean is P: NLL of the mean, not the mean of the NLLs
    d = np.array([[0.05, -0.05, 0.0]] * 5)
    samples = np.stack([P + d, P - d])
    assert nll(Y, samples) == pytest.approx(expected, abs=1e-9)
    per_sample = np.mean([nll(Y, s) for s in samples])
    assert per_sample > expected + 1e-4


def test_plugin_metrics_by_hand():
    # confidences 0.9 and 0.6, both correct: ECE (0.1 + 0.4) / 2; Brier (0.02 + 0.32) / 2
    p = np.array([[0.9, 0.1], [0.4, 0.6]])
    m = plugin_metrics(np.array([0, 1]), p)
    assert m == pytest.approx({"plugin_nll": -(math.log(0.9) + math.log(0.6)) / 2, "plugin_brier": 0.17,
                               "plugin_ece": 0.25})


def test_mutual_information_zero_for_identical_samples_positive_for_disagreeing():
    same = torch.tensor(P, dtype=torch.float64).expand(4, 5, 3)
    assert mutual_information(same) == pytest.approx(0.0, abs=1e-12)
    assert predictive_entropy(same) > 0.5  # uncertain, but all of it aleatoric
    apart = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two samples that disagree completely
    assert mutual_information(apart) == pytest.approx(math.log(2))
    assert predictive_entropy(apart) == pytest.approx(math.log(2))
    partly = torch.tensor([[[0.9, 0.1]], [[0.6, 0.4]]])
    h = lambda p: -sum(q * math.log(q) for q in p)  # noqa: E731
    expected = h([0.75, 0.25]) - (h([0.9, 0.1]) + h([0.6, 0.4])) / 2
    assert mutual_information_per_image(partly)[0] == pytest.approx(expected)
    assert expected > 0


def test_uncertainty_metrics_keys_prefix_and_errors():
    m = uncertainty_metrics(Y, P[None], prefix="decoy_swap_")
    assert set(m) == {f"decoy_swap_{k}" for k in ("nll", "brier", "ece", "predictive_entropy", "mutual_information")}
    with pytest.raises(EBNNError, match="S x N x K"):
        ece(Y, np.zeros((1, 1, 5, 3)))
    with pytest.raises(EBNNError, match="length 5"):
        brier(Y[:3], P)


def test_predictive_returns_predictions_and_the_last_conv_site():
    torch.manual_seed(0)
    bnn = FeedbackBNN(lenet())
    x = torch.rand(2, 1, 28, 28)
    out = posterior_predictive(bnn, x, num_samples=5)
    assert set(out) == {"logits", "last_conv.preactivation"}
    assert out["logits"].shape == (5, 2, 10) and out["last_conv.preactivation"].shape == (5, 2, 16, 11, 11)
    assert out["logits"].std(0).mean() > 1e-4  # posterior samples, not a constant
    # with the other layers at their mean, the site is exactly the LRT Gaussian of the last conv
    # and the logits are the head applied to the sampled pre-activation
    out = posterior_predictive(bnn, x, num_samples=400, sample_activations=False)
    a = out["last_conv.preactivation"]
    bnn.net.eval()
    with torch.no_grad():
        mu, sigma = bnn.net.evidence_moments(x)
        head = bnn.net.head_at(a.flatten(0, 1)).reshape(400, 2, 10)
    z = (a.mean(0) - mu) / (sigma / 20)  # in standard errors of a mean of 400 draws
    assert z.abs().mean() < 1.0 and z.abs().max() < 6
    assert (a.std(0) / sigma).mean() == pytest.approx(1.0, abs=0.02)
    assert torch.allclose(out["logits"], head, atol=1e-5)


def _noisy_body(net):
    """Wide posteriors below the last convolution (sigma 0.47 and 0.13), narrow ones in the head
    (0.0025) and means twice their initial size: a confident predictive that the body's noise moves,
    so that a predictive which dropped or shared the body's draws would be told apart."""
    with torch.no_grad():
        for name, layer in bayesian_layers(net).items():
            rho = {"conv1": -0.5, "conv2": -2.0}.get(name, -6.0)
            layer.weight_rho.fill_(rho)
            layer.bias_rho.fill_(rho)
            layer.weight_loc.mul_(2.0)


def test_vectorized_predictive_matches_pyros_predictive():
    """predictive_probs (all samples of an image in one pass, no Pyro) and pyro.infer.Predictive over
    model and guide draw from the same posterior predictive: the mean probabilities and their second
    moments agree within Monte Carlo error, image by image and class by class."""
    torch.manual_seed(0)
    bnn = FeedbackBNN(lenet())
    _noisy_body(bnn.net)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    S = 2000
    torch.manual_seed(2)
    ours = predictive_probs(bnn, x, S, batch_size=2)  # two passes: 2 images, then 1
    torch.manual_seed(3)
    theirs = posterior_predictive(bnn, x, S, sites=("logits",))["logits"].softmax(-1)
    assert ours.shape == theirs.shape == (S, 3, 10)
    assert ours.std(0).mean() > 0.1  # a spread-out predictive, not a point mass
    for moment in (1, 2):
        a, b = ours ** moment, theirs ** moment
        se = (a.var(0) / S + b.var(0) / S).sqrt()
        z = (a.mean(0) - b.mean(0)) / (se + 1e-6)
        assert z.abs().max() < 5, (moment, z.abs().max())


def test_vectorized_predictive_draws_the_lrt_gaussian_at_the_last_conv():
    """With the body at its mean (eval mode) the site is exactly N(mu_U, sigma_U^2); with the body
    sampling, its draws agree with Predictive's (means and standard deviations per cell)."""
    torch.manual_seed(0)
    bnn = FeedbackBNN(lenet())
    _noisy_body(bnn.net)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    S = 1600
    bnn.net.eval()
    with torch.no_grad():
        a = bnn.predictive_preactivation(x, S)
        mu, sigma = bnn.net.evidence_moments(x)
    assert a.shape == (S, 2, 16, 11, 11)
    z = (a.mean(0) - mu) / (sigma / S ** 0.5)
    assert z.abs().mean() < 1.0 and z.abs().max() < 6
    assert (a.std(0) / sigma).mean() == pytest.approx(1.0, abs=0.01)
    bnn.net.train()
    with torch.no_grad():
        ours = bnn.predictive_preactivation(x, S)
    theirs = posterior_predictive(bnn, x, S, sites=(PREACTIVATION_SITE,))[PREACTIVATION_SITE]
    z = (ours.mean(0) - theirs.mean(0)) / ((ours.var(0) / S + theirs.var(0) / S).sqrt())
    assert z.abs().mean() < 1.0 and z.abs().max() < 6
    assert (ours.std(0) / theirs.std(0)).mean() == pytest.approx(1.0, abs=0.01)
    # the body's noise is part of the draws: they spread wider than the eval-mode Gaussian
    assert (ours.std(0) / sigma).mean() > 1.05


def test_evaluate_sets_adds_uncertainty_for_every_test_set():
    from pyro_ebnn.experiment.config import load_config
    from pyro_ebnn.experiment.evaluation import evaluate_sets
    torch.manual_seed(0)
    bnn = FeedbackBNN(lenet(num_classes=3))

    def data(name):
        m = torch.zeros(6, 1, 28, 28, dtype=torch.bool)
        m[:, :, :4, :4] = True
        return ImageSet(torch.rand(6, 1, 28, 28), torch.arange(6) % 3, m, 3, name)

    split = Split(data("train"), None, data("test"), {"decoy_swap": data("decoy_swap")})
    cfg = load_config(None, {"eval_samples": 3, "mode": "none"})
    m = evaluate_sets(bnn, split, cfg, torch.device("cpu"), progress=False)
    for key in ("nll", "brier", "ece", "predictive_entropy", "mutual_information", "accuracy",
                "plugin_nll", "plugin_brier", "plugin_ece"):
        assert isinstance(m[key], float) and isinstance(m[f"decoy_swap_{key}"], float)
    # the plug-in metrics are those of the posterior-mean network, not of the predictive
    from pyro_ebnn.bnn import mean_probs
    assert m["plugin_nll"] == pytest.approx(nll(split.test.labels, mean_probs(bnn, split.test.images)))
    assert "overlap_saliency" not in m  # attributions are off by default in training runs
    m = evaluate_sets(bnn, split, cfg, torch.device("cpu"), progress=False, attributions=True,
                      methods=["saliency", "gradcam"])
    assert 0 <= m["overlap_saliency"] <= 1 and 0 <= m["overlap_gradcam"] <= 1 and m["n_overlap_images"] == 6

"""The Pyro model + guide compute [000] Eq. (3) with the Eq. (4) likelihood, and feedback acts as
evidence: zeros reach the classifier, the evidence term is linear in lambda."""
import pytest
import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
import torch.nn.functional as F
from torch import nn

from pyro_ebnn.bnn import EVIDENCE_SITE, PREACTIVATION_SITE, FeedbackEvidence, downsize_mask
from pyro_ebnn.bnn import BayesianConv2d, BayesianLinear
from pyro_ebnn.bnn import FeedbackBNN
from pyro_ebnn.bnn import BayesianCNN, lenet
from pyro_ebnn.bnn import negative_elbo


def tiny_net():
    """Evidence conv straight on the input and a linear head, small enough to check by hand."""
    torch.manual_seed(0)
    evidence = BayesianConv2d(1, 2, 3, rho_init=-1.0)
    head = nn.Sequential(nn.ReLU(), nn.Flatten(1), BayesianLinear(2 * 4 * 4, 3, rho_init=-1.0))
    return BayesianCNN(nn.Sequential(), evidence, head, (1, 6, 6))


def batch(n=5, size=6, classes=3):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    mask = torch.zeros(n, 1, size, size, dtype=torch.bool)
    mask[:, :, :2, :2] = True
    mask[0] = False  # an image without feedback
    return x, y, mask


@pytest.mark.parametrize("lam,channels,holes", [(1.0, "all", "own"), (0.05, "all", "own"), (1.0, "attending", "own"),
                                                (1.0, "all", "shared"), (1.0, "attending", "shared"),
                                                (1.0, "all", "none")])
def test_pyro_loss_equals_hand_derived_objective(lam, channels, holes):
    net = tiny_net()
    net.head.eval()  # deterministic head: the only noise is the evidence-layer sample
    bnn = FeedbackBNN(net, evidence=FeedbackEvidence(lam, channels=channels, holes=holes))
    x, y, mask = batch()
    N = 60
    pyro.set_rng_seed(7)
    loss = TraceMeanField_ELBO().differentiable_loss(bnn.model, bnn.guide, x, y, mask, data_size=N)
    pyro.set_rng_seed(7)
    guide_trace = poutine.trace(bnn.guide).get_trace(x, y, mask, data_size=N)
    a = guide_trace.nodes[PREACTIVATION_SITE]["value"]
    mean, std = net.evidence_moments(x)
    ref = negative_elbo(net, x, y, N, mask, lam, noise={"conv1": (a - mean) / std}, channels=channels, holes=holes)
    assert torch.allclose(loss, ref, rtol=1e-5), (loss.item(), ref.item())
    if holes in ("shared", "none"):   # shared: image 0, without a mark, sees image 1's zeros; none: no zeros
        own = negative_elbo(net, x, y, N, mask, lam, noise={"conv1": (a - mean) / std}, channels=channels)
        assert not torch.allclose(loss, own)
    if channels == "attending":   # some marked pre-activations are observed, not all of them
        every = negative_elbo(net, x, y, N, mask, lam, noise={"conv1": (a - mean) / std})
        observed = FeedbackEvidence(lam, channels=channels).irrelevant_cells(mask, mean)
        assert 0 < observed.sum() < FeedbackEvidence(lam).irrelevant_cells(mask, mean).sum()
        assert not torch.allclose(loss, every)
    # and the same gradients for every variational parameter
    g_pyro = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True)
    g_ref = torch.autograd.grad(ref, list(net.parameters()))
    for gp, gr in zip(g_pyro, g_ref):
        assert torch.allclose(gp, gr, rtol=1e-4, atol=1e-5)


def test_trace_elbo_kl_estimate_is_unbiased():
    """Trace_ELBO's Monte Carlo KL averages to the closed form of TraceMeanField_ELBO."""
    net = tiny_net()
    net.head.eval()
    bnn = FeedbackBNN(net)
    x, y, _ = batch()
    pyro.set_rng_seed(3)
    n = 200
    mf = torch.stack([TraceMeanField_ELBO().differentiable_loss(bnn.model, bnn.guide, x, y).detach() for _ in range(n)])
    tr = torch.stack([Trace_ELBO().differentiable_loss(bnn.model, bnn.guide, x, y).detach() for _ in range(n)])
    se = (mf.var() / n + tr.var() / n).sqrt()
    assert abs(mf.mean() - tr.mean()) < 5 * se


def _head_input(bnn, x, y, mask):
    seen = {}
    hook = bnn.net.head[0].register_forward_hook(lambda m, inp, out: seen.setdefault("a", inp[0].detach()))
    guide_trace = poutine.trace(bnn.guide).get_trace(x, y, mask)
    trace = poutine.trace(poutine.replay(bnn.model, guide_trace)).get_trace(x, y, mask)
    hook.remove()
    return seen["a"], trace


def test_masked_activations_reach_the_classifier_as_zeros():
    net = lenet()
    bnn = FeedbackBNN(net, evidence=FeedbackEvidence(1e-3))
    x = torch.rand(4, 1, 28, 28)
    y = torch.randint(0, 10, (4,))
    mask = torch.zeros(4, 1, 28, 28, dtype=torch.bool)
    mask[:, :, :4, :4] = True
    a, trace = _head_input(bnn, x, y, mask)
    cells = downsize_mask(mask, (11, 11)).expand_as(a)
    assert cells.sum() == 4 * 16 * 4  # a 4x4 corner touches 2x2 cells of 11x11
    assert torch.all(a[cells] == 0)
    assert torch.all(a[~cells] != 0)
    assert trace.nodes[EVIDENCE_SITE]["is_observed"]
    assert torch.all(trace.nodes[EVIDENCE_SITE]["value"] == 0)


def test_without_feedback_nothing_is_zeroed_and_there_is_no_evidence_site():
    bnn = FeedbackBNN(lenet())
    x, y = torch.rand(3, 1, 28, 28), torch.randint(0, 10, (3,))
    mask = torch.ones(3, 1, 28, 28, dtype=torch.bool)  # ignored: no evidence object
    a, trace = _head_input(bnn, x, y, mask)
    assert EVIDENCE_SITE not in trace.nodes
    assert torch.all(a != 0)


def test_evidence_term_is_linear_in_lambda():
    x, y, mask = batch()
    terms = []
    for lam in (1e-3, 2e-3, 4e-3):
        net = tiny_net()
        bnn = FeedbackBNN(net, evidence=FeedbackEvidence(lam))
        pyro.set_rng_seed(0)
        guide_trace = poutine.trace(bnn.guide).get_trace(x, y, mask, data_size=50)
        trace = poutine.trace(poutine.replay(bnn.model, guide_trace)).get_trace(x, y, mask, data_size=50)
        trace.compute_log_prob()
        site = trace.nodes[EVIDENCE_SITE]
        assert site["scale"] == pytest.approx(lam * 50 / 5)
        terms.append(site["log_prob_sum"])
    assert terms[0] < 0
    assert torch.allclose(terms[1], 2 * terms[0]) and torch.allclose(terms[2], 4 * terms[0])


def test_feedback_refuses_non_positive_lambda():
    for lam in (0.0, -1e-3):
        with pytest.raises(ValueError, match="lam must be > 0"):
            FeedbackEvidence(lam)


def test_pooled_mask_shapes_for_lenet_and_alexnet():
    assert lenet().evidence_shape == (16, 11, 11)
    e = torch.zeros(2, 1, 28, 28)
    e[:, :, :4, :4] = 1
    assert downsize_mask(e, (11, 11)).shape == (2, 1, 11, 11)
    # AlexNet: 224-pixel images, last conv 256 x 13 x 13; a background mask keeps only whole cells
    e = torch.zeros(1, 1, 224, 224)
    e[..., :100, :] = 1
    cells_max = downsize_mask(e, (13, 13), "max")
    cells_min = downsize_mask(e, (13, 13), "min")
    assert cells_max.shape == cells_min.shape == (1, 1, 13, 13)
    assert cells_max[0, 0, :, 0].sum() == 6 and cells_min[0, 0, :, 0].sum() == 5
    assert torch.all(cells_min <= cells_max)


@pytest.mark.parametrize("size", [(11, 11), (13, 13), (5, 7), (28, 28), (3, 3)])
def test_the_downsized_mask_is_the_adaptive_max_pool(size):
    """A cell is irrelevant if any of its pixels is ("max") or all of them are ("min"), over the bins of
    torch's adaptive pooling, for sparse and dense masks."""
    g = torch.Generator().manual_seed(0)
    for density in (0.01, 0.3, 0.95):
        e = torch.rand(16, 1, 28, 28, generator=g) < density
        assert torch.equal(downsize_mask(e, size, "max"), F.adaptive_max_pool2d(e.float(), size) > 0.5)
        assert torch.equal(downsize_mask(e, size, "min"), 1 - F.adaptive_max_pool2d(1 - e.float(), size) > 0.5)


def test_a_soft_mask_is_refused_with_the_fix():
    soft = torch.full((1, 1, 28, 28), 0.3)
    with pytest.raises(ValueError, match=r"must be binary .* threshold a soft mask first"):
        downsize_mask(soft, (11, 11))
    assert downsize_mask(soft > 0.5, (11, 11)).sum() == 0  # thresholded, it is accepted


def test_gradient_filter_keeps_only_cells_that_reach_the_output():
    net = lenet()
    ev = FeedbackEvidence(1.0, gradient_filter=True)
    x = torch.rand(2, 1, 28, 28)
    mean, _ = net.evidence_moments(x)
    mask = torch.ones(2, 1, 28, 28)
    cells = ev.irrelevant_cells(mask, mean, net)
    # ReLU drops negative means; 2x2 max pool keeps one of four; row/col 11 is never pooled
    assert torch.all(~cells[mean <= 0])
    assert torch.all(~cells[..., 10, :]) and torch.all(~cells[..., :, 10])
    assert cells.float().mean() <= 0.25


def test_vectorized_particles_and_predictive_return_the_sites():
    from pyro.infer import Predictive
    bnn = FeedbackBNN(lenet(), evidence=FeedbackEvidence(1e-3))
    x, y = torch.rand(3, 1, 28, 28), torch.randint(0, 10, (3,))
    mask = torch.zeros(3, 1, 28, 28, dtype=torch.bool)
    loss = TraceMeanField_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1).loss(
        bnn.model, bnn.guide, x, y, mask)
    assert torch.isfinite(torch.tensor(loss))
    pred = Predictive(bnn.model, guide=bnn.guide, num_samples=5, parallel=True,
                      return_sites=["logits", PREACTIVATION_SITE, "label"])(x)
    assert pred["logits"].shape == (5, 3, 10)
    assert pred[PREACTIVATION_SITE].shape == (5, 3, 16, 11, 11)
    assert pred["label"].shape == (5, 3)
    # particles are independent draws
    assert not torch.allclose(pred["logits"][0], pred["logits"][1])


@pytest.mark.parametrize("per_cell", [False, True])
def test_masked_normal_matches_pyros_masked_independent_normal(per_cell):
    from pyro_ebnn.bnn import MaskedNormal
    import pyro.distributions as dist
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(3, 2, 4, 5, 5, generator=g, requires_grad=True)
    scale = (torch.rand(3, 2, 4, 5, 5, generator=g) + 0.1).requires_grad_()
    # one bit per entry, or one per cell expanded over the 4 channels (as irrelevant_cells makes it)
    mask = torch.rand(2, 1 if per_cell else 4, 5, 5, generator=g) < 0.2
    mask[0] = False  # an image without any masked cell
    mask = mask.expand(2, 4, 5, 5)
    value = torch.zeros(2, 4, 5, 5)
    ours = MaskedNormal(loc, scale, mask).log_prob(value)
    ref = dist.Normal(loc, scale).mask(mask).to_event(3).log_prob(value)
    assert ours.shape == ref.shape == (3, 2)
    assert torch.allclose(ours, ref) and torch.all(ours[:, 0] == 0) and torch.all(ours[:, 1] < 0)
    g1 = torch.autograd.grad(ours.sum(), (loc, scale))
    g2 = torch.autograd.grad(ref.sum(), (loc, scale))
    assert all(torch.allclose(a, b) for a, b in zip(g1, g2))
    # one image without batch dimensions, and a value other than zero
    one = MaskedNormal(loc[0, 1], scale[0, 1], mask[1]).log_prob(value[1] + 0.5)
    assert one.shape == () and torch.isclose(one, dist.Normal(loc[0, 1], scale[0, 1]).mask(mask[1]).to_event(3).log_prob(value[1] + 0.5))


def test_receptive_field_pool_marks_every_cell_that_sees_the_decoy():
    net = lenet()
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 4:8, 0:4] = 1  # the [000] position next to the top-left corner
    cells = net.receptive_field_cells(mask)[0, 0]
    # last-conv cell i sees input rows 2i .. 2i+7 (two 3x3 convs and a 2x2 pool): rows 4-7 -> i = 0..3
    assert cells.any(1).nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert cells.any(0).nonzero().flatten().tolist() == [0, 1]
    assert torch.all(downsize_mask(mask, (11, 11)) <= cells)  # stricter than the adaptive max pool
    # brute force: a cell is marked iff perturbing the masked pixels changes its mean pre-activation
    x = torch.rand(1, 1, 28, 28)
    with torch.no_grad():
        net.eval()
        a0 = net.evidence_moments(x)[0]
        a1 = net.evidence_moments(x + mask * 5.0)[0]
    changed = (a0 - a1).abs().amax(1)[0] > 0
    assert torch.equal(changed, cells)


def test_receptive_and_max_pools_coincide_for_a_square_in_a_corner_and_differ_inside():
    """LeNet's fields start where their adaptive-pool bins start (no padding), so the receptive pool
    adds cells only where fields reach into the region from outside it: none for a corner square."""
    for size, side in ((28, 4), (64, 10)):
        net = lenet(2, in_channels=1, image_size=size)
        cells = {}
        for where, (top, left) in {"corner": (size - side, 0), "inside": ((size - side) // 2,) * 2}.items():
            mask = torch.zeros(1, 1, size, size)
            mask[..., top:top + side, left:left + side] = 1
            cells[where] = (downsize_mask(mask, tuple(net.evidence_shape[-2:])), net.receptive_field_cells(mask))
        assert torch.equal(*cells["corner"])
        assert cells["inside"][1].sum() > 2 * cells["inside"][0].sum()


def test_torch_optimizer_scope_changes_the_param_store_only():
    """for_torch_optimizer (what Trainer.step uses) shares sigma = softplus(rho) between q(w) and the
    LRT and skips pyro.module: the same loss and gradients from the same draws, no param sites."""
    net = lenet()
    bnn = FeedbackBNN(net, evidence=FeedbackEvidence(1e-3))
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    mask = torch.zeros(4, 1, 28, 28, dtype=torch.bool)
    mask[:, :, :4, :4] = True
    elbo = TraceMeanField_ELBO()
    out = []
    for scoped in (False, True):
        pyro.clear_param_store()
        pyro.set_rng_seed(5)
        with poutine.trace(param_only=True) as params:
            if scoped:
                with bnn.for_torch_optimizer():
                    loss = elbo.differentiable_loss(bnn.model, bnn.guide, x, y, mask, data_size=100)
            else:
                loss = elbo.differentiable_loss(bnn.model, bnn.guide, x, y, mask, data_size=100)
        out.append((loss, torch.autograd.grad(loss, list(net.parameters())), len(params.trace.nodes)))
    (loss0, grads0, n0), (loss1, grads1, n1) = out
    assert n0 == len(list(net.parameters())) and n1 == 0  # SVI would find the parameters only outside
    assert torch.allclose(loss0, loss1)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(grads0, grads1))
    assert all(layer._shared is None for layer in bnn.layers.values())  # closed after the block


@pytest.mark.parametrize("elbo", [TraceMeanField_ELBO, Trace_ELBO])
def test_analytic_kl_gives_the_mean_field_loss_without_weight_sites(elbo):
    """analytic_kl: no weight site in either program, the factor "weights.kl" = -KL in the model,
    and the loss and gradients of TraceMeanField_ELBO over the weight sites, under either ELBO."""
    from pyro_ebnn.bnn import KL_SITE
    net = tiny_net()
    net.head.eval()  # the only noise is the evidence-layer sample, replayed below
    x, y, mask = batch()
    sites = FeedbackBNN(net, evidence=FeedbackEvidence(0.5))
    analytic = FeedbackBNN(net, evidence=FeedbackEvidence(0.5), analytic_kl=True)
    drawn = poutine.trace(sites.guide).get_trace(x, y, mask, data_size=100)
    ref = TraceMeanField_ELBO().differentiable_loss(sites.model, poutine.replay(sites.guide, trace=drawn),
                                                    x, y, mask, data_size=100)
    loss = elbo().differentiable_loss(analytic.model, poutine.replay(analytic.guide, trace=drawn),
                                      x, y, mask, data_size=100)
    guide = poutine.trace(analytic.guide).get_trace(x, y, mask, data_size=100)
    assert not any(name.endswith((".weight", ".bias")) for name in guide.nodes)
    model = poutine.trace(analytic.model).get_trace(x, y, mask, data_size=100)
    assert torch.allclose(model.nodes[KL_SITE]["fn"].log_factor, -sites.kl())
    assert torch.allclose(loss, ref, rtol=1e-5), (loss.item(), ref.item())
    g_ref = torch.autograd.grad(ref, list(net.parameters()), retain_graph=True)
    g = torch.autograd.grad(loss, list(net.parameters()))
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(g, g_ref))


@pytest.mark.parametrize("analytic_kl", [False, True])
def test_kl_scale_tempers_the_weights_kl_and_nothing_else(analytic_kl):
    """kl_scale = 0.01: the loss is 0.01 KL - N/B (log-likelihood + lambda evidence), by hand and by
    Pyro (weight sites or the analytic factor); the data and evidence terms are those of the ELBO."""
    net = tiny_net()
    net.head.eval()
    x, y, mask = batch()
    bnn = FeedbackBNN(net, evidence=FeedbackEvidence(0.5), analytic_kl=analytic_kl, kl_scale=0.01)
    pyro.set_rng_seed(3)
    loss = TraceMeanField_ELBO().differentiable_loss(bnn.model, bnn.guide, x, y, mask, data_size=40)
    pyro.set_rng_seed(3)
    a = poutine.trace(bnn.guide).get_trace(x, y, mask, data_size=40).nodes[PREACTIVATION_SITE]["value"]
    mean, std = net.evidence_moments(x)
    noise = {"conv1": (a - mean) / std}
    tempered = negative_elbo(net, x, y, 40, mask, 0.5, noise=noise, kl_scale=0.01)
    elbo = negative_elbo(net, x, y, 40, mask, 0.5, noise=noise)
    assert torch.allclose(loss, tempered, rtol=1e-5), (loss.item(), tempered.item())
    assert torch.allclose(elbo - tempered, 0.99 * FeedbackBNN(net).kl(), rtol=1e-4)
    with pytest.raises(ValueError, match="kl_scale must be > 0"):
        FeedbackBNN(net, kl_scale=0)


def test_analytic_kl_under_vectorized_particles_draws_the_body_noise_per_particle():
    bnn = FeedbackBNN(lenet(), analytic_kl=True)
    x = torch.rand(3, 1, 28, 28)
    with pyro.plate("particles", 4, dim=-2):
        trace = poutine.trace(bnn.guide).get_trace(x)
    a = trace.nodes[PREACTIVATION_SITE]["value"]
    assert a.shape == (4, 3, 16, 11, 11)
    mean = trace.nodes[PREACTIVATION_SITE]["fn"].base_dist.base_dist.loc
    assert mean.shape[0] == 4 and not torch.allclose(mean[0], mean[1])  # conv1's noise differs per particle


def test_analytic_kl_with_a_prior_without_closed_form_names_the_fix():
    import pyro.distributions as dist

    def student_t(site, shape, device=None):
        return dist.StudentT(3.0, torch.zeros(shape), 0.1 * torch.ones(shape)).to_event(len(shape))
    x, y = torch.rand(2, 1, 28, 28), torch.randint(0, 10, (2,))
    bnn = FeedbackBNN(lenet(), prior=student_t, analytic_kl=True)
    with pytest.raises(NotImplementedError, match=r"conv1\.weight \(StudentT\).*analytic_kl=False.*elbo: trace"):
        TraceMeanField_ELBO().differentiable_loss(bnn.model, bnn.guide, x, y)
    sites = FeedbackBNN(lenet(), prior=student_t)  # the weight sites: Trace_ELBO estimates the KL
    assert torch.isfinite(Trace_ELBO().differentiable_loss(sites.model, sites.guide, x, y))


def test_predictive_runs_on_the_analytic_kl_model_that_train_builds():
    """Without weight sites, pyro.infer.Predictive still draws the pre-activation and the logits
    (independent draws), and the KL factor is no site it returns."""
    from pyro.infer import Predictive
    from pyro_ebnn.bnn import KL_SITE
    bnn = FeedbackBNN(lenet(), analytic_kl=True)
    x = torch.rand(3, 1, 28, 28)
    pred = Predictive(bnn.model, guide=bnn.guide, num_samples=4, parallel=True,
                      return_sites=["logits", PREACTIVATION_SITE])(x)
    assert pred["logits"].shape == (4, 3, 10) and pred[PREACTIVATION_SITE].shape == (4, 3, 16, 11, 11)
    assert not torch.allclose(pred["logits"][0], pred["logits"][1])
    assert KL_SITE not in pred


def test_attending_channels_observe_the_channels_that_light_up_on_the_marked_region_only():
    """[000] Sec. 6: a channel that responds to the decoy is observed zero there; a channel that
    responds everywhere alike, or elsewhere, is left free."""
    from pyro_ebnn.bnn.evidence import attending_channels
    mean = torch.full((2, 3, 4, 4), -1.0)
    mean[:, 0, :2, :2] = 2.0                       # channel 0: only on the marked corner
    mean[:, 1] = 0.5                               # channel 1: everywhere alike
    mean[:, 2, 2:, 2:] = 3.0                       # channel 2: only elsewhere
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[0, :, :4, :4] = True                      # image 1 has no mask
    cells = FeedbackEvidence(1.0, channels="attending").irrelevant_cells(mask, mean)
    assert cells[0].flatten(1).sum(1).tolist() == [4, 0, 0] and not cells[1].any()
    assert torch.equal(attending_channels(mean, downsize_mask(mask, (4, 4))).flatten(1),
                       torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="use 'all' or 'attending'"):
        FeedbackEvidence(1.0, channels="some")

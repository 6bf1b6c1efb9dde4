"""The training loop on every kind of data: each real-world layout and an image folder train from
the command line through their configs (images streamed from disk, DataLoader workers included);
the closed-form KL of both priors against Monte Carlo; a model that cannot leave its prior is
stopped with one line."""
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pyro_ebnn import FeedbackBNN, LaplacePrior, NormalPrior, lenet
from pyro_ebnn.cli import cli

from image_fixtures import write_dogs_vs_cats, write_folder, write_isic, write_pets, write_sbd
from test_inputs import _write_npz

LAYOUTS = {"image_folder": lambda root: write_folder(root, per_class=(12, 4), masked=range(6)),
           "image_folder_small": lambda root: write_folder(root, per_class=(12, 4), masked=range(6)),
           "oxford_pets": lambda root: write_pets(root, per_split=6),
           "sbd": write_sbd,
           "isic": lambda root: write_isic(root, benign=16, with_patch=8, malignant=12),
           "dogs_vs_cats": lambda root: write_dogs_vs_cats(root, per_class=12, masked=6)}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_EBNN_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("config", list(LAYOUTS))
def test_every_layout_trains_from_the_command_line_through_its_config(tmp_path, config):
    """One epoch through the config as shipped, on a fixture in the dataset's own layout; LeNet on
    32-pixel images in place of AlexNet, which needs ImageNet weights and far more time."""
    root = LAYOUTS[config](tmp_path / "data")
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--config", f"configs/{config}.yaml", "--out", str(out),
                                   "--set", f"data_dir={root}", "--set", "architecture=lenet", "--set", "batch_norm=false",
                                   "--set", "pretrained=false", "--set", "normalize=none", "--set", "image_size=32",
                                   "--set", "epochs=1", "--set", "batch_size=4", "--set", "eval_samples=2",
                                   "--set", f"workers={2 if config == 'image_folder_small' else 0}"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 1 and m["n_train"] > 0 and math.isfinite(m["balanced_accuracy"])
    if config == "isic":
        assert "test_no_patches_balanced_accuracy" in m
    history = torch.load(out / "checkpoint.pt", weights_only=False)["history"]
    if json.loads(json.dumps(m["config"]))["validation_decoys"] in ("noise", "swap", "exchange"):
        assert any(k.startswith("val_ordinary_") for k in history[-1])  # both validation scores


@pytest.mark.parametrize("prior", [NormalPrior(0.1), LaplacePrior(0.1)])
def test_the_closed_form_kl_is_the_monte_carlo_kl(prior):
    torch.manual_seed(0)
    bnn = FeedbackBNN(lenet(rho_init=-3.0), prior=prior)
    with torch.no_grad():
        for p in bnn.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        exact = float(bnn.kl())
        draws = []
        for _ in range(200):
            total = 0.0
            for name, layer in bnn.layers.items():
                priors = bnn._priors_of(name, layer)
                for part, q in layer.posterior().items():
                    w = q.sample()
                    total += float(q.log_prob(w) - priors[part].log_prob(w))
            draws.append(total)
    draws = np.array(draws)
    assert abs(draws.mean() - exact) < 4 * draws.std() / math.sqrt(len(draws))
    assert exact > 0


def test_the_normal_priors_own_closed_form_is_torchs_kl():
    """NormalPrior.kl (two dot products) against torch's kl_divergence entry by entry: value and
    gradients, for a prior centred at 0 and elsewhere."""
    from torch.distributions import Normal, kl_divergence
    g = torch.Generator().manual_seed(0)
    for prior in (NormalPrior(0.1), NormalPrior(0.3, loc=-0.2)):
        loc = torch.randn(16, 6, 3, 3, generator=g).requires_grad_()
        scale = (torch.rand(16, 6, 3, 3, generator=g) + 0.01).requires_grad_()
        ours = prior.kl(loc, scale)
        ref = kl_divergence(Normal(loc, scale), Normal(prior.loc, prior.scale)).sum()
        assert torch.isclose(ours, ref, rtol=1e-5)
        for a, b in zip(torch.autograd.grad(ours, (loc, scale)), torch.autograd.grad(ref, (loc, scale))):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_prior_without_a_closed_form_kl_names_the_fix():
    """A prior callable without a ``kl`` method goes through torch's kl_divergence; where torch has
    none (Normal to Cauchy), the error names the prior and the two ways out."""
    import pyro.distributions as dist

    def cauchy(site, shape, device=None):
        return dist.Cauchy(torch.zeros((), device=device), torch.ones((), device=device)).expand(shape).to_event(len(shape))
    with pytest.raises(NotImplementedError, match=r"conv1\.weight \(Cauchy\) has no closed-form KL.*analytic_kl=False"):
        FeedbackBNN(lenet(), prior=cauchy).kl()


def test_a_prior_scale_must_be_positive():
    for prior in (NormalPrior, LaplacePrior):
        with pytest.raises(ValueError, match="prior scale must be > 0"):
            prior(0.0)


def test_not_learning_is_asked_of_the_ordinary_validation_images_when_the_others_are_counterfactual(tmp_path):
    """A network that reads the marked pattern scores about chance on validation images whose marked regions
    are exchanged, while it learns: the ordinary images (``extra_val["ordinary"]``) decide."""
    from types import SimpleNamespace
    from pyro_ebnn.experiment.config import load_config
    from pyro_ebnn.experiment.training import Trainer
    trainer = Trainer(load_config(None, {"mode": "none"}), FeedbackBNN(lenet()), 1e-3, torch.device("cpu"))
    class Images(SimpleNamespace):
        def __len__(self):
            return 900
    exchanged, ordinary = Images(), Images()
    trainer._scores = lambda images: {"balanced_accuracy": 0.5 if images is exchanged else 0.95}
    train = SimpleNamespace(num_classes=2, image_shape=(1, 28, 28))
    counterfactual = SimpleNamespace(train=train, val=exchanged, extra_val={"ordinary": ordinary})
    assert trainer._validate(counterfactual, tmp_path, 1)[1] is False
    plain = SimpleNamespace(train=train, val=exchanged, extra_val={})
    assert trainer._validate(plain, tmp_path, 2)[1] is True


def test_evidence_that_outweighs_the_labels_stops_with_one_line_naming_lam():
    """At chance while the loss is negative: only the observed zeros' density can make it so (the KL is
    >= 0 and so is the labels' negative log-likelihood), so the fix is a smaller lam, not the KL's."""
    from pyro_ebnn import FeedbackEvidence
    from pyro_ebnn.errors import TrainingError
    from pyro_ebnn.experiment.config import load_config
    from pyro_ebnn.experiment.training import CHANCE_EPOCHS, Trainer
    trainer = Trainer(load_config(None, {"mode": "feedback", "lam": 0.3}),
                      FeedbackBNN(lenet(), evidence=FeedbackEvidence(0.3)), 1e-3, torch.device("cpu"))
    trainer.epoch, trainer.history = CHANCE_EPOCHS, [{"val_at_chance": True}] * CHANCE_EPOCHS
    with pytest.raises(TrainingError, match=r"evidence outweighs the labels .*\(--set lam=0\.03\)"):
        trainer._check_learning(-250.0, 1000)
    trainer._check_learning(1e9, 1000)   # a positive loss far above the KL: no verdict


@pytest.mark.parametrize("rho_init, fix", [("0", "--set rho_init=-3"),
                                           ("-7", "Bayesian weights are too many for them; start from pretrained "
                                                  "weights (pretrained: true), temper their KL (--set kl_scale=0.0001)")])
def test_a_model_that_cannot_leave_its_prior_stops_with_one_line(tmp_path, rho_init, fix):
    """Random labels: validation stays at chance while the KL term is most of the loss; the run stops
    after a few epochs instead of training on silently. The fix it names depends on the posterior
    scales: above the prior's, start them smaller; far below it, the network is too big for the data."""
    rng = np.random.default_rng(1)
    _write_npz(tmp_path / "d.npz", train_images=rng.random((60, 1, 28, 28), dtype=np.float32),
               train_labels=rng.integers(0, 3, 60), train_masks=np.zeros((60, 1, 28, 28), np.uint8))
    res = CliRunner().invoke(cli, ["train", "--config", "configs/custom_npz.yaml", "--out", str(tmp_path / "run"),
                                   "--set", f"npz_path={tmp_path / 'd.npz'}", "--set", f"rho_init={rho_init}",
                                   "--set", "epochs=20", "--set", "num_folds=2", "--mode", "none"])
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert "stayed at chance for 5 epochs while the KL term is" in line and fix in line
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["epoch"] == 5   # resumable

"""Input standardization ([000] Sec. 5.2) as the network's first layer, and the reference image
that goes with it (DeepLIFT's reference, Occlusion's fill)."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from pyro_ebnn import lenet
from pyro_ebnn.baselines import cd_decompose
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.errors import ConfigError, DataError
from pyro_ebnn.explain import ExplainError, attribute, channel_mean, reference_image
from pyro_ebnn import Standardize, fit_standardization, posterior_network, standardized
from pyro_ebnn.cli import cli
from pyro_ebnn.experiment.evaluation import add_overlap, explain_runs
from pyro_ebnn.experiment.rundir import load_model

from test_inputs import _write_npz


def _images(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _standardized_lenet(images):
    torch.manual_seed(0)
    net = standardized(lenet(num_classes=10))
    fit_standardization(net, images)
    return net.eval()


def test_standardize_fits_the_training_statistics_and_runs_first():
    x, _ = _images()
    net = _standardized_lenet(x)
    stats = fit_standardization(net, x)
    assert stats["input_mean"][0] == pytest.approx(float(x.double().mean()), abs=1e-6)
    assert stats["input_std"][0] == pytest.approx(float(x.double().std()), abs=1e-6)
    assert isinstance(net.body[0], Standardize)
    # the same weights without the layer, fed standardized images, give the same logits
    plain = lenet(num_classes=10)
    plain.body = nn.Sequential(*list(net.body)[1:])
    plain.evidence_layer, plain.head = net.evidence_layer, net.head
    plain.eval()
    z = (x - stats["input_mean"][0]) / stats["input_std"][0]
    torch.testing.assert_close(net(x), plain(z), rtol=1e-5, atol=1e-5)
    # the standardized images have mean 0 and std 1
    s = net.body[0](x)
    assert abs(float(s.mean())) < 1e-5 and float(s.std()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(DataError, match="constant.*standardize: false"):
        fit_standardization(net, torch.full((4, 1, 28, 28), 0.5))
    with pytest.raises(DataError, match="1-channel inputs needs N x 1 x H x W images, got shape \\(4, 3, 28, 28\\)"):
        fit_standardization(net, torch.rand(4, 3, 28, 28))
    # vectorized ELBO particles: leading sample dimensions pass through the layer
    from pyro_ebnn.bnn import run_lrt
    out = run_lrt(net.train().body, x[:3], torch.Size([4]))
    assert out.shape == (4, 3, 6, 13, 13) and not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="one Standardize layer"):
        fit_standardization(lenet(), x)


def test_mean_reference_is_captums_zero_baseline_on_standardized_inputs():
    """What [000]'s pipeline computes (Captum on standardized inputs, all-zero reference) is what the
    'mean' reference computes on a network that standardizes its pixel input, up to d z / d x = 1 / std."""
    x, y = _images(4)
    net = _standardized_lenet(x)
    det = posterior_network(net)
    std_layer, rest = det.body[0], nn.Sequential(nn.Sequential(*list(det.body)[1:]), det.evidence_layer, det.head)
    z = std_layer(x)
    mean = channel_mean(x)
    assert torch.allclose(mean, std_layer.mean, atol=1e-6)
    ours = attribute(det, x, y, "deeplift", reference=mean)
    theirs = attribute(rest, z, y, "deeplift")               # zero reference in standardized space
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    occ = attribute(det, x, y, "occlusion", reference=mean)
    occ0 = attribute(rest, z, y, "occlusion")
    torch.testing.assert_close(occ, occ0, rtol=1e-4, atol=1e-5)
    # and the black reference differs: the background now carries attribution
    black = attribute(det, x, y, "deeplift")
    assert not torch.allclose(black, ours, atol=1e-3)
    # DeepLIFT's summation to delta holds against the mean reference
    with torch.no_grad():
        delta = (det(x) - det(reference_image(mean, x))).gather(1, y[:, None]).flatten()
    torch.testing.assert_close(ours.flatten(1).sum(1), delta, rtol=1e-4, atol=1e-4)


def test_reference_image_checks_the_channels():
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(reference_image(None, x), torch.zeros_like(x))
    r = reference_image(torch.tensor([0.1, 0.2, 0.3]), x)
    assert r.shape == x.shape and torch.allclose(r[1, 2], torch.full((8, 8), 0.3))
    with pytest.raises(ExplainError, match="2 channel values; the images have 3 channels"):
        reference_image(torch.tensor([0.1, 0.2]), x)
    with pytest.raises(ExplainError, match="unknown reference image 'gray'; use black or mean"):
        explain_runs(["a", "b"], "out", reference="gray")


def test_cd_splits_the_standardization_exactly():
    x, _ = _images(6)
    net = _standardized_lenet(x)
    mask = torch.zeros(6, 1, 28, 28, dtype=torch.bool)
    mask[1:, :, :4, :4] = True
    beta, gamma, trace = cd_decompose(net, x, mask, return_layers=True)
    name, b, g = trace[0]
    torch.testing.assert_close(b + g, net.body[0](x))
    torch.testing.assert_close(beta + gamma, net(x), rtol=1e-5, atol=1e-5)
    assert torch.all(beta[0] == 0)                         # no mask: the masked part is exactly zero
    assert torch.all(b[1:, :, 4:, :] == 0) and b[1:, :, :4, :4].abs().sum() > 0
    # the shift -mean/std is split like a bias: inside the mask all of it goes to the masked part
    assert torch.all(g[1:, :, :4, :4] == 0)


def test_config_checks_the_keys_and_reads_the_old_spelling(tmp_path, capsys):
    with pytest.raises(ConfigError, match="attribution_reference"):
        load_config(None, {"attribution_reference": "gray"})
    old = tmp_path / "old.yaml"
    old.write_text("attribution_baseline: zero\n")
    assert load_config(str(old)).attribution_reference == "black"
    assert "'attribution_baseline' in " in capsys.readouterr().err
    with pytest.raises(ConfigError, match="standardize"):
        load_config(None, {"standardize": "maybe"})
    assert load_config(None, {"standardize": "true"}).standardize is True


def test_a_standardized_run_trains_saves_and_evaluates_with_the_mean_reference(tmp_path):
    masks = np.zeros((20, 1, 28, 28), np.uint8)
    masks[:, :, :4, :4] = 1
    _write_npz(tmp_path / "d.npz", test_masks=masks)
    r = CliRunner()
    run = tmp_path / "run"
    res = r.invoke(cli, ["train", "--config", "configs/custom_npz.yaml", "--set", f"npz_path={tmp_path / 'd.npz'}",
                         "--set", "eval_samples=2", "--set", "epochs=1", "--set", "standardize=true",
                         "--mode", "cdep", "--out", str(run)])
    assert res.exit_code == 0, res.output
    m = json.loads((run / "metrics.json").read_text())
    bnn, cfg, _ = load_model(run)
    layer = bnn.net.body[0]
    assert isinstance(layer, Standardize) and cfg.standardize
    # the statistics of the training fold (not of validation or test), saved with the model
    assert m["input_mean"][0] == pytest.approx(float(layer.mean), abs=1e-6)
    train = np.load(tmp_path / "d.npz")["train_images"]
    assert abs(m["input_mean"][0] - float(train.mean())) < 0.01 and m["input_mean"][0] != pytest.approx(float(train.mean()), abs=1e-7)
    # fine-tuning keeps the layer and its statistics; a config that drops it is refused in one line
    res = r.invoke(cli, ["finetune", "--run", str(run), "--set", "finetune_epochs=1", "--set", "finetune_budget=5",
                         "--out", str(tmp_path / "ft")])
    assert res.exit_code == 0, res.output
    ft = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert ft["input_mean"] == m["input_mean"] and ft["input_std"] == m["input_std"]
    res = r.invoke(cli, ["evaluate", "--run", str(run), "--out", str(tmp_path / "x"), "--set", "standardize=false"])
    assert res.exit_code == 2 and "trained with standardize: True" in res.output and "Traceback" not in res.output
    out = {}
    for reference in ("black", "mean"):
        res = r.invoke(cli, ["evaluate", "--run", str(run), "--out", str(tmp_path / reference), "--methods",
                             "deeplift,occlusion", "--reference", reference, "--no-figures", "--max-images", "4"])
        assert res.exit_code == 0, res.output
        out[reference] = json.loads((tmp_path / reference / "metrics.json").read_text())
        assert out[reference]["attribution_reference"] == reference
    assert out["black"]["overlap_deeplift"] != pytest.approx(out["mean"]["overlap_deeplift"], abs=1e-4)
    # the old spelling still works, with a one-line note
    res = r.invoke(cli, ["evaluate", "--run", str(run), "--out", str(tmp_path / "old"), "--methods", "deeplift",
                         "--baseline", "zero", "--no-figures", "--max-images", "4"])
    assert res.exit_code == 0 and "--baseline is now --reference" in res.output, res.output
    assert json.loads((tmp_path / "old" / "metrics.json").read_text())["attribution_reference"] == "black"
    # in place, an overlap taken against another reference does not survive next to the new one
    for reference, methods in (("mean", "deeplift,occlusion"), ("black", "saliency")):
        res = r.invoke(cli, ["evaluate", "--run", str(run), "--methods", methods, "--reference", reference,
                             "--no-figures", "--max-images", "4"])
        assert res.exit_code == 0, res.output
    kept = json.loads((run / "metrics.json").read_text())
    assert kept["attribution_reference"] == "black" and "overlap_saliency" in kept
    assert "overlap_deeplift" not in kept and "overlap_occlusion" not in kept and "best_epoch" in kept
    # add_overlap (compare's top-up) recomputes an overlap taken against another reference than the
    # run's config names (black): here a mean-reference DeepLIFT left by an in-place evaluation
    res = r.invoke(cli, ["evaluate", "--run", str(run), "--methods", "deeplift", "--reference", "mean",
                         "--no-figures", "--max-images", "4"])
    assert res.exit_code == 0, res.output
    assert json.loads((run / "metrics.json").read_text())["overlap_deeplift"] == pytest.approx(out["mean"]["overlap_deeplift"])
    topped = add_overlap(run, methods=("deeplift",), max_images=4, progress=False)
    assert topped["attribution_reference"] == "black"
    assert topped["overlap_deeplift"] == pytest.approx(out["black"]["overlap_deeplift"], rel=1e-6)
    assert json.loads((run / "metrics.json").read_text())["overlap_deeplift"] == topped["overlap_deeplift"]
    res = r.invoke(cli, ["explain", "--run", str(run), "--run", str(run), "--out", str(tmp_path / "cmp"),
                         "--n-images", "2", "--methods", "deeplift", "--reference", "mean"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cmp" / "attributions_deeplift.png").exists()


def test_figure_titles_name_the_reference_where_there_is_one():
    from pyro_ebnn.experiment.figures import attribution_title
    assert attribution_title("deeplift", 0, "mean") == "posterior mean, reference: training mean"
    assert attribution_title("occlusion", 5, "black") == "mean of 5 posterior samples, reference: black"
    assert attribution_title("gradcam", 0, "mean") == "posterior mean"


def test_channel_moments_in_chunks_match_the_full_computation():
    from pyro_ebnn.bnn.nets import channel_moments
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1000, 3, 6, 6, generator=g) * torch.tensor([1.0, 0.5, 0.1]).view(1, 3, 1, 1)
    mean, std = channel_moments(x, chunk=300)          # 4 chunks, the last one short
    full = x.double().transpose(0, 1).flatten(1)
    torch.testing.assert_close(mean, full.mean(1))
    torch.testing.assert_close(std, full.std(1))


def test_the_point_network_and_the_receptive_pool_know_the_layer():
    from pyro_ebnn.experiment.build import build_model
    x, _ = _images(8)
    cfg = load_config(None, {"standardize": True, "network": "deterministic", "mode": "rrr"})
    point = build_model(cfg, (1, 28, 28), 10)
    stats = fit_standardization(point.net, x)
    layer = point.net.body[0]
    assert isinstance(layer, Standardize) and layer.mean.item() == pytest.approx(stats["input_mean"][0])
    mask = torch.zeros(8, 1, 28, 28, dtype=torch.bool)
    mask[:, :, :4, :4] = True
    loss = point.loss(x, torch.arange(8), mask)            # CE + RRR penalty through the layer
    assert torch.isfinite(loss) and loss.requires_grad
    net = _standardized_lenet(x)
    plain = lenet(num_classes=10)
    assert torch.equal(net.receptive_field_cells(mask), plain.receptive_field_cells(mask))

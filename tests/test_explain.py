"""Attributions of the Bayesian CNNs (Captum on a deterministic copy) and their overlap with the
feedback masks ([001] Eq. 17)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from pyro_ebnn import lenet
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.bnn import posterior_network
from pyro_ebnn.experiment.config import DATA_KEYS, config_difference
from pyro_ebnn.explain import (METHODS, SAMPLE_IMAGES, ExplainError, attribute, batch_sizes, bytes_per_image,
                               default_occlusion_window, explain, figure_indices, gradcam_layer_map, masked_indices,
                               overlap, overlap_metrics, overlap_per_image)
from pyro_ebnn.explain.attributions import CPU_BATCH_BYTES
from pyro_ebnn.cli import cli
from pyro_ebnn.data import ImageSet
from pyro_ebnn.experiment import figures

from test_inputs import _write_npz


@pytest.fixture
def net():
    torch.manual_seed(0)
    return lenet(num_classes=10)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 1, 28, 28, generator=g), torch.tensor([1, 4, 7])


# -- overlap ------------------------------------------------------------------------------------
def test_overlap_is_one_inside_the_mask_and_zero_outside():
    mask = torch.zeros(2, 1, 28, 28, dtype=torch.bool)
    mask[:, :, :4, :4] = True
    inside = torch.zeros(2, 1, 28, 28)
    inside[:, :, 1:3, 1:3] = torch.tensor([[-2.0, 1.0], [0.5, 3.0]])   # signs do not matter
    outside = torch.zeros(2, 1, 28, 28)
    outside[:, :, 10:20, 10:20] = -1.0
    assert overlap(inside, mask) == pytest.approx(1.0)
    assert overlap(outside, mask) == pytest.approx(0.0)
    # one unit inside and three outside: 1/4; channels are summed as absolute values
    half = torch.zeros(1, 3, 28, 28)
    half[0, 0, 0, 0], half[0, 1, 0, 0] = 0.5, -0.5
    half[0, 2, 20, 20] = -3.0
    assert overlap(half, mask[:1]) == pytest.approx(0.25)


def test_overlap_averages_only_images_with_a_mask():
    mask = torch.zeros(3, 1, 28, 28, dtype=torch.bool)
    mask[0, :, :4, :4] = True
    mask[1, :, -4:, -4:] = True                        # image 2 has no mask: left out
    attr = torch.zeros(3, 1, 28, 28)
    attr[0, 0, 0, 0] = 1.0                             # 1.0 inside
    attr[1, 0, 0, 0] = 1.0                             # 0.0 (outside its mask)
    attr[2, 0, 0, 0] = 1.0
    assert overlap_per_image(attr, mask).tolist() == [1.0, 0.0, 0.0]
    assert overlap(attr, mask) == pytest.approx(0.5)
    assert masked_indices(mask).tolist() == [0, 1] and masked_indices(mask, 1).tolist() == [0]
    with pytest.raises(ExplainError, match="do not match"):
        overlap(attr, mask[:, :, :10, :10])


# -- the network Captum explains ---------------------------------------------------------------------
def test_posterior_network_at_the_mean_matches_the_bayesian_net_in_eval_mode(net, batch):
    x, y = batch
    det = posterior_network(net)
    assert isinstance(det.evidence_layer, nn.Conv2d)
    assert not any(isinstance(m, type(net.evidence_layer)) for m in det.modules())
    relus = [m for m in det.modules() if isinstance(m, nn.ReLU)]
    assert len({id(m) for m in relus}) == len(relus) == 4      # distinct instances (DeepLIFT)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(det(x), net(x), atol=1e-6)
    # Saliency of the deterministic copy = the input gradient of the posterior-mean logits
    xg = x.clone().requires_grad_(True)
    net(xg).gather(1, y[:, None]).sum().backward()
    sal = explain(net, x, y, ["saliency"], progress=False)["saliency"]
    assert torch.allclose(sal, xg.grad, atol=1e-6)
    assert sal.abs().sum() > 0


def test_sampled_networks_draw_from_q_and_are_averaged(net, batch):
    x, y = batch
    with torch.no_grad():
        net.evidence_layer.weight_rho.fill_(-3.0)
    a = posterior_network(net, "sample", torch.Generator().manual_seed(5))
    b = posterior_network(net, "sample", torch.Generator().manual_seed(5))
    c = posterior_network(net, "sample", torch.Generator().manual_seed(6))
    assert torch.equal(a.evidence_layer.weight, b.evidence_layer.weight)
    diff = a.evidence_layer.weight - net.evidence_layer.weight_loc
    assert not torch.equal(a.evidence_layer.weight, c.evidence_layer.weight)
    scale = F.softplus(torch.tensor(-3.0))
    assert diff.std().item() == pytest.approx(scale.item(), rel=0.1)    # w - mu ~ N(0, softplus(rho)^2)
    # samples=S averages the attributions of S weight draws taken from one seeded generator
    got = explain(net, x, y, ["saliency"], samples=3, seed=11, progress=False)["saliency"]
    g = torch.Generator().manual_seed(11)
    by_hand = sum(attribute(posterior_network(net, "sample", g), x, y, "saliency")
                  for _ in range(3)) / 3
    assert torch.allclose(got, by_hand, atol=1e-6)
    at_mean = explain(net, x, y, ["saliency"], progress=False)["saliency"]
    assert not torch.allclose(got, at_mean, atol=1e-4)


# -- the methods ------------------------------------------------------------------------------------
def test_gradcam_targets_the_evidence_layer_at_its_own_size(net, batch):
    x, y = batch
    det = posterior_network(net)
    cam = gradcam_layer_map(det, x, y)
    assert cam.shape == (3, 1, 11, 11)                        # LeNet's last conv on 28 px
    # by hand: A = the evidence layer's pre-activation, weights = spatial mean of d logit_y / dA
    acts = {}
    h = det.evidence_layer.register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    xg = x.clone().requires_grad_(True)
    logit = det(xg).gather(1, y[:, None]).sum()
    h.remove()
    grad, = torch.autograd.grad(logit, acts["a"])
    expected = (grad.mean((2, 3), keepdim=True) * acts["a"]).sum(1, keepdim=True)
    assert torch.allclose(cam, expected.detach(), atol=1e-5)
    up = attribute(det, x, y, "gradcam")
    assert up.shape == (3, 1, 28, 28)
    assert torch.allclose(up, F.interpolate(expected.detach(), size=(28, 28), mode="bilinear"), atol=1e-5)


def test_deeplift_sums_to_the_logit_difference(net, batch):
    x, y = batch
    det = posterior_network(net)
    attr = explain(net, x, y, ["deeplift"], progress=False)["deeplift"]
    with torch.no_grad():
        delta = (det(x) - det(torch.zeros_like(x))).gather(1, y[:, None]).flatten()
    assert torch.allclose(attr.flatten(1).sum(1), delta, atol=1e-4)


def test_occlusion_window_and_values(net, batch):
    assert default_occlusion_window(28) == 3
    assert default_occlusion_window(224) == 23 and default_occlusion_window(227) == 23
    x, y = batch[0][:1], batch[1][:1]
    det = posterior_network(net)
    occ = attribute(det, x, y, "occlusion", occlusion_window=1)
    # a 1 x 1 window: the drop of the true logit when that pixel is set to 0
    with torch.no_grad():
        full = det(x)[0, y[0]]
        for r, c in ((5, 5), (14, 20), (27, 0)):
            z = x.clone()
            z[0, 0, r, c] = 0.0
            assert occ[0, 0, r, c] == pytest.approx(float(full - det(z)[0, y[0]]), abs=1e-5)
    occ3 = explain(net, x, y, ["occlusion"], progress=False, perturbations_per_eval=7)["occlusion"]
    occ3b = explain(net, x, y, ["occlusion"], progress=False, perturbations_per_eval=676)["occlusion"]
    assert occ3.shape == (1, 1, 28, 28) and torch.allclose(occ3, occ3b, atol=1e-5)


def test_occlusion_batched_to_memory_gives_the_unbatched_attributions(net, batch):
    x, y = batch
    sized = batch_sizes(posterior_network(net), (1, 28, 28), "cpu", n_images=3, windows=676)
    assert sized["occlusion_batch"] == 3 and sized["occlusion_batch"] * sized["perturbations_per_eval"] > 100
    assert sized["perturbations_per_eval"] * sized["occlusion_batch"] * bytes_per_image(posterior_network(net),
                                                                                        (1, 28, 28)) <= CPU_BATCH_BYTES
    batched = explain(net, x, y, ["occlusion", "saliency"], progress=False)
    one = explain(net, x, y, ["occlusion", "saliency"], progress=False, batch_size=1, occlusion_batch=1,
                  perturbations_per_eval=1)
    for m in ("occlusion", "saliency"):
        assert torch.allclose(batched[m], one[m], atol=1e-5)


def test_all_methods_run_and_errors_are_clear(net, batch):
    x, y = batch
    attrs = explain(net, x, y, METHODS, progress=False)
    assert set(attrs) == set(METHODS) and all(a.shape == (3, 1, 28, 28) for a in attrs.values())
    assert all(torch.isfinite(a).all() for a in attrs.values())
    with pytest.raises(ExplainError, match="unknown attribution method"):
        explain(net, x, y, ["lime"], progress=False)
    with pytest.raises(ExplainError, match="takes \\(1, 28, 28\\) images"):
        explain(net, torch.rand(2, 1, 20, 20), y[:2], ["saliency"], progress=False)
    a, b = load_config(None, {"rule": "position"}), load_config(None, {"rule": "color"})
    same = load_config(None, {"rule": "position", "mode": "none"})
    assert config_difference(a.to_dict(), same.to_dict(), only=DATA_KEYS) == []
    assert config_difference(a.to_dict(), b.to_dict(), only=DATA_KEYS) == ["rule"]


# -- figures ----------------------------------------------------------------------------------------
@pytest.fixture
def drawn(monkeypatch):
    """The figures that the figure functions would write, drawn but not saved."""
    kept = []

    def keep(fig, stem):
        fig.canvas.draw()
        kept.append(fig)
        return []
    monkeypatch.setattr(figures, "_save", keep)
    return kept


def test_figure_rows_come_from_every_class_and_the_overlap_from_the_first_masked_images():
    # sorted by class, as an image folder is: the first masked images are all of class 0
    labels = torch.tensor([0] * 12 + [1] * 6)
    masks = torch.zeros(18, 1, 28, 28, dtype=torch.bool)
    masks[::2, :, :4, :4] = True                        # 6 masked images of class 0, 3 of class 1
    rows = figure_indices(labels, masks, 4, seed=1)
    assert labels[masked_indices(masks, 4)].tolist() == [0, 0, 0, 0]
    assert labels[rows].tolist() == [0, 0, 1, 1] and all(masks[i].any() for i in rows)
    assert rows.tolist() == figure_indices(labels, masks, 4, seed=1).tolist()      # seeded
    assert labels[figure_indices(labels, masks, 8)].tolist() == [0] * 5 + [1] * 3   # class 1 has 3
    assert len(figure_indices(labels, torch.zeros(18, dtype=torch.bool), 4)) == 0
    # overlap_metrics: the overlap over the first 4 masked images, the rows of every class
    torch.manual_seed(0)
    net = lenet(num_classes=2)
    data = ImageSet(torch.rand(18, 1, 28, 28), labels, masks, 2, "t", ["everyday", "scientific"])
    keep = {}
    out = overlap_metrics(net, data, ["saliency"], max_images=4, progress=False, keep=keep, keep_images=4, seed=1)
    assert out["n_overlap_images"] == 4 and keep["indices"].tolist() == rows.tolist()
    assert keep["labels"].tolist() == [0, 0, 1, 1] and keep["class_names"] == ["everyday", "scientific"]
    alone = explain(net, data.images[rows], labels[rows], ["saliency"], progress=False)["saliency"]
    assert torch.allclose(keep["attributions"]["saliency"], alone, atol=1e-6)
    assert torch.equal(keep["images"], data.images[rows]) and torch.equal(keep["masks"], masks[rows])


def test_the_overlap_sample_is_fixed_by_the_masks_and_reports_its_standard_error():
    g = torch.Generator().manual_seed(3)
    masks = torch.zeros(40, 1, 28, 28, dtype=torch.bool)
    masks[torch.rand(40, generator=g) < 0.7, :, :6, :6] = True
    has = masks.flatten(1).any(1)
    torch.manual_seed(11)
    drawn = masked_indices(masks, sample=10)
    torch.manual_seed(12)                                 # the global seed (a run's seed) plays no part
    assert torch.equal(masked_indices(has, sample=10), drawn)
    assert len(drawn) == 10 and has[drawn].all() and drawn.tolist() == sorted(drawn.tolist())
    assert drawn.tolist() != masked_indices(masks, 10).tolist()          # not the first ten
    assert torch.equal(masked_indices(masks, sample=100), masked_indices(masks))   # fewer masked: all
    assert not torch.equal(masked_indices(masks, sample=10, seed=1), drawn)
    with pytest.raises(ExplainError, match="not both"):
        masked_indices(masks, 5, sample=5)
    # two runs (networks) on the same data: the same images; the standard error is std / sqrt(n)
    data = ImageSet(torch.rand(40, 1, 28, 28, generator=g), torch.randint(0, 3, (40,), generator=g), masks, 3, "t")
    per = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = lenet(num_classes=3)
        out = overlap_metrics(net, data, ["saliency"], sample=10, progress=False, seed=seed, batch_size=4)
        assert out["n_overlap_images"] == 10 and out["overlap_selection"] == "random"
        values = overlap_per_image(explain(net, data.images[drawn], data.labels[drawn], ["saliency"],
                                           progress=False)["saliency"], masks[drawn]).numpy()
        assert out["overlap_saliency"] == pytest.approx(values.mean(), abs=1e-7)
        assert out["overlap_saliency_se"] == pytest.approx(values.std(ddof=1) / np.sqrt(10), abs=1e-7)
        per[seed] = values
    assert not np.allclose(per[0], per[1])
    every = overlap_metrics(net, data, ["saliency"], progress=False)
    assert every["n_overlap_images"] == int(has.sum()) and every["overlap_selection"] == "all"
    assert overlap_metrics(net, data, ["saliency"], max_images=4, progress=False)["overlap_selection"] == "first"
    assert SAMPLE_IMAGES == 500


def test_attribution_grid_names_the_classes_and_the_predictions(drawn):
    images, masks = torch.rand(2, 3, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    masks[:, :, :2, :2] = True
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3]])      # the second image is taken for everyday: wrong
    figures.attribution_grid(images, masks, torch.tensor([0, 1]), [("run", torch.rand(2, 3, 8, 8), probs)],
                             "saliency", "unused", class_names=["everyday", "scientific"])
    axes = drawn[0].axes
    assert [axes[0].get_ylabel(), axes[2].get_ylabel()] == ["everyday", "scientific"]
    right, wrong = axes[1].xaxis.label, axes[3].xaxis.label
    assert right.get_text().startswith("pred everyday (0.900)\nin mask ") and "scientific" not in wrong.get_text()
    assert wrong.get_color() == figures.WRONG_COLOUR != right.get_color()
    figures.attribution_grid(images, masks, torch.tensor([3, 1]), [("run", torch.rand(2, 3, 8, 8), None)],
                             "saliency", "unused")          # no names: the class numbers
    assert drawn[1].axes[0].get_ylabel() == "class 3" and drawn[1].axes[1].get_xlabel().startswith("in mask ")


def test_reliability_and_mutual_information_axes_read_plainly(drawn):
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(2, 4000, 2, generator=g), -1)
    labels = torch.randint(0, 2, (4000,), generator=g)
    figures.reliability_diagram(figures.reliability(labels, probs), 0.0005, "unused")
    top, counts = drawn[0].axes
    for axis in (top.yaxis, counts.xaxis):             # the x axis shared, labelled below
        assert [t.get_text() for t in axis.get_ticklabels()] == ["0", "0.25", "0.5", "0.75", "1"]
    numbers = {t.get_text() for t in counts.get_yticklabels()}
    assert counts.get_yscale() == "log" and "1" in numbers and numbers <= {"1", "10", "100", "1000"}
    assert any("ECE = 0.0005" in t.get_text() for t in top.texts)
    correct = np.arange(30) % 3 > 0
    figures.mutual_information_histogram(np.where(correct, 0.0005, 0.00012), correct, "unused")
    ax = drawn[1].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["correct (n=20, mean 0.0005)", "wrong (n=10, mean 0.00012)"]
    assert all(len(t.get_text()) <= 7 for t in ax.get_xticklabels() + ax.get_yticklabels())


def test_the_shortcut_figure_shows_every_group_and_names_the_class_read_through_its_marks(drawn):
    metrics = {"balanced_accuracy": 0.777, "accuracy_three_marked": 0.957, "images_three_marked": 92,
               "accuracy_three_unmarked": 0.352, "images_three_unmarked": 108, "accuracy_two_marked": 0.5,
               "images_two_marked": 104, "accuracy_two_unmarked": 0.896, "images_two_unmarked": 96}
    figures.shortcut_groups(metrics, "unused")
    ax = drawn[0].axes[0]
    assert sorted(round(p.get_width(), 3) for p in ax.patches) == [0.352, 0.5, 0.896, 0.957]
    assert {t.get_text() for t in ax.texts} >= {"0.957 (92)", "0.352 (108)", "0.500 (104)", "0.896 (96)"}
    three, = [t for t in ax.get_yticklabels() if t.get_text() == "three"]
    two, = [t for t in ax.get_yticklabels() if t.get_text() == "two"]
    assert three.get_color() == figures.WRONG_COLOUR != two.get_color()
    assert any(t.get_text().startswith("three: marked and unmarked 0.605 apart") for t in ax.texts)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["with a marked region", "without",
                                                                   "balanced accuracy 0.777"]
    # below the warning's thresholds no class is named; no groups, no figure
    figures.shortcut_groups({**metrics, "accuracy_three_unmarked": 0.9, "accuracy_two_marked": 0.8}, "unused")
    assert all(t.get_color() != figures.WRONG_COLOUR for t in drawn[1].axes[0].get_yticklabels())
    assert figures.shortcut_groups({"balanced_accuracy": 0.9}, "unused") == [] and len(drawn) == 2
    # a test set marked on every image (Decoy MNIST): one bar a class, on its row
    figures.shortcut_groups({"accuracy_0_marked": 0.9, "images_0_marked": 10, "accuracy_1_marked": 0.8,
                             "images_1_marked": 10}, "unused")
    bars = drawn[2].axes[0].patches
    assert sorted(b.get_y() + b.get_height() / 2 for b in bars) == [0, 1]


# -- the CLI ----------------------------------------------------------------------------------------
def test_train_without_config_and_evaluate_without_out_say_what_they_do(tmp_path, monkeypatch):
    from pyro_ebnn.cli import evaluation, search
    monkeypatch.setattr(search, "train_choosing_lam", lambda cfg, out, resume: {})
    res = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert res.stderr.strip() == ("no --config: training decoy_mnist, rule position, mode feedback; --config "
                                  "configs/<file>.yaml chooses other data")
    metrics = {"balanced_accuracy": 0.5, "ece": 0.00052, "nll": 0.69, "overlap_saliency": 0.0, "eval_seconds": 1.0}
    monkeypatch.setattr(evaluation, "evaluate_run", lambda *a, **kw: metrics)
    res = CliRunner().invoke(cli, ["evaluate", "--run", str(tmp_path / "run"), "--methods", "saliency"])
    assert res.exit_code == 0, res.output
    assert res.stderr.strip() == (f"no --out: this updates {tmp_path / 'run' / 'metrics.json'} and writes the figures "
                                  "there; --out DIR writes elsewhere")
    assert "balanced_accuracy=0.5000  ece=0.00052  nll=0.6900  overlap_saliency=0.0000" in res.stdout
    res = CliRunner().invoke(cli, ["evaluate", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0 and res.stderr == ""
    res = CliRunner().invoke(cli, ["train", "--help"])
    assert "the image folder of dataset: folder" in " ".join(res.output.split())


def test_evaluate_and_explain_from_the_cli(tmp_path):
    masks = np.zeros((20, 1, 28, 28), np.uint8)
    masks[:, :, :4, :4] = 1
    masks[::5] = 0                                        # four test images without a mask
    _write_npz(tmp_path / "d.npz", test_masks=masks)
    r = CliRunner()
    base = ["--config", "configs/custom_npz.yaml", "--set", f"npz_path={tmp_path / 'd.npz'}", "--set", "eval_samples=2",
            "--set", "epochs=1"]
    for mode in ("none", "feedback"):
        res = r.invoke(cli, ["train", *base, "--mode", mode, "--out", str(tmp_path / mode)])
        assert res.exit_code == 0, res.output
        m = json.loads((tmp_path / mode / "metrics.json").read_text())
        assert {"nll", "brier", "ece", "predictive_entropy", "mutual_information"} <= set(m)
        assert "overlap_saliency" not in m
    res = r.invoke(cli, ["evaluate", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "ev"),
                         "--max-images", "5", "--methods", "saliency,gradcam,occlusion", "--figure-images", "3"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["n_overlap_images"] == 5 and 0 <= m["overlap_occlusion"] <= 1 and "overlap_deeplift" not in m
    for name in ("reliability_test", "mutual_information_test", "attributions_gradcam", "shortcut_groups"):
        assert (tmp_path / "ev" / f"{name}.png").stat().st_size > 1000 and (tmp_path / "ev" / f"{name}.pdf").exists()
    res = r.invoke(cli, ["evaluate", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "ev2"),
                         "--no-attributions", "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "overlap_saliency" not in json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    # the default: a random sample of the masked test images, with the standard error; all: every one
    for flags, n, selection in ((["--sample-images", "6"], 6, "random"), (["--max-images", "all"], 16, "all")):
        res = r.invoke(cli, ["evaluate", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "ev3"),
                             "--methods", "saliency", "--no-figures", *flags])
        assert res.exit_code == 0, res.output
        m = json.loads((tmp_path / "ev3" / "metrics.json").read_text())
        assert (m["n_overlap_images"], m["overlap_selection"]) == (n, selection) and m["overlap_saliency_se"] > 0
        assert f"overlap_saliency={m['overlap_saliency']:.4f} ± " in res.stdout
    res = r.invoke(cli, ["explain", "--run", str(tmp_path / "none"), "--run", str(tmp_path / "feedback"),
                         "--out", str(tmp_path / "cmp"), "--n-images", "2", "--methods", "saliency,deeplift"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cmp" / "attributions_deeplift.png").exists() and not (tmp_path / "cmp" / "attributions_gradcam.png").exists()
    # in place: the training record stays, the new metrics join it; aggregate shows them with --columns wide
    res = r.invoke(cli, ["evaluate", "--run", str(tmp_path / "feedback"), "--methods", "gradcam", "--no-figures"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "feedback" / "metrics.json").read_text())
    assert "best_epoch" in m and "train_seconds" in m and 0 <= m["overlap_gradcam"] <= 1
    res = r.invoke(cli, ["aggregate", str(tmp_path), "--columns", "wide", "--out", str(tmp_path / "summary")])
    assert res.exit_code == 0, res.output
    header = res.output.splitlines()[0]
    assert "| ece |" in header and "overlap_occlusion" in header
    row = next(line for line in res.output.splitlines() if "| feedback |" in line)
    # n/a: no decoy_swap set in an npz dataset (2 columns), overlaps not computed for this run (3)
    assert row.count("n/a") == 5 and row.split("|")[-2].strip() == "n/a" and row.split("|")[-3].strip() != "n/a"  # gradcam
    # bad input: one clear line, exit status 2
    res = r.invoke(cli, ["explain", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "two or more runs" in res.output
    res = r.invoke(cli, ["evaluate", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "x"), "--methods", "lime"])
    assert res.exit_code == 2 and "unknown attribution method" in res.output
    for flags, fix in ((["--max-images", "0"], "or --max-images all"), (["--sample-images", "0"], "--sample-images 500"),
                       (["--max-images", "5", "--sample-images", "5"], "not both")):
        res = r.invoke(cli, ["evaluate", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "x"), *flags])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and fix in res.output, res.output

"""The deterministic (point-estimate) networks of the baselines, the compare grid and its tables,
and test-rule validation decoys."""
import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from pyro_ebnn.baselines import rrr_penalty
from pyro_ebnn.experiment.compare import against_none, parse_modes, tables
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.errors import ConfigError
from pyro_ebnn.bnn import cdep_cnn, layer_sequence, lenet
from pyro_ebnn.baselines import PointModel, cd_decompose, point_network
from pyro_ebnn.cli import cli
from pyro_ebnn.experiment.rundir import CHECKPOINT, MODEL, load_model
from pyro_ebnn.experiment.protocol import prepare_split
from pyro_ebnn.experiment.runs import train

from test_inputs import _write_npz


@pytest.fixture
def npz(tmp_path):
    _write_npz(tmp_path / "d.npz")
    return str(tmp_path / "d.npz")


def _cfg(npz, **kw):
    return load_config("configs/custom_npz.yaml", {"npz_path": npz, "eval_samples": 2, "batch_size": 8,
                                                   "network": "deterministic", "mode": "rrr", **kw})


def test_point_network_starts_at_the_posterior_mean_and_trains_its_own_weights():
    bnet = lenet()
    det = point_network(bnet)
    x = torch.rand(5, 1, 28, 28)
    bnet.eval()
    assert torch.allclose(det(x), bnet(x), atol=1e-5)
    assert all(p.requires_grad for p in det.parameters())
    assert det.training and det.input_shape == (1, 28, 28)
    ids = {id(p) for p in bnet.parameters()}
    assert not any(id(p) in ids for p in det.parameters())


def test_point_loss_is_cross_entropy_plus_the_weighted_penalty():
    torch.manual_seed(0)
    det = point_network(lenet())
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    mask = torch.zeros(6, 1, 28, 28, dtype=torch.bool)
    mask[:, :, :4, :4] = True
    ce = F.cross_entropy(det(x), y)
    assert torch.allclose(PointModel(det, "none").loss(x, y, mask), ce)
    assert torch.allclose(PointModel(det, "rrr", weight=10.0).loss(x, y, torch.zeros_like(mask)), ce)
    by_hand = ce + 10.0 * rrr_penalty(det, x, mask).mean()
    got = PointModel(det, "rrr", weight=10.0).loss(x, y, mask)
    assert got > ce and torch.allclose(got, by_hand)
    with pytest.raises(ValueError, match="feedback as evidence needs network: bayesian"):
        PointModel(det, "feedback")


def test_deterministic_run_trains_saves_reloads_and_resumes_exactly(tmp_path, npz):
    straight = train(_cfg(npz, epochs=3), tmp_path / "a", progress=False)
    train(_cfg(npz, epochs=1), tmp_path / "b", progress=False)
    resumed = train(_cfg(npz, epochs=3), tmp_path / "b", progress=False)
    hist = [torch.load(tmp_path / d / CHECKPOINT, weights_only=False)["history"] for d in "ab"]
    assert [h["loss"] for h in hist[0]] == pytest.approx([h["loss"] for h in hist[1]], rel=1e-5)
    assert straight["balanced_accuracy"] == pytest.approx(resumed["balanced_accuracy"])
    # the time per epoch of a resumed run counts every epoch, not only those after the resume
    assert resumed["seconds_per_epoch"] == pytest.approx(sum(h["seconds"] for h in hist[1]) / 3)
    assert straight["network"] == "deterministic" and straight["mode"] == "rrr"
    assert straight["mutual_information"] == pytest.approx(0.0, abs=1e-6)  # one weight setting
    # the loss fell: the network learned something
    assert hist[0][-1]["loss"] < hist[0][0]["loss"]
    model, cfg, payload = load_model(tmp_path / "a")
    assert isinstance(model, PointModel) and cfg.network == "deterministic"
    saved = torch.load(tmp_path / "a" / MODEL, weights_only=False)["net"]
    assert all(torch.equal(saved[k], v) for k, v in model.net.state_dict().items())


def test_point_network_is_explained_as_it_is_and_has_no_posterior_to_sample():
    from pyro_ebnn.explain import ExplainError, explain, explained_network
    det = point_network(lenet())
    copy = explained_network(det)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    det.eval()
    assert torch.equal(copy(x), det(x)) and copy is not det
    assert not any(p.requires_grad for p in copy.parameters()) and all(p.requires_grad for p in det.parameters())
    assert explain(det, x, y, ("saliency", "gradcam"), progress=False)["gradcam"].shape == (4, 1, 28, 28)
    with pytest.raises(ExplainError, match="no posterior"):
        explain(det, x, y, ("saliency",), samples=2, progress=False)


def test_bad_folds_on_the_cli_is_one_line():
    r = CliRunner().invoke(cli, ["compare", "--config", "configs/decoy_mnist_rrr.yaml", "--folds", "0,a",
                                 "--out", "/tmp/never"])
    assert r.exit_code == 2 and "--folds takes comma-separated fold numbers" in r.output


def test_deterministic_feedback_and_finetune_are_refused(tmp_path, npz):
    with pytest.raises(ConfigError, match="feedback is evidence in the Bayesian model"):
        _cfg(npz, mode="feedback")
    train(_cfg(npz, epochs=1, mode="none"), tmp_path / "p", progress=False)
    r = CliRunner().invoke(cli, ["finetune", "--run", str(tmp_path / "p"), "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and "needs a Bayesian run" in r.output


def test_validation_decoys_follow_the_test_rule_when_asked():
    base = {"max_train_images": 600, "max_test_images": 50, "rule": "corners", "num_folds": 3}
    cfg = load_config(None, base)
    split = prepare_split(cfg)
    grey = lambda s: (s.images[:, 0, 0, 0] * 255).round().long()   # the top-left decoy square
    # training rule: grey 255 - 25 y on every validation image
    assert torch.equal(grey(split.val), 255 - 25 * split.val.labels)
    split_t = prepare_split(load_config(None, {**base, "validation_decoys": "test"}))
    assert torch.equal(split_t.val.labels, split.val.labels)
    assert (grey(split_t.val) != 255 - 25 * split_t.val.labels).float().mean() > 0.8  # random grey
    assert torch.equal(split_t.train.images, split.train.images)   # training data unchanged
    with pytest.raises(ConfigError, match="decoy_mnist and decoy_fmnist only"):
        load_config(None, {"dataset": "npz", "npz_path": "x.npz", "validation_decoys": "test"})


def test_compare_modes_parse_and_refuse_nonsense():
    assert parse_modes("none, rrr@deterministic") == [("none", "bayesian"), ("rrr", "deterministic")]
    for bad, msg in (("rrr@mlp", "unknown network"), ("foo", "unknown mode"),
                     ("feedback@deterministic", "does not exist"), (",", "empty")):
        with pytest.raises(ConfigError, match=msg):
            parse_modes(bad)


def test_compare_tables_have_the_paper_layout_with_mean_and_std():
    runs = [{"name": "decoy_mnist_rrr", "mode": "rrr", "network": "deterministic", "balanced_accuracy": a}
            for a in (0.9, 0.7)]
    runs += [{"name": "decoy_mnist_rrr", "mode": "feedback", "config": {"network": "bayesian"},
              "balanced_accuracy": 0.95, "overlap_saliency": 0.01}]
    text, rows = tables(runs, parse_modes("feedback,rrr@deterministic"))
    lines = text.splitlines()
    i = lines.index("### balanced accuracy")
    assert lines[i + 2] == "| rule | feedback | rrr (det.) |"
    assert lines[i + 4] == "| decoy_mnist_rrr | 0.950 ± 0.000 | 0.800 ± 0.141 |"
    assert "| decoy_mnist_rrr | 0.010 ± 0.000 | n/a |" in lines
    assert {r["runs"] for r in rows} == {1, 2}
    assert "Architecture: lenet." in lines[0]   # runs whose config has no architecture key: the default
    assert not [l for l in lines if l.startswith("### hole information")]     # no run looked at holes
    runs[2]["hole_information"] = 0.7
    lines = tables(runs, parse_modes("feedback,rrr@deterministic"))[0].splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith("### hole information"))
    assert lines[i + 4] == "| decoy_mnist_rrr | 0.700 ± 0.000 | n/a |"
    for r in runs:
        r["config"] = {**r.get("config", {}), "architecture": "cdep_cnn"}
    assert "Architecture: cdep_cnn." in tables(runs)[0].splitlines()[0]


def test_compare_says_per_rule_whether_each_mode_beat_none_fold_by_fold():
    run = lambda mode, fold, acc, network="bayesian": {
        "name": "r", "mode": mode, "network": network, "fold": fold, "seed": 0,
        "balanced_accuracy": acc, "worst_group_accuracy": acc - 0.2}
    runs = [run("none", 0, 0.70), run("none", 1, 0.80), run("feedback", 0, 0.66), run("feedback", 1, 0.74),
            run("augment", 0, 0.705), run("augment", 1, 0.80), run("rrr", 0, 0.80), run("rrr", 1, 0.90),
            run("rrr", 2, 0.10),                                   # no fold 2 without feedback: not paired
            run("rrr", 0, 0.10, "deterministic")]                  # no none (det.): not paired
    rows = {r["mode"] + "/" + r["network"]: r for r in against_none(runs)}
    assert set(rows) == {"feedback/bayesian", "augment/bayesian", "rrr/bayesian"}
    assert (rows["feedback/bayesian"]["balanced_accuracy"], rows["feedback/bayesian"]["verdict"]) == ("-0.050 ± 0.014", "hurt")
    assert rows["augment/bayesian"]["verdict"] == "no change" and rows["rrr/bayesian"]["verdict"] == "helped"
    assert (rows["rrr/bayesian"]["pairs"], rows["rrr/bayesian"]["balanced_accuracy"]) == (2, "+0.100 ± 0.000")
    text, _ = tables(runs, parse_modes("none,feedback,augment,rrr"))
    assert "| r | feedback | -0.050 ± 0.014 | -0.050 ± 0.014 | 2 | hurt | 0/2 → 0/2 |" in text.splitlines()
    # the runs whose marked and unmarked test images of one class score far apart: both without
    # feedback, one of the two with it
    reads = {"accuracy_a_marked": 0.95, "images_a_marked": 100, "accuracy_a_unmarked": 0.3, "images_a_unmarked": 100}
    for r in runs[:3]:
        r.update(reads)
    assert {r["mode"]: r["marks_read"] for r in against_none(runs)}["feedback"] == "2/2 → 1/2"


@pytest.mark.slow
def test_compare_from_the_cli_on_real_decoy_mnist(tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--config", "configs/decoy_mnist_rrr.yaml", "--modes", "none,rrr@deterministic",
            "--folds", "0,1", "--overlap", "saliency", "--overlap-images", "50", "--out", str(out),
            "--set", "epochs=1", "--set", "max_train_images=900", "--set", "max_test_images=100",
            "--set", "eval_samples=2", "--set", "batch_size=64"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert (out / "compare.md").exists() and (out / "compare.csv").exists()
    m = json.loads((out / "decoy_mnist_rrr" / "rrr-deterministic" / "fold1" / "metrics.json").read_text())
    assert m["network"] == "deterministic" and 0 <= m["overlap_saliency"] <= 1 and m["n_overlap_images"] == 50
    assert "| decoy_mnist_rrr |" in (out / "compare.md").read_text()
    # collecting again trains nothing and gives the same table
    before = (out / "compare.md").read_text()
    r = CliRunner().invoke(cli, args + ["--collect-only"])
    assert r.exit_code == 0 and (out / "compare.md").read_text() == before


def test_grid_skips_finished_runs_and_extends_them_when_epochs_grow(tmp_path, npz):
    from pyro_ebnn.experiment.compare import run_grid
    sets = [f"npz_path={npz}", "eval_samples=2", "batch_size=8", "epochs=1"]
    modes = parse_modes("none,rrr@deterministic")
    config = "configs/custom_npz.yaml"
    run_grid([config], modes, [0], tmp_path, sets, overlap=(), echo=lambda s: None)
    path = tmp_path / "custom_npz" / "rrr-deterministic" / "fold0" / "metrics.json"
    first = path.read_text()
    run_grid([config], modes, [0], tmp_path, sets, overlap=(), echo=lambda s: None)
    assert path.read_text() == first                       # finished with this config: not touched
    run_grid([config], modes, [0], tmp_path, sets[:-1] + ["epochs=2"], overlap=(), echo=lambda s: None)
    assert json.loads(path.read_text())["epochs_run"] == 2  # resumed and extended
    with pytest.raises(ConfigError, match="different config"):
        run_grid([config], modes, [0], tmp_path, sets[:-1] + ["epochs=2", "lr=0.01"], overlap=(),
                 echo=lambda s: None)


def _swept(weight, val, test, fold, mode="rrr"):
    return {"name": "decoy_mnist_rrr", "mode": mode, "network": "deterministic", "fold": fold,
            "balanced_accuracy": test, "val_balanced_accuracy": val,
            "config": {"penalty_weight": weight, "select_metric": "balanced_accuracy", "validation_decoys": "test"}}


def test_penalty_weight_is_chosen_on_validation_never_on_test():
    from pyro_ebnn.experiment.compare import select_settings
    # weight 10 validates best but tests worse than 1000: the choice must follow validation
    runs = [_swept(10, 0.96, 0.90, 0), _swept(10, 0.94, 0.92, 1),
            _swept(1000, 0.80, 0.99, 0), _swept(1000, 0.82, 0.99, 1),
            _swept(None, 0.5, 0.5, 0, mode="none")]
    kept, sweep = select_settings(runs)
    assert sorted((r["mode"], r["config"]["penalty_weight"]) for r in kept) == [("none", None), ("rrr", 10), ("rrr", 10)]
    assert [(s["setting"], s["chosen"]) for s in sweep] == [("penalty_weight=10", True), ("penalty_weight=1000", False)]
    assert sweep[0]["val_mean"] == pytest.approx(0.95) and sweep[1]["test_balanced_accuracy_mean"] == pytest.approx(0.99)
    text, rows = tables(runs, parse_modes("none@deterministic,rrr@deterministic"))
    assert "| decoy_mnist_rrr | 0.500 ± 0.000 | 0.910 ± 0.014 |" in text.splitlines()
    assert ("| decoy_mnist_rrr | rrr (det.) | **penalty_weight=10** | test | balanced_accuracy 0.950 ± 0.014 | "
            "0.910 ± 0.014 | 2 |") in text
    assert {r["mode"]: r["penalty_weight"] for r in rows} == {"none": None, "rrr": 10.0}
    # one setting only: nothing to choose, no sweep rows
    kept, sweep = select_settings([_swept(None, 0.9, 0.9, 0), _swept(None, 0.8, 0.9, 1)])
    assert len(kept) == 2 and sweep == []


def test_sweeps_need_validation_scores_and_sane_arguments():
    from pyro_ebnn.experiment.compare import parse_sweeps, parse_weights, select_settings, settings_of
    assert parse_weights("100, 10,10") == [10.0, 100.0] and parse_weights("") is None
    for bad in ("10,a", "0,10", "-1", "inf"):
        with pytest.raises(ConfigError, match="--penalty-weights"):
            parse_weights(bad)
    sweeps = parse_sweeps(["feedback:lam=5e-5,5e-4", "feedback:mask_pool=max,receptive", "rrr:penalty_weight=10"])
    assert sweeps == {"feedback": {"lam": [5e-5, 5e-4], "mask_pool": ["max", "receptive"]},
                      "rrr": {"penalty_weight": [10.0]}}
    assert len(settings_of("feedback", sweeps)) == 4 and settings_of("none", sweeps) == [{}]
    for bad, msg in (("feedback=lam", "MODE:KEY"), ("foo:lam=1", "unknown mode"), ("rrr:weight=1", "not a config key"),
                     ("rrr:mode=none", "not a config key"), ("rrr:lam=", "MODE:KEY")):
        with pytest.raises(ConfigError, match=msg):
            parse_sweeps([bad])
    runs = [_swept(10, 0.9, 0.9, 0), _swept(100, None, 0.9, 0)]
    with pytest.raises(ConfigError, match="no validation score"):
        select_settings(runs)


def test_compare_sweeps_penalty_weights_per_method_on_real_runs(tmp_path, npz):
    from pyro_ebnn.experiment.compare import compare
    sets = [f"npz_path={npz}", "eval_samples=2", "batch_size=8", "epochs=1"]
    compare(["configs/custom_npz.yaml"], "none,rrr@deterministic", [0], tmp_path, sets, overlap=(),
            echo=lambda s: None, penalty_weights=[1.0, 10.0], sweeps={"none": {"lr": [1e-3, 1e-2]}})
    dirs = sorted(p.parent.parent.name for p in (tmp_path / "custom_npz").rglob("metrics.json"))
    assert dirs == ["none-lr0.001", "none-lr0.01", "rrr-deterministic-w1", "rrr-deterministic-w10"]
    w = json.loads((tmp_path / "custom_npz" / "rrr-deterministic-w10" / "fold0" / "metrics.json").read_text())
    assert w["config"]["penalty_weight"] == 10.0
    text = (tmp_path / "compare.md").read_text()
    assert "## Sweeps" in text and "lr=0.01" in text and "penalty_weight=10" in text
    assert (tmp_path / "compare_sweep.csv").read_text().count("\n") == 5  # header + 2 lr + 2 weights


def test_sweep_rows_sort_when_a_setting_lacks_a_key():
    from pyro_ebnn.experiment.compare import select_settings
    a, b = _swept(10, 0.9, 0.9, 0), _swept(100, 0.8, 0.8, 0)
    b["config"] = {**b["config"], "future_key": "x"}   # a key only one setting has, and no default
    kept, sweep = select_settings([b, a])
    assert [s["setting"] for s in sweep] == ["future_key=x, penalty_weight=100", "future_key=n/a, penalty_weight=10"]
    assert kept == [a]


def test_a_config_key_added_later_holds_its_default_in_old_runs():
    from pyro_ebnn.experiment.compare import select_settings
    old, new = _swept(10, 0.9, 0.9, 0), _swept(10, 0.8, 0.8, 1)
    new["config"] = {**new["config"], "weight_decay": 0.0}   # saved after the key existed
    kept, sweep = select_settings([old, new])
    assert sweep == [] and len(kept) == 2                      # one setting, two folds
    new["config"]["weight_decay"] = 1e-3                        # a real difference is still a setting
    kept, sweep = select_settings([old, new])
    assert [s["setting"] for s in sweep] == ["weight_decay=0", "weight_decay=0.001"]


def test_compare_cli_refuses_bad_sweeps_in_one_line():
    base = ["compare", "--config", "configs/decoy_mnist_rrr.yaml", "--out", "unused"]
    for args, msg in ((["--sweep", "feedback=lam"], "MODE:KEY"), (["--sweep", "feedback:lam=abc"], "cannot read 'abc'"),
                      (["--penalty-weights", "10,x"], "--penalty-weights")):
        r = CliRunner().invoke(cli, base + args)
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1


# -- [004]'s own setting: its MNIST CNN and Adam with weight decay --------------------------------------
def test_cdep_cnn_is_the_network_of_the_cdep_paper_and_cd_splits_it_exactly():
    torch.manual_seed(0)
    net = cdep_cnn()
    assert net.evidence_shape == (50, 8, 8)  # conv(20,5) pool conv(50,5): the last conv is 50 x 8 x 8
    det = point_network(net)
    widths = [m.out_channels if isinstance(m, torch.nn.Conv2d) else m.out_features
              for _, m in layer_sequence(det) if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert widths == [20, 50, 256, 10]
    x = torch.rand(4, 1, 28, 28)
    mask = torch.zeros(4, 1, 28, 28, dtype=torch.bool)
    mask[:, :, :5, :5] = True
    beta, gamma, trace = cd_decompose(det, x, mask, return_layers=True)
    z = x
    for (name, module), (_, b, g) in zip(layer_sequence(det), trace):
        z = module(z)
        torch.testing.assert_close(b + g, z, rtol=1e-5, atol=1e-5, msg=f"layer {name}")
    torch.testing.assert_close(beta + gamma, det(x), rtol=1e-5, atol=1e-5)


def test_weight_decay_is_for_point_networks_and_reaches_adam(tmp_path, npz):
    with pytest.raises(ConfigError, match="weight_decay.*deterministic"):
        _cfg(npz, network="bayesian", mode="none", weight_decay=1e-3)
    with pytest.raises(ConfigError, match="weight_decay.*>= 0"):
        _cfg(npz, weight_decay=-1.0)
    with pytest.raises(ConfigError, match="architecture.*cdep_cnn"):
        _cfg(npz, architecture="vgg")
    from pyro_ebnn.experiment.training import Trainer
    from pyro_ebnn.experiment.build import build_model
    norms = {}
    for wd in (0.0, 10.0):  # a huge decay: the weights must shrink faster than without it
        torch.manual_seed(0)
        cfg = _cfg(npz, mode="none", weight_decay=wd)
        model = build_model(cfg, (1, 28, 28), 10)
        trainer = Trainer(cfg, model, cfg.lr, torch.device("cpu"))
        x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        for _ in range(20):
            trainer.step(x, y, None, 8)
        assert trainer.optimizer.param_groups[0]["weight_decay"] == wd
        norms[wd] = sum(p.detach().square().sum() for p in model.net.parameters())
    assert norms[10.0] < 0.95 * norms[0.0]


def test_cdep_cnn_trains_end_to_end_on_real_decoy_mnist(tmp_path):
    cfg = load_config("configs/decoy_mnist_cdep_cnn.yaml", {"epochs": 1, "max_train_images": 600, "max_test_images": 100,
                                                            "eval_samples": 2, "threads": 1})
    assert cfg.architecture == "cdep_cnn" and cfg.network == "deterministic" and cfg.weight_decay == 1e-3
    m = train(cfg, tmp_path / "run", progress=False)
    assert m["mode"] == "cdep" and 0.0 <= m["balanced_accuracy"] <= 1.0 and m["n_test"] == 100
    model, saved, _ = load_model(tmp_path / "run")
    assert saved.architecture == "cdep_cnn" and model.net[1].out_channels == 50


def test_runs_saved_before_a_key_existed_hold_its_default(tmp_path, npz):
    """metrics.json / checkpoints written before ``weight_decay`` existed: the grid collects them
    for the default value, and neither collects nor resumes them for another value."""
    from pyro_ebnn.experiment.compare import is_finished
    from pyro_ebnn.experiment.rundir import METRICS
    out = tmp_path / "run"
    train(_cfg(npz, mode="none", epochs=1), out, progress=False)
    m = json.loads((out / METRICS).read_text())
    del m["config"]["weight_decay"]
    (out / METRICS).write_text(json.dumps(m))
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    del ckpt["config"]["weight_decay"]
    torch.save(ckpt, out / CHECKPOINT)
    assert is_finished(out, _cfg(npz, mode="none", epochs=1))
    assert not is_finished(out, _cfg(npz, mode="none", epochs=1, weight_decay=1e-3))
    with pytest.raises(ConfigError, match=r"different config \(weight_decay\)"):
        train(_cfg(npz, mode="none", epochs=2, weight_decay=1e-3), out, progress=False)
    assert train(_cfg(npz, mode="none", epochs=2), out, progress=False)["epochs_run"] == 2

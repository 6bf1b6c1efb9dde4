"""The scripts in experiments/ run end to end on tiny settings and write what their docstrings say.
They are what the cost and diagnostic tables of docs/results/ come from, so a broken script is a broken
table. Each runs as ``__main__`` with its own command line, as a user runs it, but in this process:
a fresh one would import torch, Pyro and the package again (7 s each on a 2-core CPU)."""
import contextlib
import io
import json
import os
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.runs import train

from test_inputs import _write_npz

ROOT = Path(__file__).resolve().parents[1]


def _run(name, *args):
    """``python experiments/NAME ARGS`` from the repository root: (exit status, stdout, stderr)."""
    path = ROOT / "experiments" / name
    out, err, status = io.StringIO(), io.StringIO(), 0
    argv, cwd, syspath = sys.argv, os.getcwd(), list(sys.path)
    sys.argv, sys.path[:0] = [str(path), *map(str, args)], [str(path.parent)]  # as ``python PATH`` sets them
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            err.write(f"{e.code}\n")
    finally:
        sys.argv, sys.path[:] = argv, syspath
        os.chdir(cwd)
    return status, out.getvalue(), err.getvalue()


def _script(name, *args):
    status, out, err = _run(name, *args)
    assert status == 0, err[-3000:]
    return out


def test_benchmark_modes_times_and_measures_every_requested_variant(tmp_path):
    out = tmp_path / "modes.json"
    _script("benchmark_modes.py", "--threads", 1, "--batch", 16, "--repeats", 1, "--rounds", 1, "--warmup", 0,
            "--variants", "bayes:feedback,det:none,det:rrr", "--json", out)
    r = json.loads(out.read_text())
    assert set(r["ms_per_step"]) == {"bayes:none", "bayes:feedback", "det:none", "det:rrr"}  # the reference is added
    assert r["time_over_reference"]["bayes:none"] == 1.0
    assert all(t > 0 for t in r["ms_per_step"].values()) and all(m > 0 for m in r["peak_mb"].values())
    # RRR's double backward holds more tensors than the plain step of the same network and batch
    assert r["peak_mb"]["det:rrr"] > 1.5 * r["peak_mb"]["det:none"]


def test_benchmark_modes_refuses_an_unknown_variant():
    status, _, err = _run("benchmark_modes.py", "--variants", "bayes:dropout")
    assert status == 2 and "unknown variants ['bayes:dropout']" in err


def test_benchmark_step_compares_pyro_with_plain_torch(tmp_path):
    out = tmp_path / "step.json"
    _script("benchmark_step.py", "--threads", 1, "--batch", 16, "--repeats", 2, "--rounds", 1, "--json", out)
    r = json.loads(out.read_text())
    assert set(r["ms_per_step"]) == {"torch", "pyro", "torch+feedback", "pyro+feedback", "pyro+feedback, weight sites",
                                     "deterministic", "network without Pyro"}
    # one round: the median of the per-round ratios is the ratio of the times
    assert r["pyro_over_torch"] == pytest.approx(r["ms_per_step"]["pyro"] / r["ms_per_step"]["torch"])
    ms = r["ms_per_step"]
    assert r["over_deterministic"]["torch"] == pytest.approx(ms["torch"] / ms["deterministic"])
    assert len(r["rounds_ms"]["pyro"]) == 1
    assert r["weight_sites_over_analytic_kl"] == pytest.approx(ms["pyro+feedback, weight sites"] / ms["pyro+feedback"])
    assert r["pyro_over_network_without_pyro"] == pytest.approx(ms["pyro"] / ms["network without Pyro"])
    cpu = r["setup"]["cpu"]  # which machine ran it: ratios differ by machine
    assert isinstance(cpu, str) and cpu.strip()


def test_benchmark_predictive_reports_images_per_second_for_every_way():
    text = _script("benchmark_predictive.py", "--images", 32, "--samples", 2, "--rounds", 1)
    rates = dict(re.findall(r"^  (\S.*?)\s+(\d+)$", text, flags=re.M))
    assert len(rates) == 9 and all(int(v) > 0 for v in rates.values())
    assert any(k.startswith("Predictive") for k in rates) and sum(k.startswith("mean_probs") for k in rates) == 3


def test_profile_step_splits_the_step_into_operator_groups():
    text = _script("profile_step.py", "--steps", 1, "--batch", 16, "--variants", "bayes:feedback")
    line = next(l for l in text.splitlines() if l.strip().startswith("bayes:feedback"))
    shares = [int(p) for p in re.findall(r"(\d+)%", line)]   # each rounded to a whole percent
    assert "convolution" in line and len(shares) >= 3 and abs(sum(shares) - 100) <= len(shares) / 2


@pytest.fixture
def runs(tmp_path):
    """Two folds of a tiny feedback run on the npz fixture (masks on every training image)."""
    rng = np.random.default_rng(1)
    _write_npz(tmp_path / "d.npz", test_masks=(rng.random((20, 1, 28, 28)) < 0.1).astype(np.uint8))
    dirs = []
    for fold in (0, 1):
        cfg = load_config("configs/custom_npz.yaml", {"npz_path": str(tmp_path / "d.npz"), "eval_samples": 2,
                                                      "batch_size": 8, "epochs": 1, "fold": fold, "lam": 1e-4})
        train(cfg, tmp_path / "fb" / f"fold{fold}", progress=False)
        dirs.append(tmp_path / "fb" / f"fold{fold}")
    return dirs


def test_evidence_scale_groups_folds_into_one_row(runs):
    text = _script("evidence_scale.py", *runs, "--images", 8)
    rows = [l for l in text.splitlines() if l.startswith("| ") and "fb" in l]
    assert len(rows) == 1, text                    # fold0 and fold1 form one row
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == "2"
    means = [float(c.split(" ± ")[0]) for c in cells[2:]]
    assert len(means) == 5 and all(m > 0 for m in means)
    assert _script("evidence_scale.py", *runs, "--images", 8) == text   # seeded: the same table again


def test_cdep_diagnostic_decomposes_a_trained_run(runs):
    text = _script("cdep_diagnostic.py", runs[0], "--images", 8)
    row = next(l for l in text.splitlines() if l.startswith(str(runs[0])))
    acc, acc_gamma, penalty = map(float, row.split()[1:4])
    assert 0 <= acc <= 1 and 0 <= acc_gamma <= 1 and 0 < penalty < 1


def test_evidence_scale_reports_the_posterior_scales_of_each_layer(runs):
    for run, sd in zip(runs, (0.05, 0.07)):     # set one layer's weight sd per fold: the row shows their mean
        payload = torch.load(run / "model.pt", weights_only=False)
        rho = payload["net"]["head.5.weight_rho"]
        payload["net"]["head.5.weight_rho"] = torch.full_like(rho, float(np.log(np.expm1(sd))))
        torch.save(payload, run / "model.pt")
    text = _script("evidence_scale.py", *runs, "--images", 8, "--posterior-scales")
    lines = text.splitlines()
    at = lines.index("median posterior sd softplus(rho) of the weights")
    header = [c.strip() for c in lines[at + 1].strip("|").split("|")]
    row = [c.strip() for c in lines[at + 3].strip("|").split("|")]
    assert header[:2] == ["runs", "folds"] and header[2:] == ["body.0", "evidence_layer", "head.3", "head.5", "head.7"]
    nets = [torch.load(r / "model.pt", weights_only=False)["net"] for r in runs]
    for layer, cell in zip(header[2:], row[2:]):
        direct = [torch.nn.functional.softplus(n[f"{layer}.weight_rho"]).median().item() for n in nets]
        assert float(cell.split(" ± ")[0]) == pytest.approx(sum(direct) / 2, abs=6e-4)
    assert row[header.index("head.5")] == "0.060 ± 0.014"


def _position_probe():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import position_probe
    finally:
        sys.path.pop(0)
    return position_probe


def test_position_probe_moves_only_the_square_and_puts_it_at_the_wrong_class():
    from pyro_ebnn.data.decoy import POSITIONS_2024, S
    rng = np.random.default_rng(0)
    digits, labels = rng.integers(0, 256, (50, 28, 28)).astype(np.uint8), rng.integers(0, 10, 50)
    k, shown = _position_probe().probe_images(digits, labels)
    shown = {name: x.numpy() for name, x in shown.items()}
    assert (k != labels).all() and set(k) <= set(range(10))
    plain = digits[:, None] / 255.0
    assert np.allclose(shown["no square"], plain)
    for i in range(50):
        r, c = POSITIONS_2024[k[i]]
        square = np.zeros((28, 28), bool)
        square[r % 28: r % 28 + S, c % 28: c % 28 + S] = True
        changed = ~np.isclose(shown["grey square at k"][i, 0], plain[i, 0])
        assert not changed[~square].any()                        # only the square at k's position
        assert np.unique(shown["grey square at k"][i, 0][square]).size == 1   # one grey
        differs = shown["noise square at k"][i, 0] != shown["grey square at k"][i, 0]
        assert not differs[~square].any() and differs[square].mean() > 0.9   # noise fills the square


@pytest.fixture
def position_runs(tmp_path):
    """Two folds of a tiny feedback run on Decoy MNIST's position rule, laid out as compare writes them."""
    for fold in (0, 1):
        cfg = load_config("configs/decoy_mnist_position.yaml", {
            "max_train_images": 300, "max_test_images": 50, "eval_samples": 2, "batch_size": 32, "epochs": 1,
            "fold": fold, "threads": 1})
        train(cfg, tmp_path / "decoy_mnist_position" / "feedback" / f"fold{fold}", progress=False)
    return tmp_path / "decoy_mnist_position"


def test_position_probe_scores_every_selected_model_it_finds(position_runs, tmp_path):
    from pyro_ebnn.bnn.predictive import mean_probs
    from pyro_ebnn.data.mnist import load_mnist
    from pyro_ebnn.experiment.rundir import load_model
    out = tmp_path / "probe.json"
    text = _script("position_probe.py", "--runs", position_runs, "--images", 40, "--json", out)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["digits"], r["folds"]) for r in rows] == [
        ("feedback", "grey square at k", 2), ("feedback", "noise square at k", 2), ("feedback", "no square", 2)]
    assert text.count("| feedback |") == 3
    _, _, digits, labels = load_mnist()                        # the digits alone, scored here directly
    x = torch.from_numpy(digits[:40, None] / 255.0).float()
    direct = [(mean_probs(load_model(position_runs / "feedback" / f"fold{f}")[0], x).argmax(-1).numpy()
               == labels[:40]).mean() for f in (0, 1)]
    assert rows[2]["accuracy_mean"] == pytest.approx(np.mean(direct))
    assert rows[2]["accuracy_std"] == pytest.approx(np.std(direct, ddof=1))


def test_position_probe_refuses_runs_of_another_rule_or_none(runs, tmp_path):
    (tmp_path / "rule").mkdir()
    status, _, err = _run("position_probe.py", "--runs", tmp_path / "rule")
    assert status != 0 and "no runs under" in err and "Traceback" not in err
    (tmp_path / "rule" / "feedback").symlink_to(runs[0].parent)   # runs of the npz fixture
    status, _, err = _run("position_probe.py", "--runs", tmp_path / "rule")
    assert status != 0 and "the probe needs Decoy MNIST's position rule" in err
    assert len(err.strip().splitlines()) == 1


def test_evidence_balance_weighs_the_three_terms_of_the_loss(tmp_path):
    _write_npz(tmp_path / "d.npz")
    out = tmp_path / "balance.json"
    _script("evidence_balance.py", "--config", "configs/custom_npz.yaml", "--set", f"npz_path={tmp_path / 'd.npz'}",
            "--set", "lam=1e-3", "--set", "batch_size=8", "--epochs", 1, "--images", 16, "--json", out)
    rows = json.loads(out.read_text())["rows"]
    assert [r["epoch"] for r in rows] == [0, 1] and rows[0]["val"] is None and rows[1]["val"] is not None
    for r in rows:
        assert r["kl"] > 0 and r["data"] > 0 and r["cells"] > 0
        assert r["evidence/data"] == pytest.approx(r["evidence"] / r["data"])
    # lambda scales the evidence term alone: ten times lambda, ten times the term (same draw)
    again = tmp_path / "ten.json"
    _script("evidence_balance.py", "--config", "configs/custom_npz.yaml", "--set", f"npz_path={tmp_path / 'd.npz'}",
            "--set", "lam=1e-2", "--set", "batch_size=8", "--epochs", 0, "--images", 16, "--json", again)
    ten = json.loads(again.read_text())["rows"][0]
    assert ten["evidence"] == pytest.approx(10 * rows[0]["evidence"], rel=1e-5) and ten["data"] == pytest.approx(rows[0]["data"])


def test_own_images_table_pairs_the_ceiling_with_none_and_feedback_by_fold(tmp_path):
    def write(root, mode, fold, acc):
        d = root / "corner" / "image_folder_small" / mode / f"fold{fold}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"mode": mode, "fold": fold, "balanced_accuracy": acc,
                                                    "worst_group_accuracy": acc - 0.1, "train_seconds": 10.0}))
    for fold, (none, fb, clean) in enumerate(((0.70, 0.74, 0.75), (0.60, 0.66, 0.65))):
        write(tmp_path / "runs", "none", fold, none)
        write(tmp_path / "runs", "feedback", fold, fb)
        write(tmp_path / "clean", "none", fold, clean)
    write(tmp_path / "clean", "none", 2, 0.99)          # a fold with no partner: left out of the pairs
    out = _script("own_images_table.py", "--root", tmp_path / "runs", "--out", tmp_path / "t",
                  "--ceiling", tmp_path / "clean")
    row = out.split("The ceiling")[1].strip().splitlines()[-1]
    # ceiling 0.700 ± 0.071; its paired gain over none 0.050 ± 0.000; feedback leaves 0.000 ± 0.014
    assert row.startswith("| corner | 2 | 0.650 ± 0.071 | 0.700 ± 0.057 |") and "| 0.700 ± 0.071 | 0.050 ± 0.000 |" in row and row.endswith("| 0.000 ± 0.014 |")
    status, _, err = _run("own_images_table.py", "--root", tmp_path / "runs", "--out", tmp_path / "t",
                          "--ceiling", tmp_path / "nothing")
    assert status == 2 and "no runs under" in err


def test_hole_information_tells_own_holes_that_mark_one_class_from_shared_ones(tmp_path):
    """Class 1's images carry a mark, class 0's none: own holes tell the class, shared ones do not."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    masks = np.zeros((60, 1, 28, 28), np.uint8)
    masks[labels == 1, :, :8, :8] = 1
    _write_npz(tmp_path / "d.npz", train_images=rng.random((60, 1, 28, 28), dtype=np.float32), train_labels=labels,
               train_masks=masks)
    out = _script("hole_information.py", "--config", "configs/custom_npz.yaml", "--set", f"npz_path={tmp_path / 'd.npz'}",
                  "--set", "batch_size=8", "--holes", "own,shared,none")
    seen = dict(re.findall(r"evidence_holes=(\w+): hole information (\S+)", out))
    assert float(seen["own"]) > 0.9 and float(seen["shared"]) < 0.1 and seen["none"] == "n/a"
    assert "(auto: shared)" in out

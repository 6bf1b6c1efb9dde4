"""The shortcut report (accuracy per class x marked group, the marked regions replaced) and the
warnings of a run that did not learn what it should."""
import json

import numpy as np
import pytest
from scipy.stats import fisher_exact
from click.testing import CliRunner

from pyro_ebnn.cli import cli
from pyro_ebnn.experiment.report import marked_gap, run_warnings, shortcut_report
from pyro_ebnn.metrics import group_accuracies

from image_fixtures import write_folder


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_EBNN_CACHE", str(tmp_path / "cache"))


def test_group_accuracies_against_counts_by_hand():
    rng = np.random.default_rng(0)
    y, p, marked = rng.integers(0, 3, 200), rng.integers(0, 3, 200), rng.random(200) < 0.3
    g = group_accuracies(y, p, marked, ["a", "b", "c"])
    for k, name in enumerate("abc"):
        for state, where in (("marked", marked), ("unmarked", ~marked)):
            sel = (y == k) & where
            assert g[f"images_{name}_{state}"] == sel.sum()
            assert g[f"accuracy_{name}_{state}"] == pytest.approx((p[sel] == k).mean())
    accuracies = {k: v for k, v in g.items() if k.startswith("accuracy_")}
    assert g["worst_group_accuracy"] == min(accuracies.values())
    assert g["worst_group"].replace(", ", "_") == min(accuracies, key=accuracies.get)[len("accuracy_"):]
    # a group without images is left out, not counted as 0
    assert "accuracy_a_marked" not in group_accuracies([0, 1], [0, 1], [False, True], ["a", "b"])


def test_the_warnings_name_each_failure_with_the_selected_and_last_numbers():
    history = [{"epoch": e, "val_balanced_accuracy": v} for e, v in enumerate([0.82, 0.7, 0.6], start=1)]
    one_class = {"best_epoch": 1, "epochs_run": 3, "plugin_confusion_matrix": [[50, 0], [45, 5]],
                 "plugin_balanced_accuracy": 0.55, "last_balanced_accuracy": 0.52,
                 "last_confusion_matrix": [[50, 0], [49, 1]]}
    lines = run_warnings(one_class, history, "feedback")
    assert len(lines) == 4 and all("posterior-mean networks: selected, epoch 1: balanced accuracy 0.550; last, epoch 3: "
                                   "balanced accuracy 0.520" in line for line in lines)
    assert lines[0].startswith("the model was selected at epoch 1 and validation then fell from 0.820 to 0.600")
    assert "the selected network gives one class to 95%" in lines[1] and "the last network" in lines[2]
    assert "below its first epoch's 0.820" in lines[3] and "try lam: auto or a smaller lam" in lines[3]
    chosen = run_warnings({**one_class, "lam": 1e-3, "lam_search": {"per_image": 3.0}}, history, "feedback")[3]
    assert "try a smaller lam than the one chosen" in chosen and "lam: auto" not in chosen   # it was auto already
    healthy = [{"val_balanced_accuracy": v} for v in (0.6, 0.8, 0.9)]
    assert run_warnings({"best_epoch": 3, "plugin_confusion_matrix": [[40, 10], [10, 40]]}, healthy, "feedback") == []
    # a data set whose test images are mostly one class is not a network that predicts one class
    assert run_warnings({"best_epoch": 3, "plugin_confusion_matrix": [[95, 0], [3, 2]]}, healthy, "none") == []
    # at chance on 533 exchanged validation images (0.529; the band is 0.5 +- 0.043): said, with the
    # reason on counterfactual images; 0.60 is not chance, and neither is far below it (a reversed shortcut)
    reads = {"best_epoch": 3, "val_balanced_accuracy": 0.529, "n_val": 533, "confusion_matrix": [[40, 10], [10, 40]],
             "config": {"validation_decoys": "exchange"}}
    line, = run_warnings(reads, healthy, "none")
    assert line.startswith("the selected network is at chance on the validation images (balanced_accuracy 0.529, "
                           "chance 0.500)") and line.endswith("so it reads the marked regions: train with mode feedback")
    assert "train with mode feedback" not in run_warnings(reads, healthy, "feedback")[0]
    assert run_warnings({**reads, "val_balanced_accuracy": 0.60}, healthy, "none") == []
    # far below chance on counterfactual images is no "nothing learned": it reads the marked regions
    # (a square on one class, exchanged to the other: validation 0.457 and worst group 0.000 on the test images)
    line, = run_warnings({**reads, "val_balanced_accuracy": 0.05}, healthy, "none")
    assert line.startswith("the selected network is below chance on the validation images (balanced_accuracy 0.050, "
                           "chance 0.500), whose marked regions are replaced (exchange): it reads the marked regions; "
                           "train with mode feedback")
    assert "feedback did not stop it" in run_warnings({**reads, "val_balanced_accuracy": 0.05}, healthy, "feedback")[0]
    # on ordinary validation images below chance says nothing (a reversed shortcut of the test rule)
    assert run_warnings({**reads, "val_balanced_accuracy": 0.05, "config": {"validation_decoys": "test"}},
                        healthy, "none") == []


def test_train_writes_and_prints_the_shortcut_report(tmp_path):
    root = write_folder(tmp_path / "data", per_class=(12, 6), masked=range(3))
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--config", "configs/image_folder_small.yaml", "--out", str(out),
                                   "--set", f"data_dir={root}", "--set", "epochs=2", "--set", "lam=1e-5",
                                   "--set", "image_size=16", "--set", "batch_size=4", "--set", "eval_samples=2",
                                   "--set", "workers=0"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    for name in ("cat", "dog"):
        assert m[f"images_{name}_marked"] == 3 and m[f"images_{name}_unmarked"] == 3
    assert m["worst_group_accuracy"] == min(m[f"accuracy_{c}_{s}"] for c in ("cat", "dog") for s in ("marked", "unmarked"))
    assert {"marked_noise_balanced_accuracy", "marked_swap_balanced_accuracy", "plugin_balanced_accuracy"} <= set(m)
    assert isinstance(m["warnings"], list)
    assert set(k for k in m if k.startswith("train_marked_share_")) == {"train_marked_share_cat", "train_marked_share_dog"}
    assert all(0 < m[f"train_marked_share_{c}"] < 1 for c in ("cat", "dog"))
    assert shortcut_report(m) in res.output and "worst group: " in res.output


def test_a_class_right_on_its_marked_images_and_wrong_on_its_unmarked_ones_is_named():
    healthy = [{"val_balanced_accuracy": v} for v in (0.6, 0.8, 0.9)]
    base = {"best_epoch": 3, "plugin_confusion_matrix": [[40, 10], [10, 40]]}
    reads = {**base, "accuracy_tex_marked": 0.752, "images_tex_marked": 250, "accuracy_tex_unmarked": 0.084,
             "images_tex_unmarked": 250, "accuracy_scene_marked": 0.1, "images_scene_marked": 250,
             "accuracy_scene_unmarked": 0.98, "images_scene_unmarked": 250}
    line, = run_warnings(reads, healthy, "none")
    # the largest gap is named (scene, 0.88), with its counts; p is Fisher's exact test times the 2 classes
    _, p = fisher_exact([[25, 225], [245, 5]])
    assert line.startswith("class scene is right on 0.100 of its test images with a marked region and on 0.980 of "
                           f"those without (250 and 250 images, Fisher's exact test p = {2 * p:.1g})")
    assert line.endswith("train with mode feedback")
    assert "feedback did not keep it off them; compare --modes none,feedback" in run_warnings(reads, healthy, "feedback")[0]
    # a control task's gap (marks on every class alike: up to 0.20 measured) is not a shortcut ...
    control = {**base, "accuracy_a_marked": 0.764, "images_a_marked": 250, "accuracy_a_unmarked": 0.564,
               "images_a_unmarked": 250}
    assert run_warnings(control, healthy, "none") == []
    # ... and neither is a large gap on a handful of images (p of 5 against 0 right of 6: 0.015)
    few = {**base, "accuracy_a_marked": 5 / 6, "images_a_marked": 6, "accuracy_a_unmarked": 0.0, "images_a_unmarked": 6}
    assert marked_gap(few)["gap"] > 0.8 and run_warnings(few, healthy, "none") == []
    # ... but it does not hide a smaller gap on many images of another class
    both = {**few, "accuracy_b_marked": 0.3, "images_b_marked": 200, "accuracy_b_unmarked": 0.9, "images_b_unmarked": 200}
    assert marked_gap(both)["class"] == "b" and run_warnings(both, healthy, "none")[0].startswith("class b is right on 0.300")
    # training marks on every class alike (a control: shares within 0.1) tell no class, so the gap is what
    # the marks hide, not a shortcut; marks on one class, or no word on the training marks, still warn
    alike = {**reads, "train_marked_share_tex": 0.50, "train_marked_share_scene": 0.46}
    assert marked_gap(alike)["marks_alike"] is True and run_warnings(alike, healthy, "none") == []
    one_class = {**alike, "train_marked_share_scene": 0.0}
    assert marked_gap(one_class)["marks_alike"] is False and len(run_warnings(one_class, healthy, "none")) == 1
    assert marked_gap(reads)["marks_alike"] is None
    unmarked = {**alike, "train_marked_share_tex": 0.0, "train_marked_share_scene": 0.0}   # no mark in training
    assert marked_gap(unmarked)["marks_alike"] is None and len(run_warnings(unmarked, healthy, "none")) == 1
    # a test set marked on every image has nothing to compare
    assert marked_gap({"accuracy_a_marked": 0.9, "images_a_marked": 10}) is None


def test_the_marked_gaps_table_reads_compare_runs_and_counts_the_warned_ones(tmp_path):
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("marked_gaps", Path(__file__).parents[1] / "experiments" / "marked_gaps.py")
    marked_gaps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(marked_gaps)
    for mode, marked in (("none", 0.1), ("feedback", 0.8)):
        run = tmp_path / "runs" / "corner" / "image_folder_small" / mode / "fold0"
        run.mkdir(parents=True)
        run.joinpath("metrics.json").write_text(json.dumps({
            "mode": mode, "fold": 0, "accuracy_a_marked": marked, "images_a_marked": 100,
            "accuracy_a_unmarked": 0.9, "images_a_unmarked": 100}))
    out = tmp_path / "gaps.md"
    marked_gaps.main(["--root", str(tmp_path / "runs"), "--out", str(out)])
    text = out.read_text()
    assert "| corner | none | 1 | 0.800 – 0.800 | 1 |" in text and "| corner | feedback | 1 | 0.100 – 0.100 | 0 |" in text

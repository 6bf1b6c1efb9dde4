"""lam: auto: successive halving over the grid and no feedback, run as a user runs it (the train command on an image
folder), resumed from its record, and refused where it cannot work."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pyro_ebnn.cli import cli
from pyro_ebnn.errors import ConfigError
from pyro_ebnn.experiment.build import build_evidence
from pyro_ebnn.experiment.config import Config, load_config
from pyro_ebnn.experiment.report import run_warnings
from pyro_ebnn.experiment.runs import _validation_record, train
from pyro_ebnn.experiment.rundir import CHECKPOINT, MODEL
from pyro_ebnn.experiment.search import (GRID, _close, _search, NO_FEEDBACK, RECORD, RULE, SEARCH_DIR, evidence_entries,
                                        indistinguishable, rungs, successive_halving)

from image_fixtures import write_folder

TINY = ["--set", "image_size=16", "--set", "batch_size=4", "--set", "eval_samples=2", "--set", "workers=0"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_EBNN_CACHE", str(tmp_path / "cache"))


def test_successive_halving_keeps_the_better_half_at_every_budget_and_fits_each_survivor_further():
    fitted = []

    def fit(c, epochs):
        fitted.append((c, epochs))
        return {"a": 0.5, "b": 0.7, "c": 0.6, "d": 0.7}[c] + 0.01 * epochs * (c == "c")

    best, seen = successive_halving(["a", "b", "c", "d"], fit, [1, 5, 9])
    # epoch 1: b and d tie at 0.7 ahead of c (0.61) and a; at epoch 5 they tie again and b, listed first, wins
    assert fitted == [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("b", 5), ("d", 5), ("b", 9)]
    assert best == "b" and seen["a"] == {1: 0.5} and seen["b"] == {1: 0.7, 5: 0.7, 9: 0.7}
    # a tie at a later budget also goes to the candidate listed first (the smaller lambda), not to
    # the one that led at the budget before
    later = {"a": [0.5, 0.8, 0.9], "b": [0.6, 0.8, 0.8], "c": [0.1, 0.1, 0.1], "d": [0.1, 0.1, 0.1]}
    assert successive_halving(["a", "b", "c", "d"], lambda c, e: later[c][[1, 5, 9].index(e)], [1, 5, 9])[0] == "a"


def test_the_last_budget_takes_both_finalists_when_validation_cannot_tell_them_apart():
    fitted = []

    def fit(c, epochs):
        fitted.append((c, epochs))
        return {"a": [0.5, 0.6, 0.7], "b": [0.7, 0.90, 0.90], "c": [0.6, 0.89, 0.95], "d": [0.6, 0.7, 0.8]}[c][
            [1, 5, 9].index(epochs)]

    best, seen = successive_halving(["a", "b", "c", "d"], fit, [1, 5, 9], close=lambda x, y: abs(x - y) <= 0.02)
    assert fitted[-2:] == [("b", 9), ("c", 9)] and best == "c"        # c, 0.01 behind at 5, wins at 9
    assert successive_halving(["a", "b", "c", "d"], fit, [1, 5, 9])[0] == "b"   # without: b alone goes on
    # one budget (epochs: 1): every candidate is fitted and the best kept, not the first one
    assert successive_halving(["a", "b", "c", "d"], lambda c, e: {"a": 0.1, "b": 0.2, "c": 0.9, "d": 0.3}[c], [1])[0] == "c"


def test_no_feedback_goes_on_to_the_end_and_is_left_only_for_a_lambda_that_beats_it_by_more_than_the_error():
    """The reference (no feedback) trails at the early budgets and still reaches the last one, where
    it is kept unless the best candidate is above it by more than ``close`` allows."""
    curves = {"none": [0.50, 0.60, 0.90], "a": [0.70, 0.85, 0.92], "b": [0.65, 0.80, 0.80], "c": [0.60, 0.70, 0.70]}
    fitted = []

    def fit(c, epochs):
        fitted.append((c, epochs))
        return curves[c][[1, 5, 9].index(epochs)]

    close = lambda x, y: abs(x - y) <= 0.03  # noqa: E731
    best, seen = successive_halving(["none", "a", "b", "c"], fit, [1, 5, 9], close=close, reference="none")
    assert ("none", 5) in fitted and ("none", 9) in fitted and best == "none"   # 0.92 against 0.90: too close
    assert seen["none"] == {1: 0.50, 5: 0.60, 9: 0.90} and seen["c"] == {1: 0.60}
    curves["a"][2] = 0.95                                                          # 0.05 above: a is chosen
    assert successive_halving(["none", "a", "b", "c"], fit, [1, 5, 9], close=close, reference="none")[0] == "a"
    curves["a"][2] = 0.85                                                          # below it: none
    assert successive_halving(["none", "a", "b", "c"], fit, [1, 5, 9], reference="none")[0] == "none"
    with pytest.raises(ValueError, match="must be one of the candidates"):
        successive_halving(["a", "b"], fit, [1, 5, 9], reference="none")
    # without a reference, the candidate last at epoch 1 stops there
    assert successive_halving(["none", "a", "b", "c"], lambda c, e: curves[c][[1, 5, 9].index(e)], [1, 5, 9])[1][
        "none"] == {1: 0.50}


def test_two_equally_good_classifiers_are_indistinguishable_about_as_often_as_a_normal_lies_within_one_sd():
    # the rule is one standard error of the difference: for two independent classifiers of the
    # same accuracy, P(|difference| <= SE) = P(|Z| <= 1) = 0.6827
    rng = np.random.default_rng(0)
    n, p, draws = 2000, 0.93, 20000
    a, b = rng.binomial(n, p, draws) / n, rng.binomial(n, p, draws) / n
    share = np.mean([indistinguishable(x, y, n) for x, y in zip(a, b)])
    assert abs(share - 0.6827) < 0.02
    assert not indistinguishable(0.95, 0.92, n) and indistinguishable(0.95, 0.92, 100)
    # the configs' selection scores use it (Decoy MNIST corners selects on macro F1); AUC, another scale, does not
    assert _close(Config(select_metric="f1_macro"), n)(0.931, 0.927) and _close(Config(), n)(0.931, 0.927)
    assert _close(Config(select_metric="roc_auc"), n) is None and _close(Config(), 0) is None


def test_rungs_and_the_evidence_layer_size():
    assert rungs(20) == [3, 7, 20] and rungs(60) == [10, 20, 60] and rungs(2) == [1, 2]
    assert evidence_entries(Config(), (3, 64, 64), 2) == 16 * 29 * 29


def test_lam_auto_chooses_on_validation_and_trains_the_choice_on(tmp_path):
    root = write_folder(tmp_path / "data", per_class=(12, 4), masked=range(8))
    out = tmp_path / "run"
    args = ["train", "--config", "configs/image_folder_small.yaml", "--out", str(out), "--set", f"data_dir={root}",
            "--set", "epochs=3", *TINY]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    search = m["lam_search"]
    entries = evidence_entries(load_config("configs/image_folder_small.yaml", {"image_size": 16}), (3, 16, 16), 2)
    assert search["entries"] == entries and search["epochs"] == [1, 2, 3]
    assert set(search["scores"]) == {f"{g:g}" for g in (NO_FEEDBACK,) + GRID}     # no feedback is a candidate
    reached = {e: {g for g, s in search["scores"].items() if str(e) in s} for e in (1, 2, 3)}
    at1 = search["scores"]
    better = sorted(at1, key=lambda g: (-at1[g]["1"], float(g)))[:3]               # 5 at epoch 1, the better 3 at 2
    assert len(reached[1]) == 5 and reached[2] == set(better) | {"0"}            # and no feedback, whatever its rank
    # at 3: the best at 2, every candidate that validation could not tell from it, and no feedback
    at2 = {g: search["scores"][g]["2"] for g in reached[2]}
    lead = max(at2.values())
    assert reached[3] == {g for g, v in at2.items() if indistinguishable(lead, v, m["n_val"])} | {"0"}
    assert {f"{g:g}" for g in search["finalists"]} == reached[3]
    # kept: no feedback, unless a lambda beats it at 3 by more than validation's standard error
    at3 = {g: search["scores"][g]["3"] for g in reached[3]}
    top = max(sorted((g for g in at3 if g != "0"), key=float), key=at3.get, default="0")   # ties: the smaller
    beaten = at3[top] > at3["0"] and not indistinguishable(at3[top], at3["0"], m["n_val"])
    assert f"{search['per_image']:g}" == (top if beaten else "0")
    if len(at3) > 1:                                                          # the log gives both scores
        assert f"validation at epoch 3: no feedback {at3['0']:.4f}, the best lambda, per image {top}" in res.output
    assert m["lam"] == pytest.approx(search["per_image"] / entries) and search["per_image"] in (NO_FEEDBACK,) + GRID
    assert m["config"]["lam"] == "auto" and m["epochs_run"] == 3                 # the choice trained to the end
    assert torch.load(out / "model.pt", weights_only=False)["lam"] == pytest.approx(m["lam"])
    assert not (out / SEARCH_DIR).exists() and json.loads((out / RECORD).read_text())["lam"] == m["lam"]
    # the same command again: the record is reused, nothing is searched again
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "lam search" not in again.output
    assert json.loads((out / "metrics.json").read_text())["lam"] == m["lam"]
    # another config into the same --out: refused before anything is trained, the run left as it was
    before = {name: (out / name).read_bytes() for name in ("metrics.json", "checkpoint.pt", RECORD)}
    other = CliRunner().invoke(cli, args + ["--set", "lr=0.01"])
    assert other.exit_code != 0 and "holds a run with a different config (lr)" in other.output
    assert "lam search" not in other.output and before == {name: (out / name).read_bytes() for name in before}


def test_a_record_is_reused_only_when_made_by_this_rule_for_this_config(tmp_path, capsys):
    cfg, fitted = Config(lam="auto", mode="feedback", epochs=6), []

    def fit(lam, epochs, where):                       # the larger lambda, the better; files as a run leaves them
        fitted.append((lam, epochs))
        where.mkdir(parents=True, exist_ok=True)
        torch.save({"optimizer": {}, "config": cfg.to_dict(), "lam": lam, "epoch": epochs}, where / CHECKPOINT)
        (where / MODEL).write_text(f"{lam} {epochs}")
        return 0.5 + lam

    def search(config=cfg):
        fitted.clear()
        return _search(config, tmp_path, 100.0, config.epochs, fit, resume=True, progress=True,
                       grid=(NO_FEEDBACK,) + GRID)
    lam, record = search()
    assert lam == GRID[-1] / 100 and record["rule"] == RULE and fitted
    assert (tmp_path / MODEL).read_text() == f"{lam} 6"
    assert search() == (lam, json.loads((tmp_path / RECORD).read_text())) and not fitted   # reused
    stale = json.loads((tmp_path / RECORD).read_text())
    stale["rule"], stale["lam"] = "an older rule", 0.0
    (tmp_path / RECORD).write_text(json.dumps(stale))
    capsys.readouterr()
    assert search()[0] == lam and fitted                                      # searched again
    assert "made by an earlier rule of the search (an older rule); searching again" in capsys.readouterr().err
    assert json.loads((tmp_path / RECORD).read_text())["rule"] == RULE
    search(Config(lam="auto", mode="feedback", epochs=6, lr=0.01))             # another config: searched again
    assert fitted and "was made for another config (lr); searching again" in capsys.readouterr().err
    fitted.clear()                                                            # another grid: searched again
    _search(cfg, tmp_path, 100.0, cfg.epochs, fit, resume=True, progress=True, grid=(NO_FEEDBACK,) + GRID[:-1])
    assert fitted and "was made for another config (lr, the grid of lambda); searching again" in capsys.readouterr().err


def test_lam_auto_is_refused_where_a_number_is_needed(tmp_path):
    cfg = load_config(None, {"max_train_images": 60, "max_test_images": 20, "epochs": 1, "lam": "auto"})
    with pytest.raises(ConfigError, match="lam: auto is chosen on validation by the train and finetune commands"):
        train(cfg, tmp_path / "run")
    for bad in ("often", "-1"):
        with pytest.raises(ConfigError, match="lam"):
            load_config(None, {"lam": bad})
    assert load_config(None, {"lam": "AUTO"}).lam == "auto" and load_config(None, {"lam": "3e-4"}).lam == 3e-4


def test_no_feedback_as_the_choice_builds_no_evidence_and_says_so():
    cfg = load_config(None, {"mode": "feedback", "lam": "auto"})
    assert build_evidence(cfg, NO_FEEDBACK) is None and build_evidence(cfg, 1e-4).lam == 1e-4
    lines = run_warnings({"lam": 0.0}, [{"val_balanced_accuracy": 0.8}, {"val_balanced_accuracy": 0.7}], "feedback")
    assert len(lines) == 1 and lines[0].startswith("lam: auto found no lambda") and "without it" in lines[0]
    assert run_warnings({"lam": 1e-4}, [{"val_balanced_accuracy": 0.8}], "feedback") == []


def test_the_no_feedback_candidate_is_the_run_without_feedback(tmp_path):
    """The search trains its candidates on a split prepared once; the run without feedback prepares its own
    (reading the images draws from torch's generator). Both must start from the same network."""
    from pyro_ebnn.experiment.protocol import prepare_split
    root = write_folder(tmp_path / "data", per_class=(12, 4), masked=range(8))
    cfg = load_config("configs/image_folder_small.yaml", {"data_dir": str(root), "epochs": 1, "image_size": 16,
                                                          "batch_size": 4, "workers": 0})
    train(cfg, tmp_path / "candidate", progress=False, split=prepare_split(cfg, progress=False), lam=NO_FEEDBACK,
          evaluate=False)
    train(Config(**{**cfg.to_dict(), "mode": "none"}), tmp_path / "none", progress=False, evaluate=False)
    nets = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=False)["net"] for run in ("candidate", "none")]
    assert nets[0].keys() == nets[1].keys()
    assert all(torch.equal(nets[0][k], nets[1][k]) for k in nets[0])


def test_finetune_lam_auto_searches_its_own_grid_without_a_no_feedback_candidate(tmp_path):
    """finetune --set finetune_lam=auto: the fine-tuning grid (the training grid and one decade up), no
    lambda = 0 (a person's answers are meant to be used), the choice fine-tuned on to the end."""
    from pyro_ebnn.experiment.search import FINETUNE_GRID
    root = write_folder(tmp_path / "data", per_class=(12, 4), masked=range(8))
    base = tmp_path / "base"
    res = CliRunner().invoke(cli, ["train", "--config", "configs/image_folder_small.yaml", "--out", str(base),
                                   "--set", f"data_dir={root}", "--set", "epochs=1", "--set", "lam=1e-3", *TINY])
    assert res.exit_code == 0, res.output
    out = tmp_path / "tuned"
    res = CliRunner().invoke(cli, ["finetune", "--run", str(base), "--out", str(out), "--set", "finetune_lam=auto",
                                   "--set", "finetune_budget=4", "--set", "finetune_epochs=2", *TINY])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    search = m["lam_search"]
    assert FINETUNE_GRID[-1] > max(GRID) and NO_FEEDBACK not in FINETUNE_GRID
    assert set(search["scores"]) == {f"{g:g}" for g in FINETUNE_GRID} and search["epochs"] == [1, 2]
    assert m["finetune_lam"] == pytest.approx(search["per_image"] / search["entries"])
    full = evidence_entries(load_config(str(base / "config.yaml")), (3, 16, 16), 2)
    assert 0 < search["entries"] < full   # relative to the share of training images with a mask too
    # a record of another grid (an older search) is not reused: the search runs again
    record = json.loads((out / RECORD).read_text())
    (out / RECORD).write_text(json.dumps({**record, "grid": list(GRID)}))
    again = CliRunner().invoke(cli, ["finetune", "--run", str(base), "--out", str(out), "--set", "finetune_lam=auto",
                                     "--set", "finetune_budget=4", "--set", "finetune_epochs=2", *TINY])
    assert again.exit_code == 0 and "lam search" in again.output


def test_finetune_lam_auto_of_a_run_without_feedback_resumes_and_refuses_another_config(tmp_path):
    """Fine-tuning trains with feedback whatever the run's mode: running it again reuses the search and
    the run; another config into the same --out is refused before anything is trained."""
    root = write_folder(tmp_path / "data", per_class=(12, 4), masked=range(8))
    base, out = tmp_path / "base", tmp_path / "tuned"
    res = CliRunner().invoke(cli, ["train", "--config", "configs/image_folder_small.yaml", "--out", str(base),
                                   "--set", f"data_dir={root}", "--set", "epochs=1", "--set", "mode=none", *TINY])
    assert res.exit_code == 0, res.output
    args = ["finetune", "--run", str(base), "--out", str(out), "--set", "finetune_lam=auto",
            "--set", "finetune_budget=4", "--set", "finetune_epochs=2", *TINY]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0 and "lam search" in first.output, first.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "lam search" not in again.output, again.output
    before = (out / "checkpoint.pt").read_bytes()
    other = CliRunner().invoke(cli, args + ["--set", "finetune_lr=0.01"])
    assert other.exit_code != 0 and "holds a run with a different config (finetune_lr)" in other.output
    assert "lam search" not in other.output and (out / "checkpoint.pt").read_bytes() == before


def test_finetune_lam_auto_with_no_mask_among_the_annotated_images_runs(tmp_path):
    """No annotated image carries a mask: the share-relative grid does not divide by zero."""
    root = write_folder(tmp_path / "data", per_class=(12, 4), masked=())
    base = tmp_path / "base"
    res = CliRunner().invoke(cli, ["train", "--config", "configs/image_folder_small.yaml", "--out", str(base),
                                   "--set", f"data_dir={root}", "--set", "epochs=1", "--mode", "none", *TINY])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["finetune", "--run", str(base), "--out", str(tmp_path / "tuned"), "--set",
                                   "finetune_lam=auto", "--set", "finetune_budget=4", "--set", "finetune_epochs=1", *TINY])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "tuned" / "metrics.json").exists()



def test_a_run_resumed_beyond_the_budget_asked_for_reports_its_best_validation_up_to_that_budget():
    """A search restarted after a kill asks each candidate again for its score at the earlier budgets;
    one whose checkpoint is further on must answer with its best score up to that budget, not later."""
    cfg = Config(select_metric="accuracy")
    one = SimpleNamespace(is_main=True, broadcast=lambda record: record)
    history = [{"epoch": 1, "val_accuracy": 0.60}, {"epoch": 2, "val_accuracy": 0.70},
               {"epoch": 3, "val_accuracy": 0.65, "validations_within_epoch": [{"epoch": 2.5, "val_accuracy": 0.72}]},
               {"epoch": 4, "loss": 1.0}, {"epoch": 5, "val_accuracy": 0.90}]
    trainer = SimpleNamespace(history=history, best_score=0.90, best_epoch=5, epoch=5, group=one)
    assert _validation_record(cfg, trainer, 5) == {"val_accuracy": 0.90, "best_epoch": 5, "epochs_run": 5}
    assert _validation_record(cfg, trainer, 1) == {"val_accuracy": 0.60, "best_epoch": 1, "epochs_run": 1}
    assert _validation_record(cfg, trainer, 2) == {"val_accuracy": 0.70, "best_epoch": 2, "epochs_run": 2}
    assert _validation_record(cfg, trainer, 4) == {"val_accuracy": 0.72, "best_epoch": 2.5, "epochs_run": 4}
    tie = SimpleNamespace(history=history[:2] + [{"epoch": 3, "val_accuracy": 0.70}], best_score=0.95, best_epoch=9,
                          epoch=9, group=one)
    assert _validation_record(cfg, tie, 3)["best_epoch"] == 2           # a tie goes to the earlier epoch, as in training
    # fine-tuning: the score before its first epoch is epoch 0's
    assert _validation_record(cfg, trainer, 2, start=0.8) == {"val_accuracy": 0.8, "best_epoch": 0, "epochs_run": 2}

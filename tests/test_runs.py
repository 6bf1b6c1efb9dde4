"""Checkpoints reload in a fresh process, interrupted runs resume exactly, fine-tuning and
aggregation work from the CLI, and MNIST loads through torchvision's on-disk layout."""
import contextlib
from csv import DictReader
import json
import struct
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.cli import cli
from pyro_ebnn.experiment.rundir import CHECKPOINT, MODEL
from pyro_ebnn.errors import RunBusyError
from pyro_ebnn.experiment.evaluation import add_overlap
from pyro_ebnn.experiment.runs import train

from test_inputs import _write_npz


@pytest.fixture
def npz(tmp_path):
    _write_npz(tmp_path / "d.npz")
    return str(tmp_path / "d.npz")


def _cfg(npz, **kw):
    # the shipped config's mechanics with a fixed lambda and the validation images as they are
    return load_config("configs/custom_npz.yaml", {"npz_path": npz, "eval_samples": 2, "batch_size": 8, "lam": 1e-4,
                                                   "validation_decoys": "train", **kw})


def test_interrupted_run_resumes_exactly(tmp_path, npz):
    straight = train(_cfg(npz, epochs=3), tmp_path / "a", progress=False)
    train(_cfg(npz, epochs=1), tmp_path / "b", progress=False)          # "interrupted" after epoch 1
    resumed = train(_cfg(npz, epochs=3), tmp_path / "b", progress=False)  # same out dir: resume
    hist_a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=False)["history"]
    hist_b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)["history"]
    assert [h["epoch"] for h in hist_b] == [1, 2, 3]
    assert [h["loss"] for h in hist_a] == pytest.approx([h["loss"] for h in hist_b], rel=1e-5)
    sa = torch.load(tmp_path / "a" / MODEL, weights_only=False)["net"]
    sb = torch.load(tmp_path / "b" / MODEL, weights_only=False)["net"]
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)
    assert straight["balanced_accuracy"] == pytest.approx(resumed["balanced_accuracy"])


def test_resume_refuses_a_different_config(tmp_path, npz):
    train(_cfg(npz, epochs=1), tmp_path / "r", progress=False)
    from pyro_ebnn.errors import ConfigError
    with pytest.raises(ConfigError, match="different config \\(lr\\)"):
        train(_cfg(npz, epochs=2, lr=0.01), tmp_path / "r", progress=False)


def test_a_run_without_feedback_resumes_whatever_the_evidence_keys_say(tmp_path):
    """The evidence's keys change nothing without feedback: a none run resumes across them, a feedback run not."""
    from pyro_ebnn.errors import ConfigError
    from pyro_ebnn.experiment.config import load_config
    from pyro_ebnn.experiment.rundir import prepare_run_dir
    for mode, resumes in (("none", True), ("feedback", False)):
        out = tmp_path / mode
        out.mkdir()
        before = load_config(None, {"mode": mode, "lam": 1e-3, "evidence_holes": "own"})
        torch.save({"optimizer": {}, "config": before.to_dict(), "epoch": 1}, out / CHECKPOINT)
        after = load_config(None, {"mode": mode, "lam": 1e-4, "evidence_holes": "shared", "mask_pool": "min"})
        if resumes:
            assert prepare_run_dir(out, after, resume=True)["epoch"] == 1
        else:
            with pytest.raises(ConfigError, match=r"different config \(evidence_holes, lam, mask_pool\)"):
                prepare_run_dir(out, after, resume=True)
        with pytest.raises(ConfigError, match=r"different config \(lr\)"):   # other keys still count
            prepare_run_dir(out, load_config(None, {"mode": mode, "lam": 1e-3, "lr": 0.5}), resume=True)


def test_saved_model_reloads_in_a_fresh_process(tmp_path, npz):
    train(_cfg(npz, epochs=1), tmp_path / "run", progress=False)
    code = f"""
import torch, pyro
from pyro_ebnn.experiment.rundir import load_model
from pyro_ebnn.bnn import mean_probs
bnn, cfg, _ = load_model({str(tmp_path / 'run')!r})
torch.manual_seed(0)
p = mean_probs(bnn, torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
print(repr(p.tolist()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    from pyro_ebnn.experiment.rundir import load_model
    from pyro_ebnn.bnn import mean_probs
    bnn, _, _ = load_model(tmp_path / "run")
    here = mean_probs(bnn, torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(torch.tensor(eval(out)), here, atol=1e-6)


def test_finetune_evaluate_and_aggregate_from_the_cli(tmp_path, npz):
    r = CliRunner()
    base = ["--config", "configs/custom_npz.yaml", "--set", f"npz_path={npz}", "--set", "eval_samples=2",
            "--set", "lam=1e-4"]
    for fold in (0, 1):
        res = r.invoke(cli, ["train", *base, "--mode", "none", "--fold", str(fold), "--set", "epochs=1",
                             "--out", str(tmp_path / "runs" / f"none{fold}")])
        assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["finetune", *base, "--run", str(tmp_path / "runs" / "none0"), "--set", "finetune_epochs=1",
                         "--set", "finetune_budget=5", "--out", str(tmp_path / "runs" / "ft")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "runs" / "ft" / "metrics.json").read_text())
    assert m["mode"] == "feedback" and m["n_train_with_mask"] <= 5 and m["finetuned_from"].endswith("none0")
    res = r.invoke(cli, ["evaluate", "--run", str(tmp_path / "runs" / "ft"), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_test"] == 20
    res = r.invoke(cli, ["aggregate", str(tmp_path / "runs"), "--columns", "balanced_accuracy,f1_macro"])
    assert res.exit_code == 0, res.output
    assert "| custom_npz | none | 2 |" in res.output
    csv = (tmp_path / "runs" / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("name,mode,runs,balanced_accuracy_mean,balanced_accuracy_std")
    # rows by a metric (fold) and by a config key (finetune_budget: 0 for the none runs, 5 for ft)
    res = r.invoke(cli, ["aggregate", str(tmp_path / "runs"), "--by", "mode,fold,finetune_budget",
                         "--columns", "balanced_accuracy", "--out", str(tmp_path / "by")])
    assert res.exit_code == 0, res.output
    rows = [l for l in res.output.splitlines() if l.startswith("| none") or l.startswith("| feedback")]
    assert sorted(rows[i].split(" | ")[:3] for i in range(len(rows))) == [
        ["| feedback", "0", "5.0"], ["| none", "0", "0.004"], ["| none", "1", "0.004"]]
    assert (tmp_path / "by_runs.csv").read_text().splitlines()[0] == "mode,fold,finetune_budget,seed,balanced_accuracy"
    with open(tmp_path / "runs" / "summary_runs.csv", newline="") as f:  # each run's own numbers
        per_run = list(DictReader(f))
    assert list(per_run[0]) == ["name", "mode", "fold", "seed", "balanced_accuracy", "f1_macro"]
    own = {run: json.loads((tmp_path / "runs" / run / "metrics.json").read_text()) for run in ("none0", "none1", "ft")}
    assert sorted((r["mode"], r["fold"], float(r["balanced_accuracy"])) for r in per_run) == sorted(
        (m["mode"], str(m["fold"]), m["balanced_accuracy"]) for m in own.values())
    # the runs of fold 1 pooled with the summary of fold 0's run: the table of both
    res = r.invoke(cli, ["aggregate", str(tmp_path / "runs" / "none0"), "--columns", "balanced_accuracy,f1_macro",
                         "--out", str(tmp_path / "f0")])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["aggregate", str(tmp_path / "runs" / "none1"), "--columns", "balanced_accuracy,f1_macro",
                         "--with-summary", str(tmp_path / "f0.csv"), "--out", str(tmp_path / "pooled")])
    assert res.exit_code == 0, res.output
    both = [l for l in (tmp_path / "runs" / "summary.md").read_text().splitlines() if "| none |" in l]
    assert [l for l in res.output.splitlines() if "| none |" in l] == both
    res = r.invoke(cli, ["aggregate", str(tmp_path / "runs"), "--with-summary", str(tmp_path / "nothing.csv")])
    assert res.exit_code != 0 and "no summary table at" in res.output
    res = r.invoke(cli, ["aggregate", str(tmp_path / "runs"), "--by", "mode,fold",
                         "--with-summary", str(tmp_path / "f0.csv")])
    assert res.exit_code != 0 and "aggregate it with the same --by" in res.output
    res = r.invoke(cli, ["aggregate", str(tmp_path / "runs" / "none1"), "--columns", "balanced_accuracy,nll",
                         "--with-summary", str(tmp_path / "f0.csv"), "--out", str(tmp_path / "lacks")])
    assert res.exit_code != 0 and "has no column nll" in res.output and not (tmp_path / "lacks.csv").exists()
    res = r.invoke(cli, ["aggregate", str(tmp_path / "runs"), "--by", "mode,rho"])
    assert res.exit_code != 0 and "cannot group by 'rho'" in res.output and "rho_init" in res.output
    res = r.invoke(cli, ["aggregate", str(tmp_path / "runs"), "--by", " , "])
    assert res.exit_code != 0 and "--by needs at least one key" in res.output


def _idx(path, arr):
    with open(path, "wb") as f:
        if arr.ndim == 3:
            f.write(struct.pack(">IIII", 0x0803, *arr.shape))
        else:
            f.write(struct.pack(">II", 0x0801, len(arr)))
        f.write(arr.astype(np.uint8).tobytes())


def test_mnist_from_a_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    from pyro_ebnn.data.mnist import load_mnist
    xtr, ytr, xte, yte = load_mnist(str(tmp_path), source="torchvision")
    assert xtr.shape == (30, 28, 28) and xte.shape == (10, 28, 28) and xtr.dtype == np.uint8
    assert ytr.shape == (30,) and yte.max() < 10


@pytest.mark.parametrize("mode,gets_mask,noisy", [("none", False, False), ("feedback", True, False),
                                                  ("rrr", True, False), ("cdep", True, False), ("augment", False, True)])
def test_each_mode_hands_the_masks_to_the_right_place(tmp_path, npz, monkeypatch, mode, gets_mask, noisy):
    from pyro_ebnn.experiment.training import Trainer
    seen = []
    real_step = Trainer.step

    def spy(self, x, y, mask, data_size):
        seen.append((x.clone(), mask))
        return real_step(self, x, y, mask, data_size)
    monkeypatch.setattr(Trainer, "step", spy)
    cfg = _cfg(npz, epochs=1, mode=mode, mask_fraction=1.0)
    train(cfg, tmp_path / mode, progress=False)
    from pyro_ebnn.experiment.protocol import prepare_split
    split = prepare_split(cfg)
    assert all((m is not None) == gets_mask for _, m in seen)
    xs = torch.cat([x for x, _ in seen])
    # augment: pixels of masked regions are noise, never the stored pixels
    stored = split.train.images
    assert (not torch.equal(xs.sort(0).values, stored.sort(0).values)) == noisy


def test_checkpoint_from_before_a_new_config_key_still_resumes(tmp_path, npz):
    train(_cfg(npz, epochs=1), tmp_path / "r", progress=False)
    st = torch.load(tmp_path / "r" / CHECKPOINT, weights_only=False)
    del st["config"]["penalty_weight"]  # as written by an older version
    torch.save(st, tmp_path / "r" / CHECKPOINT)
    m = train(_cfg(npz, epochs=2), tmp_path / "r", progress=False)
    assert m["epochs_run"] == 2


def test_validation_within_epochs_can_select_the_model(tmp_path, npz):
    """``val_every_steps``: extra validations inside an epoch, recorded in the history; the saved
    model is the best over all validations in order, and training itself is unchanged."""
    cfg = _cfg(npz, epochs=2, val_every_steps=2)
    key = f"val_{cfg.select_metric}"
    m = train(cfg, tmp_path / "v", progress=False)
    hist = torch.load(tmp_path / "v" / CHECKPOINT, weights_only=False)["history"]
    order = []
    for h in hist:
        order += [(w["epoch"], w[key]) for w in h.get("validations_within_epoch", [])] + [(h["epoch"], h[key])]
    within = [e for e, _ in order if e != int(e)]
    assert len(within) >= 2 and all(0 < e < 2 for e in within)
    best = max(s for _, s in order)
    first_best = next(e for e, s in order if s == best)
    saved = torch.load(tmp_path / "v" / MODEL, weights_only=False)
    assert saved["epoch"] == m["best_epoch"] == first_best and saved[key] == best
    train(_cfg(npz, epochs=2), tmp_path / "p", progress=False)
    plain = torch.load(tmp_path / "p" / CHECKPOINT, weights_only=False)["history"]
    assert [h["loss"] for h in plain] == pytest.approx([h["loss"] for h in hist], rel=1e-6)
    from pyro_ebnn.errors import ConfigError
    for bad in (0, -3):
        with pytest.raises(ConfigError, match="config key 'val_every_steps': must be a positive integer or null"):
            _cfg(npz, val_every_steps=bad)
    with pytest.raises(ConfigError, match=r"config key 'val_every_steps': cannot read 2.5 as Optional\[int\]"):
        _cfg(npz, val_every_steps=2.5)



def test_patience_counts_gains_anywhere_since_the_last_check(tmp_path, npz, monkeypatch):
    """Early stopping with ``val_every: 2`` and ``val_every_steps``: a better model found inside an
    epoch without an end-of-epoch validation still counts as a gain at the next check. Validation
    scores are scripted; 27 training images, batch 8: 4 steps, one inside-epoch validation each."""
    import pyro_ebnn.experiment.training as T
    scores = [0.5,             # epoch 1 (inside)
              0.4, 0.4,        # epoch 2 (inside, end): gain since the start -> stale 0
              0.6,             # epoch 3 (inside): a gain in an epoch that is not checked
              0.3, 0.3,        # epoch 4: the gain of epoch 3 counts -> stale 0
              0.3,             # epoch 5
              0.3, 0.3,        # epoch 6: no gain since epoch 4 -> stale 1 = patience: stop
              0.3, 0.3, 0.3]

    def scripted(self, split, out, epoch):
        score = scores.pop(0)
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            T.save_model(out / MODEL, self.model, self.cfg, split.train.image_shape, split.train.num_classes,
                         {"epoch": epoch})
        return score, False, {}
    monkeypatch.setattr(T.Trainer, "_validate", scripted)
    m = train(_cfg(npz, epochs=8, val_every=2, val_every_steps=2, patience=1), tmp_path / "p", progress=False)
    assert m["epochs_run"] == 6 and m["best_epoch"] == 2.5


def test_pooling_summaries_is_exact(tmp_path):
    """Summaries of parts of the runs, pooled, give the table of all the runs: the same mean and
    sample std to float precision, groups of one run and groups found on one side only included."""
    from pyro_ebnn.experiment.tables import read_summary, summarize, write_tables
    rng = np.random.default_rng(0)
    runs = [{"name": "r", "mode": mode, "fold": i, "balanced_accuracy": float(rng.uniform()),
             "ece": None if (mode, i) == ("none", 2) else float(rng.normal(0.1, 0.05))}
            for mode, n in (("none", 5), ("feedback", 3), ("augment", 1), ("rrr", 2)) for i in range(n)]
    first = [r for r in runs if r["fold"] < 2 and r["mode"] != "rrr"]
    rest = [r for r in runs if r not in first]
    cols = ("balanced_accuracy", "ece")
    write_tables(summarize(first, cols), tmp_path / "first", cols)
    pooled = summarize(rest, cols, earlier=read_summary(tmp_path / "first.csv"))
    whole = summarize(runs, cols)
    assert [(p["mode"], p["runs"]) for p in pooled] == [(w["mode"], w["runs"]) for w in whole]
    for p, w in zip(pooled, whole):
        for c in cols:
            assert p[f"{c}_mean"] == pytest.approx(w[f"{c}_mean"], abs=1e-12)
            assert p[f"{c}_std"] == pytest.approx(w[f"{c}_std"], abs=1e-12)
            assert p[c] == w[c]


def test_mean_std_over_folds_skips_missing_values():
    from pyro_ebnn.experiment.tables import mean_std
    assert mean_std([0.9, 0.95, 1.0]) == ("0.950 ± 0.050", pytest.approx(0.95), pytest.approx(0.05))
    assert mean_std([0.5, None, float("nan")])[0] == "0.500 ± 0.000"  # one value: std 0, not NaN
    assert mean_std([None, float("nan")]) == ("n/a", None, None)


def test_evaluate_the_last_epoch_instead_of_the_selected_model(tmp_path, npz):
    """``--checkpoint last`` evaluates the network of checkpoint.pt, not model.pt; it refuses to write
    into the run itself and needs a checkpoint; the validation curve is drawn from the history."""
    run = tmp_path / "run"
    train(_cfg(npz, epochs=2, mode="none"), run, progress=False)
    ck = torch.load(run / CHECKPOINT, weights_only=False)
    last_bias = [k for k in ck["net"] if k.endswith("bias_loc")][-1]
    ck["net"][last_bias] = torch.tensor([1e4, 0.0, 0.0])  # the "last epoch" now always says class 0
    torch.save(ck, run / CHECKPOINT)
    r = CliRunner()
    args = ["evaluate", "--run", str(run), "--no-attributions"]
    res = r.invoke(cli, [*args, "--checkpoint", "last", "--out", str(tmp_path / "last")])
    assert res.exit_code == 0, res.output
    last = json.loads((tmp_path / "last" / "metrics.json").read_text())
    assert last["evaluated_checkpoint"] == "last" and last["evaluated_epoch"] == 2
    assert last["balanced_accuracy"] == pytest.approx(1 / 3)          # one class for every image
    assert (tmp_path / "last" / "validation_curve.png").exists()
    res = r.invoke(cli, [*args, "--out", str(tmp_path / "selected"), "--no-figures"])
    assert res.exit_code == 0, res.output
    selected = json.loads((tmp_path / "selected" / "metrics.json").read_text())
    assert selected["evaluated_checkpoint"] == "selected" and selected["balanced_accuracy"] != pytest.approx(1 / 3)
    res = r.invoke(cli, [*args, "--weights", "last", "--out", str(tmp_path / "old")])  # the old spelling
    assert res.exit_code == 0 and "--weights is now --checkpoint" in res.output, res.output
    assert json.loads((tmp_path / "old" / "metrics.json").read_text())["evaluated_checkpoint"] == "last"
    res = r.invoke(cli, [*args, "--checkpoint", "last"])                  # in place: refused
    assert res.exit_code == 2 and "pass another --out" in res.output
    (run / CHECKPOINT).unlink()
    res = r.invoke(cli, [*args, "--checkpoint", "last", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "no checkpoint.pt" in res.output and not (tmp_path / "x").exists()


def test_train_and_finetune_run_on_the_configured_threads(tmp_path, npz):
    from pyro_ebnn.experiment.runs import finetune
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        m = train(_cfg(npz, epochs=1, mode="none", threads=1), tmp_path / "none", progress=False)
        assert m["threads"] == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        m = finetune(tmp_path / "none", _cfg(npz, threads=1, finetune_epochs=1, finetune_budget=5), tmp_path / "ft",
                     progress=False)
        assert m["threads"] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_finetune_with_a_budget_of_zero_is_the_control_without_feedback(tmp_path, npz):
    from pyro_ebnn.errors import ConfigError
    from pyro_ebnn.experiment.runs import finetune
    train(_cfg(npz, epochs=1, mode="none"), tmp_path / "none", progress=False)
    start = torch.load(tmp_path / "none" / MODEL, weights_only=False)["net"]
    m = finetune(tmp_path / "none", _cfg(npz, finetune_epochs=2, finetune_budget=0, patience=None), tmp_path / "ctl",
                 progress=False)
    assert m["mode"] == "none" and m["n_train_with_mask"] == 0 and m["epochs_run"] == 2
    assert m["finetune_lam"] is None                                      # no evidence term was used
    last = torch.load(tmp_path / "ctl" / CHECKPOINT, weights_only=False)["net"]
    assert any(not torch.equal(start[k], last[k]) for k in start)          # it did train
    with pytest.raises(ConfigError, match="finetune_budget"):
        _cfg(npz, finetune_budget=-1)


def test_validation_points_merge_the_validations_inside_and_at_the_end_of_epochs(tmp_path, npz):
    """The validation curve's data, from a real trainer history with validations every 2 steps."""
    from pyro_ebnn.experiment.figures import validation_points
    train(_cfg(npz, epochs=2, mode="none", val_every_steps=2), tmp_path / "run", progress=False)
    history = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)["history"]
    points = validation_points(history, "balanced_accuracy")
    inside = [(v["epoch"], v["val_balanced_accuracy"]) for h in history for v in h["validations_within_epoch"]]
    ends = [(h["epoch"], h["val_balanced_accuracy"]) for h in history]
    assert inside and all(0 < e % 1 for e, _ in inside)                 # fractional epochs inside an epoch
    assert points == sorted(inside + ends) and len(points) == len(inside) + 2
    assert [e for e, _ in points] == sorted(e for e, _ in points) and points[-1] == ends[-1]


def test_grid_trains_runs_in_parallel_processes_as_it_would_one_after_the_other(tmp_path, npz):
    """--jobs 2: each run in its own process on cpu_count // 2 threads; the same runs (configs,
    seeds, data) as trained one after the other on those threads, so the same metrics; a failing
    run stops the grid with its one-line error and a non-zero exit."""
    import os
    r = CliRunner()
    threads = max(1, (os.cpu_count() or 1) // 2)
    base = ["grid", "--config", "configs/custom_npz.yaml", "--modes", "none,feedback", "--folds", "0",
            "--set", f"npz_path={npz}", "--set", "eval_samples=2", "--set", "epochs=1", "--set", "batch_size=8",
            "--set", "lam=1e-4"]
    res = r.invoke(cli, [*base, "--jobs", "2", "--out", str(tmp_path / "par")])
    assert res.exit_code == 0, res.output
    assert "2 runs, 2 at a time" in res.output
    res = r.invoke(cli, [*base, "--set", f"threads={threads}", "--out", str(tmp_path / "seq")])
    assert res.exit_code == 0, res.output
    for mode in ("none", "feedback"):
        par = json.loads((tmp_path / "par" / "custom_npz" / mode / "fold0" / "metrics.json").read_text())
        seq = json.loads((tmp_path / "seq" / "custom_npz" / mode / "fold0" / "metrics.json").read_text())
        assert par["threads"] == seq["threads"] == threads
        assert par["balanced_accuracy"] == seq["balanced_accuracy"] and par["nll"] == seq["nll"], mode
    res = r.invoke(cli, [*base, "--jobs", "2", "--set", "npz_path=" + str(tmp_path / "missing.npz"),
                         "--out", str(tmp_path / "bad")])
    assert res.exit_code != 0 and "missing.npz" in res.output
    assert not list((tmp_path / "bad").rglob("metrics.json"))
    # an error inside a worker process (its run directory holds another config) reaches the user in
    # one line, and the finished runs there are left as they were
    before = {p: p.read_bytes() for p in (tmp_path / "par").rglob("metrics.json")}
    res = r.invoke(cli, [*base, "--jobs", "2", "--set", "lr=0.5", "--out", str(tmp_path / "par")])
    assert res.exit_code != 0 and "holds a run with a different config (lr)" in res.output
    assert "Traceback" not in res.output
    assert {p: p.read_bytes() for p in (tmp_path / "par").rglob("metrics.json")} == before


def _ended(pid: int) -> bool:
    """The process is gone or a zombie (an orphan whose new parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@contextlib.contextmanager
def _another_process_writing(*dirs):
    """A separate process holding the run-directory lock of ``dirs`` until it is killed (SIGKILL on
    leaving, so the lock must go with the process, not with a clean exit); yields its pid."""
    held = "".join(f"writing({str(d)!r}), " for d in dirs).rstrip(", ")
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom pyro_ebnn.experiment.rundir import writing\n"
                               f"with {held}:\n    print('held', flush=True)\n    time.sleep(120)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_second_process_on_a_run_directory_stops_with_one_line_and_touches_nothing(tmp_path, npz):
    """Two commands on one --out would overwrite each other's checkpoints: the second (a train, a
    finetune, an in-place evaluate) stops with one line naming the process that writes there; the
    lock dies with its process (never stale)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / MODEL).write_bytes(b"the first run's model")
    args = ["train", "--config", "configs/custom_npz.yaml", "--set", f"npz_path={npz}", "--set", "epochs=1",
            "--set", "eval_samples=2", "--set", "batch_size=8", "--no-resume", "--out", str(out)]
    with _another_process_writing(out) as pid:
        res = CliRunner().invoke(cli, args)
        assert res.exit_code != 0 and "Traceback" not in res.output
        assert f"another process (pid {pid}) is writing {out}" in res.output
        assert len(res.output.strip().splitlines()) == 1
        assert (out / MODEL).read_bytes() == b"the first run's model"
    res = CliRunner().invoke(cli, args)          # the killed holder's lock went with it
    assert res.exit_code == 0, res.output
    assert (out / "metrics.json").exists()
    # fine-tuning into a held directory; evaluating in place: both write there, so neither may now
    ft = tmp_path / "ft"
    ft.mkdir()
    (ft / MODEL).write_bytes(b"the first fine-tuning's model")
    with _another_process_writing(ft, out) as pid:
        res = CliRunner().invoke(cli, ["finetune", "--config", "configs/custom_npz.yaml", "--set", f"npz_path={npz}",
                                       "--set", "finetune_epochs=1", "--set", "eval_samples=2", "--run", str(out),
                                       "--out", str(ft)])
        assert res.exit_code != 0 and f"another process (pid {pid}) is writing {ft}" in res.output
        assert len(res.output.strip().splitlines()) == 1
        assert (ft / MODEL).read_bytes() == b"the first fine-tuning's model"
        before = (out / "metrics.json").read_bytes()
        res = CliRunner().invoke(cli, ["evaluate", "--run", str(out), "--no-attributions", "--no-figures"])
        assert res.exit_code != 0 and f"another process (pid {pid}) is writing {out}" in res.output
        assert (out / "metrics.json").read_bytes() == before
        with pytest.raises(RunBusyError, match=f"pid {pid}"):   # compare's overlap step, in place too
            add_overlap(out, ("saliency",), max_images=4, progress=False)
        assert (out / "metrics.json").read_bytes() == before


def test_grid_workers_end_when_the_grid_process_is_killed(tmp_path):
    """A grid killed with SIGKILL cannot stop its workers; they notice and end instead of going on
    writing their run directories (which a restarted grid would then share with them)."""
    import time
    script = ("import os, time\nfrom pyro_ebnn.experiment.compare import worker_pool\n"
              "if __name__ == '__main__':\n    pool = worker_pool(1)\n"
              "    print(pool.submit(os.getpid).result(), flush=True)\n"
              "    pool.submit(time.sleep, 120)\n    time.sleep(120)\n")
    (tmp_path / "grid.py").write_text(script)
    import os
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    grid = subprocess.Popen([sys.executable, str(tmp_path / "grid.py")], stdout=subprocess.PIPE, text=True, env=env)
    worker = int(grid.stdout.readline())
    assert not _ended(worker)
    grid.send_signal(signal.SIGKILL)
    grid.wait()
    deadline = time.time() + 20
    while not _ended(worker) and time.time() < deadline:
        time.sleep(0.2)
    assert _ended(worker)


def _class_marking_npz(path):
    """Class 1's images carry a mark in the top-left corner, class 0's none: the holes alone tell the class."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    masks = np.zeros((60, 1, 28, 28), np.uint8)
    masks[labels == 1, :, :8, :8] = 1
    _write_npz(path, train_images=rng.random((60, 1, 28, 28), dtype=np.float32), train_labels=labels,
               train_masks=masks, test_labels=rng.integers(0, 2, 20))


@pytest.mark.parametrize("holes", ["own", "none"])
def test_holes_that_tell_the_class_are_measured_and_warned_of(tmp_path, holes):
    """A mask whose place depends on the class makes a feature of its own out of the zeros the head
    sees: the run measures it before training and warns in one line naming the fix; with
    ``evidence_holes: none`` the head sees no holes and there is nothing to warn of."""
    _class_marking_npz(tmp_path / "d.npz")
    metrics = train(_cfg(str(tmp_path / "d.npz"), epochs=1, evidence_holes=holes), tmp_path / "run", progress=False)
    if holes == "none":
        assert metrics.get("hole_information") is None
        assert not [w for w in metrics["warnings"] if "holes" in w]
    else:
        assert metrics["hole_information"] > 0.9
        assert [w for w in metrics["warnings"] if "tell the class by themselves" in w and "--sweep feedback:evidence_holes=own,shared,none" in w]


def test_the_look_at_the_holes_draws_nothing_from_torchs_generator(tmp_path):
    """The run trains as it would without the look: the generator's state is the same after it, also
    for images streamed by a DataLoader (as image folders are), which draws a seed when it starts."""
    from pyro_ebnn.experiment.build import build_model
    from pyro_ebnn.experiment.protocol import prepare_split
    from pyro_ebnn.data.base import ReplacedMasks
    from pyro_ebnn.experiment.holes import holes_information
    _class_marking_npz(tmp_path / "d.npz")
    cfg = _cfg(str(tmp_path / "d.npz"), evidence_holes="own")
    train_set = prepare_split(cfg, progress=False).train
    model = build_model(cfg, train_set.image_shape, train_set.num_classes)
    streamed = ReplacedMasks(train_set, {i: train_set.masks[i] for i in range(len(train_set)) if train_set.masks[i].any()})
    before = torch.random.get_rng_state()
    assert holes_information(cfg, model, streamed) > 0.9
    assert torch.equal(torch.random.get_rng_state(), before)


def _marked_at_class_places_npz(path, every_image_marked: bool):
    """Class 1's images marked in the top-left corner; with ``every_image_marked`` class 0's in the
    bottom-right one too (each class its own place), otherwise class 0's carry no mark."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    masks = np.zeros((60, 1, 28, 28), np.uint8)
    masks[labels == 1, :, :8, :8] = 1
    if every_image_marked:
        masks[labels == 0, :, -8:, -8:] = 1
    _write_npz(path, train_images=rng.random((60, 1, 28, 28), dtype=np.float32), train_labels=labels,
               train_masks=masks, test_labels=rng.integers(0, 2, 20))


@pytest.mark.parametrize("every_image_marked, chosen", [(True, "none"), (False, "shared")])
def test_auto_holes_show_the_head_no_holes_only_where_shared_ones_still_tell_the_class(tmp_path, every_image_marked,
                                                                                       chosen):
    """Marks at each class's own place on every image: lending holes cannot hide the class (every image
    has its own), so auto shows the head none; marks on one class's images only: shared holes come with
    every class and auto keeps them. The choice is recorded, reloaded with the model, and not warned of."""
    from pyro_ebnn.experiment.rundir import load_model
    _marked_at_class_places_npz(tmp_path / "d.npz", every_image_marked)
    metrics = train(_cfg(str(tmp_path / "d.npz"), epochs=1, evidence_holes="auto"), tmp_path / "run", progress=False)
    assert metrics["evidence_holes"] == chosen
    assert (metrics["hole_information"] > 0.9) == every_image_marked
    assert not [w for w in metrics["warnings"] if "tell the class by themselves" in w]
    assert load_model(tmp_path / "run")[0].evidence.holes == chosen
    # the run is the one the chosen setting trains: the look drew nothing from torch's generator
    train(_cfg(str(tmp_path / "d.npz"), epochs=1, evidence_holes=chosen), tmp_path / "chosen", progress=False)
    auto, direct = (load_model(tmp_path / r)[0].net.state_dict() for r in ("run", "chosen"))
    assert all(torch.equal(auto[k], direct[k]) for k in auto)


@pytest.mark.parametrize("trained_on, finetuned_on", [("one_class", "every_image"), ("every_image", "one_class")])
def test_finetune_chooses_auto_holes_again_on_the_images_it_finetunes_on(tmp_path, trained_on, finetuned_on):
    """The holes a run chose under ``evidence_holes: auto`` belong to its training images: fine-tuning
    on other marks looks again, and the fine-tuned model keeps the new choice."""
    from pyro_ebnn.experiment.rundir import load_model
    from pyro_ebnn.experiment.runs import finetune
    choice = {"one_class": "shared", "every_image": "none"}
    for name in choice:
        _marked_at_class_places_npz(tmp_path / f"{name}.npz", name == "every_image")
    trained = train(_cfg(str(tmp_path / f"{trained_on}.npz"), epochs=1, evidence_holes="auto"), tmp_path / "run",
                    progress=False)
    assert trained["evidence_holes"] == choice[trained_on]
    tuned = finetune(tmp_path / "run", _cfg(str(tmp_path / f"{finetuned_on}.npz"), evidence_holes="auto",
                                            finetune_epochs=1, finetune_budget=60, patience=None),
                     tmp_path / "tuned", progress=False)
    assert tuned["evidence_holes"] == choice[finetuned_on]
    assert load_model(tmp_path / "tuned")[0].evidence.holes == choice[finetuned_on]


def test_the_hole_information_fit_converges_on_lent_text_boxes():
    """Shared holes of a watermark's boxes (every image a block of cells from the bottom-right
    corner, lent across classes) are nested, nearly collinear features; lbfgs needs more than its 200
    default iterations for them and scikit-learn then prints a ConvergenceWarning per fold."""
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    from pyro_ebnn.metrics.holes import hole_information
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(450) % 3
    holes = torch.zeros(450, 1, 29, 29, dtype=torch.bool)
    for i in range(450):
        holes[i, 0, int(torch.randint(20, 24, (1,), generator=g)):, int(torch.randint(0, 13, (1,), generator=g)):] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert hole_information(holes, labels, 3) < 0.1   # the boxes do not depend on the class

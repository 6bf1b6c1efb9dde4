"""The figure of docs/results/paper-budget.md: 200 epochs on [000]'s position rule, what the validation
fold sees against what the test set shows.

    python docs/figures/paper_budget.py --runs results/paper_budget   # export the curves, then draw
    python docs/figures/paper_budget.py                               # draw from the committed CSVs

``--runs`` writes experiments/results/paper_budget/validation_curves.csv (every epoch's validation
balanced accuracy and loss of every finished run, read from its checkpoint.pt); the test scores come from
experiments/results/paper_budget/summary.csv and summary_last.csv (`aggregate` of the selected models
and of the networks after the last epoch). Output: docs/figures/paper_budget.png.
"""
import argparse
import csv
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results" / "paper_budget"
CURVES = RESULTS / "validation_curves.csv"
RULE = "decoy_mnist_position"
MODES = [("none", "without feedback", "#9e9e9e"), ("feedback", "with feedback", "#e66100"),
         ("augment", "counterexamples", "#5d3a9b")]


def export(runs: Path):
    """One row per finished run (its metrics.json written) and epoch, from the checkpoints under ``runs``."""
    rows = []
    for ckpt in sorted(Path(runs).glob("*/*/fold*/checkpoint.pt")):
        if not (ckpt.parent / "metrics.json").exists():
            continue
        name, mode, fold = ckpt.parts[-4:-1]
        for h in torch.load(ckpt, map_location="cpu", weights_only=False)["history"]:
            if float(h["epoch"]).is_integer():  # end-of-epoch validations only
                rows.append({"name": name, "mode": mode, "fold": fold[4:], "epoch": int(h["epoch"]),
                             "loss": h["loss"], "val_balanced_accuracy": h["val_balanced_accuracy"]})
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(CURVES, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_scores(path):
    if not path.exists():
        return {}
    with open(path) as f:
        return {r["mode"]: r for r in csv.DictReader(f) if r["name"] == RULE}


def draw():
    curves = defaultdict(lambda: defaultdict(list))
    with open(CURVES) as f:
        for r in csv.DictReader(f):
            if r["name"] == RULE:
                curves[r["mode"]][r["fold"]].append((int(r["epoch"]), float(r["val_balanced_accuracy"])))
    selected, last = test_scores(RESULTS / "summary.csv"), test_scores(RESULTS / "summary_last.csv")
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    for mode, label, colour in MODES:
        folds = [sorted(c) for c in curves[mode].values() if len(c) > 1]
        if not folds:
            continue
        n = min(len(c) for c in folds)
        epochs = [e for e, _ in folds[0][:n]]
        mean = np.mean([[v for _, v in c[:n]] for c in folds], axis=0)
        ax.plot(epochs, mean, color=colour, lw=1.4, label=f"{label}: validation (training-rule decoys)")
        if mode in selected:
            m = float(selected[mode]["balanced_accuracy_mean"])
            ax.axhline(m, color=colour, ls="--", lw=1.1, label=f"{label}: test, selected model ({m:.3f})")
        if mode in last:
            m = float(last[mode]["balanced_accuracy_mean"])
            ax.plot([epochs[-1]], [m], marker="o", color=colour, ms=5, ls="none",
                    label=f"{label}: test, after epoch {epochs[-1]} ({m:.3f})")
    ax.set_xlabel("epoch", fontsize=8.5)
    ax.set_ylabel("balanced accuracy", fontsize=8.5)
    ax.set_ylim(0.0, 1.02)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=6.5, frameon=False, loc="lower right")
    ax.set_title("Decoy MNIST position rule, LeNet, standardized inputs, mean over folds", fontsize=9, loc="left")
    fig.tight_layout()
    fig.savefig(Path(__file__).with_suffix(".png"), dpi=150)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, help="the compare --out directory: export its curves first")
    args = parser.parse_args()
    if args.runs:
        export(args.runs)
    draw()

"""The figure of docs/results/paper-budget.md: 200 epochs on [000]'s rules, what the validation fold
sees against what the test set shows.

    python docs/figures/paper_budget.py --runs results/paper_budget   # export the curves, then draw
    python docs/figures/paper_budget.py                               # draw from the committed CSVs

``--runs`` writes experiments/results/paper_budget/validation_curves.csv (every epoch's validation
balanced accuracy and loss of every finished run, read from its checkpoint.pt; the rows of runs not
found there are kept, so runs trained in several places add up); the test scores come from
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
RULES = ["decoy_mnist_position", "decoy_mnist_color"]
RULE_TITLES = {"decoy_mnist_position": "position rule", "decoy_mnist_color": "color rule"}
MODES = [("none", "without feedback", "#9e9e9e"), ("feedback", "with feedback", "#e66100"),
         ("augment", "counterexamples", "#5d3a9b")]


def export(runs: Path):
    """One row per finished run (its metrics.json written) and epoch, from the checkpoints under
    ``runs``, beside the rows already in the CSV of runs not found under ``runs``."""
    rows = []
    for ckpt in sorted(Path(runs).glob("*/*/fold*/checkpoint.pt")):
        if not (ckpt.parent / "metrics.json").exists():
            continue
        name, mode, fold = ckpt.parts[-4:-1]
        for h in torch.load(ckpt, map_location="cpu", weights_only=False)["history"]:
            if float(h["epoch"]).is_integer():  # end-of-epoch validations only
                rows.append({"name": name, "mode": mode, "fold": fold[4:], "epoch": int(h["epoch"]),
                             "loss": h["loss"], "val_balanced_accuracy": h["val_balanced_accuracy"]})
    found = {(r["name"], r["mode"], r["fold"]) for r in rows}
    if CURVES.exists():
        with open(CURVES, newline="") as f:
            kept = [r for r in csv.DictReader(f) if (r["name"], r["mode"], r["fold"]) not in found]
        rows = sorted(kept + rows, key=lambda r: (r["name"], r["mode"], int(r["fold"]), int(r["epoch"])))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(CURVES, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_scores(path):
    if not path.exists():
        return {}
    with open(path) as f:
        return {(r["name"], r["mode"]): r for r in csv.DictReader(f)}


def _mean_std(row, column):
    return float(row[f"{column}_mean"]), float(row[f"{column}_std"] or 0.0)


def draw():
    curves = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with open(CURVES) as f:
        for r in csv.DictReader(f):
            curves[r["name"]][r["mode"]][r["fold"]].append((int(r["epoch"]), float(r["val_balanced_accuracy"])))
    selected, last = test_scores(RESULTS / "summary.csv"), test_scores(RESULTS / "summary_last.csv")
    rules = [rule for rule in RULES if rule in curves]
    fig, axes = plt.subplots(1, len(rules), figsize=(max(7.0, 4.6 * len(rules) + 1.0), 4.4), squeeze=False)
    for ax, rule in zip(axes[0], rules):
        shown = []  # the test scores drawn, to choose the panel's range
        numbers = {}  # mode -> test balanced accuracy [selected, last]
        for mode, label, colour in MODES:
            folds = [sorted(c) for c in curves[rule][mode].values() if len(c) > 1]
            if not folds:
                continue
            n = min(len(c) for c in folds)
            epochs = [e for e, _ in folds[0][:n]]
            mean = np.mean([[v for _, v in c[:n]] for c in folds], axis=0)
            ax.plot(epochs, mean, color=colour, lw=1.3, label=f"{label}: validation")
            if (rule, mode) in selected:  # at the selected epoch, error bars over folds
                (acc, acc_sd), (ep, ep_sd) = (_mean_std(selected[rule, mode], c)
                                              for c in ("balanced_accuracy", "best_epoch"))
                ax.errorbar([ep], [acc], xerr=[ep_sd], yerr=[acc_sd], marker="D", ms=4.5, color=colour,
                            capsize=2, lw=1, ls="none", label=f"{label}: test, selected model")
                numbers[mode] = [f"{acc:.3f}"]
                shown.append(acc - acc_sd)
            if (rule, mode) in last:
                acc, acc_sd = _mean_std(last[rule, mode], "balanced_accuracy")
                ax.errorbar([epochs[-1]], [acc], yerr=[acc_sd], marker="o", ms=5, color=colour, capsize=2,
                            lw=1, ls="none", mfc="white", label=f"{label}: test, last epoch")
                numbers.setdefault(mode, ["—"]).append(f"{acc:.3f}")
                shown.append(acc - acc_sd)
        rows = [(label, colour, numbers[mode]) for mode, label, colour in MODES if mode in numbers]
        ax.text(0.99, 0.03 + 0.07 * len(rows), "test     selected   last", transform=ax.transAxes, ha="right",
                fontsize=7, family="monospace")
        for j, (label, colour, values) in enumerate(rows):  # the numbers behind the points, lower right
            ax.text(0.99, 0.03 + 0.07 * (len(rows) - 1 - j), f"{label:<17s}" + "  ".join(f"{v:>7s}" for v in values),
                    transform=ax.transAxes, ha="right", fontsize=7, family="monospace", color=colour)
        ax.set_xlabel("epoch", fontsize=8.5)
        low = min(shown, default=0.0)  # zoom in where every score is high (the color rule)
        ax.set_ylim(0.0 if low < 0.6 else np.floor((low - 0.02) * 20) / 20, 1.005 if low >= 0.6 else 1.03)
        ax.set_ylabel("balanced accuracy", fontsize=8.5)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
        counts = sorted({len(curves[rule][mode]) for mode, _, _ in MODES if curves[rule][mode]})
        folds_text = (f"mean over {counts[0]} folds" if counts[0] > 1 else "1 fold") if len(counts) == 1 \
            else f"{counts[0]}-{counts[-1]} folds"
        ax.set_title(f"Decoy MNIST {RULE_TITLES.get(rule, rule)}, {folds_text}", fontsize=9, loc="left")
    found = {}
    for ax in axes[0]:  # one legend for all panels, below them, a column per mode
        for handle, text in zip(*ax.get_legend_handles_labels()):
            found.setdefault(text, handle)
    labelled = {text: found[text] for _, label, _ in MODES
                for text in (f"{label}: validation", f"{label}: test, selected model", f"{label}: test, last epoch")
                if text in found}
    fig.legend(labelled.values(), labelled.keys(), fontsize=6.5, frameon=False, loc="lower center", ncol=3)
    fig.suptitle("Validation images carry the training rule's decoys, test images random ones.\n"
                 "Test: the selected model at its mean epoch, and the network after the last epoch; "
                 "error bars ± std over folds", fontsize=7.5, y=0.995)
    fig.tight_layout(rect=(0, 0.04 + 0.045 * ((len(labelled) + 2) // 3), 1, 0.95))
    fig.savefig(Path(__file__).with_suffix(".png"), dpi=150)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, help="the compare --out directory: export its curves first")
    args = parser.parse_args()
    if args.runs:
        export(args.runs)
    draw()

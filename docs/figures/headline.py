"""The README's figure, drawn from the committed result tables (no training):

    python docs/figures/headline.py      # -> docs/figures/headline.png

Test balanced accuracy and Saliency overlap with the decoy mask, without and with feedback, mean ± std
over 3 folds: the [000] position and color rules (experiments/results/protocol/protocol_summary.csv)
and the [001] four-corner rule after fine-tuning on 0.4% of the training images
(experiments/results/finetune/finetune_std_summary.csv). Commands: docs/results/protocol.md and
docs/results/finetune.md.
"""
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results"


def rows(path):
    with open(path) as f:
        return {(r["name"], r["mode"]): r for r in csv.DictReader(f)}


protocol = rows(RESULTS / "protocol" / "protocol_summary.csv")
corners = rows(RESULTS / "finetune" / "finetune_std_summary.csv")
groups = [("position rule [000]\n(trained)", protocol, "decoy_mnist_position"),
          ("color rule [000]\n(trained)", protocol, "decoy_mnist_color"),
          ("four corners [001]\n(fine-tuned)", corners, "decoy_mnist_corners")]
panels = [("balanced_accuracy", "test balanced accuracy", (0.5, 1.0)),
          ("overlap_saliency", "Saliency overlap with the mask\n(lower is better)", (0.0, None))]
modes = [("none", "without feedback", "#9e9e9e"), ("feedback", "with feedback", "#e66100")]

fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.2))
for ax, (key, ylabel, ylim) in zip(axes, panels):
    for j, (mode, label, colour) in enumerate(modes):
        xs = [i + (j - 0.5) * 0.38 for i in range(len(groups))]
        means = [float(table[(name, mode)][f"{key}_mean"]) for _, table, name in groups]
        stds = [float(table[(name, mode)][f"{key}_std"]) for _, table, name in groups]
        ax.bar(xs, means, 0.36, yerr=stds, capsize=3, color=colour, label=label)
        for x, m, s in zip(xs, means, stds):
            ax.text(x, m + s, f"{m:.3f}", ha="center", va="bottom", fontsize=6.5)
    ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=7.5)
    ax.set_ylabel(ylabel, fontsize=8.5)
    ax.set_ylim(*ylim)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(axis="y", labelsize=8)
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, fontsize=8, frameon=False, loc="upper right", ncol=2)
fig.suptitle("Decoy MNIST, LeNet, mean ± std over 3 folds", fontsize=9.5, x=0.02, ha="left")
fig.tight_layout(rect=(0, 0, 1, 0.93))
fig.savefig(Path(__file__).with_suffix(".png"), dpi=150)

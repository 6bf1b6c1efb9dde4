"""What a trained network reads on Decoy MNIST's position rule: the digit, or where a square sits.

    python experiments/position_probe.py --runs results/paper_budget/decoy_mnist_position \
        [--images 2000] [--json experiments/results/paper_budget/position_probe.json]

Under the position rule the square's *position* names the class in training (grey random). The
probe takes the first ``--images`` test digits, draws for each a wrong label k ((y + 1 + r) mod 10),
and shows every selected model (``RUNS/<mode>/fold<k>/model.pt``) three versions of each digit:

  grey square at k     the training rule's square at k's position (random grey): the decoy-swap set
  noise square at k    the same square filled with U(0, 1) noise, what the counterexamples
                       baseline (``augment``) trains on
  no square            the digit alone

and reports, mean ± std over folds, the accuracy of the network at its posterior mean and how often
it answers k. A network that
reads the square's position answers k whatever fills the square.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pyro_ebnn.bnn.predictive import mean_probs
from pyro_ebnn.data.decoy import add_decoys
from pyro_ebnn.data.mnist import load_mnist
from pyro_ebnn.experiment.rundir import load_model

MODES = ("none", "feedback", "augment")


def probe_images(digits: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, dict]:
    """The wrong labels k and the three versions of ``digits`` (uint8 N x 28 x 28), float N x 1 x 28 x 28."""
    rng = np.random.default_rng(seed)
    k = (labels + 1 + rng.integers(0, 9, len(labels))) % 10
    grey, square = add_decoys(digits, k, "position", train=True, seed=seed + 1)  # the square at k's position
    noise = np.where(square, rng.random(grey.shape, dtype=np.float32), grey)
    return k, {"grey square at k": grey, "noise square at k": noise,
               "no square": (digits[:, None] / 255.0).astype(np.float32)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="the rule's directory of compare runs: MODE/foldK/")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, _, digits, labels = load_mnist(None, "auto")
    digits, labels = digits[: args.images], labels[: args.images].astype(np.int64)
    k, versions = probe_images(digits, labels)
    rows = []
    print("| mode | digits shown | folds | accuracy | answers k |")
    print("|---|---|---|---|---|")
    for mode in MODES:
        folds = sorted((args.runs / mode).glob("fold*/model.pt"))
        if not folds:
            continue
        scores = {name: [] for name in versions}
        for path in folds:
            model, _, _ = load_model(path.parent, "cpu")
            for name, x in versions.items():
                pred = mean_probs(model, torch.from_numpy(x)).argmax(-1).numpy()
                scores[name].append(((pred == labels).mean(), (pred == k).mean()))
        for name, s in scores.items():
            s = np.array(s)
            row = {"mode": mode, "digits": name, "folds": len(s), "accuracy_mean": s[:, 0].mean(),
                   "accuracy_std": s[:, 0].std(ddof=1), "answers_k_mean": s[:, 1].mean(),
                   "answers_k_std": s[:, 1].std(ddof=1)}
            rows.append(row)
            print(f"| {mode} | {name} | {len(s)} | {row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f} "
                  f"| {row['answers_k_mean']:.3f} ± {row['answers_k_std']:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"images": args.images, "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()

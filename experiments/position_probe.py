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
it answers k. A network that reads the square's position answers k whatever fills the square.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pyro_ebnn.baselines import replace_with_noise
from pyro_ebnn.bnn.predictive import mean_probs
from pyro_ebnn.data.decoy import add_decoys
from pyro_ebnn.data.mnist import load_mnist
from pyro_ebnn.experiment.rundir import load_model
from pyro_ebnn.experiment.tables import mean_std

MODES = ("none", "feedback", "augment")


def probe_images(digits: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, dict]:
    """The wrong labels k and the three versions of ``digits`` (uint8 N x 28 x 28) as float tensors
    N x 1 x 28 x 28 in [0, 1]; the noise is the counterexamples baseline's own (``replace_with_noise``)."""
    rng = np.random.default_rng(seed)
    k = (labels + 1 + rng.integers(0, 9, len(labels))) % 10
    grey, square = add_decoys(digits, k, "position", train=True, seed=seed + 1)  # the square at k's position
    grey, square = torch.from_numpy(grey), torch.from_numpy(square)
    noise = replace_with_noise(grey, square, generator=torch.Generator().manual_seed(seed))
    return k, {"grey square at k": grey, "noise square at k": noise,
               "no square": torch.from_numpy(digits[:, None] / 255.0).float()}


def selected_models(runs: Path) -> dict:
    """mode -> the fold directories under ``runs`` that hold a selected model; stops with one line if
    there are none or they were not trained on the position rule."""
    found = {mode: sorted(p.parent for p in (runs / mode).glob("fold*/model.pt")) for mode in MODES}
    found = {mode: dirs for mode, dirs in found.items() if dirs}
    if not found:
        raise SystemExit(f"no runs under {runs}: expected {runs}/<{'|'.join(MODES)}>/fold<k>/model.pt, "
                         "the directory of one rule in a compare --out")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="the rule's directory of compare runs: MODE/foldK/")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = selected_models(args.runs)
    models = {mode: [load_model(d, "cpu") for d in dirs] for mode, dirs in runs.items()}
    cfg = next(iter(models.values()))[0][1]
    rules = {(c.dataset, c.rule) for ms in models.values() for _, c, _ in ms}
    if rules != {("decoy_mnist", "position")}:
        raise SystemExit(f"the runs under {args.runs} were trained on {sorted(rules)}; the probe needs "
                         "Decoy MNIST's position rule")
    _, _, digits, labels = load_mnist(cfg.data_dir, cfg.source)
    digits, labels = digits[: args.images], labels[: args.images].astype(np.int64)
    k, versions = probe_images(digits, labels)
    rows = []
    print("| mode | digits shown | folds | accuracy | answers k |")
    print("|---|---|---|---|---|")
    for mode, fold_models in models.items():
        scores = {name: [] for name in versions}
        for model, _, _ in fold_models:
            for name, x in versions.items():
                pred = mean_probs(model, x).argmax(-1).numpy()
                scores[name].append(((pred == labels).mean(), (pred == k).mean()))
        for name, s in scores.items():
            (acc, acc_mean, acc_std), (ans, ans_mean, ans_std) = (mean_std([v[i] for v in s]) for i in (0, 1))
            rows.append({"mode": mode, "digits": name, "folds": len(s), "accuracy_mean": acc_mean,
                         "accuracy_std": acc_std, "answers_k_mean": ans_mean, "answers_k_std": ans_std})
            print(f"| {mode} | {name} | {len(s)} | {acc} | {ans} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"images": args.images, "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()

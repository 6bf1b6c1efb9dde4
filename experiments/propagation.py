"""How well a region marked on one image is found again in the others ("mark once, find
everywhere", pyro_ebnn/annotate/discovery.py), on the Decoy MNIST start models of
experiments/learning_curves.py (docs/results/annotation.md, "Marking a shortcut once").

    python experiments/propagation.py --root results/annotation --out experiments/results/annotation

Per rule: a pool of ``--pool`` training images (seed 0); for each of ``--sources`` source images
(drawn with seed 1), one decoy square of its true mask (the first of its connected components) is
the mark, propagated by ``pixels`` and ``features`` at several thresholds to every other pool
image. Per threshold, over the sources: recall (the share of the other images' true-mask pixels
that are marked), precision (the share of the marked pixels on a true mask) and the share of
images that get a mask. One process, one thread.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from skimage.measure import label

from pyro_ebnn.annotate import AnnotationTask
from pyro_ebnn.annotate.discovery import propagate_features, propagate_pixels

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def measure(run: Path, pool: int, sources: int) -> dict:
    task = AnnotationTask(run, pool=pool, samples=2, seed=0)
    discovery = task.discovery()
    data = discovery._loaded()
    indices = discovery.indices
    truth = np.stack([task.true_mask(i) for i in indices])
    images = np.stack([task.image(i) for i in indices])
    chosen = np.random.default_rng(1).choice(np.flatnonzero(truth.reshape(len(truth), -1).any(1)), sources,
                                             replace=False)
    result = {}
    for rule in ("pixels", "features"):
        result[rule] = {}
        for threshold in THRESHOLDS:
            recall, precision, reached = [], [], []
            for s in chosen:
                mark = label(truth[s]) == 1
                others = np.arange(len(indices)) != s
                if rule == "pixels":
                    found = propagate_pixels(mark, images[s], images[others], indices[others], threshold)
                else:
                    found = propagate_features(mark, data["features"][s], data["features"][others], indices[others],
                                               data["centres"], threshold, center=data["features"].mean(dim=(0, 2, 3)))
                marked = np.zeros_like(truth[others])
                row = {int(i): r for r, i in enumerate(indices[others])}
                for index, mask, *_ in found:
                    marked[row[index]] = mask
                hit = (marked & truth[others]).sum()
                recall.append(hit / truth[others].sum())
                precision.append(hit / marked.sum() if marked.any() else np.nan)
                reached.append(marked.reshape(len(marked), -1).any(1).mean())
            result[rule][str(threshold)] = {"recall": float(np.mean(recall)), "precision": float(np.nanmean(precision)),
                                            "images_reached": float(np.mean(reached)), "sources": int(sources)}
    result["centres"] = data["centres"]
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="the learning-curve root with <rule>/base start models")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rules", default="corners,position")
    ap.add_argument("--pool", type=int, default=500)
    ap.add_argument("--sources", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    found = {rule: measure(Path(args.root) / rule / "base", args.pool, args.sources) for rule in args.rules.split(",")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "propagation.json").write_text(json.dumps(found, indent=1))
    for rule, by_rule in found.items():
        for method in ("pixels", "features"):
            for threshold, m in by_rule[method].items():
                print(f"{rule} {method} {threshold}: recall {m['recall']:.3f}, precision {m['precision']:.3f}, "
                      f"images reached {m['images_reached']:.3f}")


if __name__ == "__main__":
    sys.exit(main())

"""How well the regions proposed to an annotator find a shortcut on one image, per proposal method
(docs/results/annotation.md, "Proposals").

    python experiments/shortcut_photos.py --task photos --out data/photos      # the photo task, once
    python experiments/proposal_iou.py --root results/proposals --out experiments/results/annotation

Tasks, each with a start model trained without feedback (one process, one thread; a finished model
is kept):

- ``corners``, ``position``: the Decoy MNIST start models of ``experiments/learning_curves.py``
  (the same configs, 20,000 train+val images, 3 and 30 epochs, selected on validation images
  carrying the training rule's decoys);
- ``photos``: ``configs/image_folder_small.yaml`` on ``data/photos`` (a 12-px magenta square on
  every training image of one class), ``--set lam=1e-5``, mode none, 5 epochs;
- further photo tasks, built by ``shortcut_photos.py --task TASK --out data/TASK`` and trained as
  ``photos``: ``moving`` (128 px read at 64, a 16-px cyan square anywhere), ``corner`` (64 px, a
  10-px green square in a corner) and ``textures`` (grey 64 px, a 10-px red square in a corner).
  The blobs' settings were chosen looking at corners, position, photos and moving; corner and
  textures are held out.

Images: the training images of the start model's fold that carry a decoy. Each is explained as the
annotation page explains it: W = Grad-CAM⁺ x saliency⁺ at the posterior mean, for the class the
posterior predictive (20 samples) predicts. **The explanation rests on the decoy** where at least
``--rests`` (0.5) of W's mass lies inside the true mask. Up to ``--images`` (500) such images are
drawn at random, and as many from all images with a decoy.

Per image and proposal method (``thesis``: [002] §4.2 at keep_mass 0.2, what ``annotate`` proposed
before, and at 0.5; ``blobs``: :func:`~pyro_ebnn.explain.regions.blob_regions`, grown to fine
superpixels and not):

- best IoU: the largest IoU of one proposal with one decoy (a connected component of the true
  mask: the corners rule has four); an image without a proposal counts 0;
- oracle IoU: the IoU of the union of the proposals that touch the true mask (what ``annotate
  --oracle candidates`` marks) with the whole true mask (0 where none touches it);
- coverage: whether the image has a proposal; proposals: how many.

Writes ``proposal_iou.csv`` (one row per task, image set and method: mean and std over images) and
``proposal_iou.json`` (the same with the settings and the share of images whose explanation rests
on the decoy) to ``--out``; explanation maps are cached under ``--root``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.measure import label

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_curves  # noqa: E402

from pyro_ebnn.bnn import predictive_probs  # noqa: E402
from pyro_ebnn.data import batches, load_dataset  # noqa: E402
from pyro_ebnn.experiment.config import load_config  # noqa: E402
from pyro_ebnn.experiment.protocol import set_seed, training_indices, use_threads  # noqa: E402
from pyro_ebnn.experiment.rundir import METRICS, load_model  # noqa: E402
from pyro_ebnn.experiment.runs import train  # noqa: E402
from pyro_ebnn.explain import explained_network  # noqa: E402
from pyro_ebnn.explain.regions import attribution_maps, proposal_regions, region_iou  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("corners", "position", "photos", "moving", "corner", "textures")
#: the start model of a photo task (data_dir: data/<task>)
PHOTOS = ("configs/image_folder_small.yaml", {"lam": 1e-5, "mode": "none", "epochs": 5, "threads": 1,
                                              "eval_samples": 5, "max_test_images": 1000})
#: the methods compared: name -> proposal_regions keywords
METHODS = {
    "thesis (keep_mass 0.2)": {"proposals": "thesis"},
    "thesis (keep_mass 0.5)": {"proposals": "thesis", "keep_mass": 0.5},
    "blobs, not grown": {"proposals": "blobs", "grow": False},
    "blobs (grown to superpixels)": {"proposals": "blobs"},
}
SAMPLES = 20


def log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def start_model(root: Path, task: str) -> Path:
    if task in learning_curves.RULES:
        return learning_curves.start_model(root, task)
    out = root / task / "base"
    if not (out / METRICS).exists():
        log(f"{task}: training the start model")
        path, sets = PHOTOS
        train(load_config(str(ROOT / path), {**sets, "data_dir": f"data/{task}"}), out, progress=False)
    return out


def explanations(root: Path, task: str) -> dict:
    """The training images with a decoy: indices, predicted class, Grad-CAM, saliency, W's share
    inside the true mask (cached in ``explanations.npz``)."""
    path = root / task / "explanations.npz"
    if path.exists():
        return dict(np.load(path))
    base = start_model(root, task)
    model, cfg, _ = load_model(base)
    use_threads(1)
    trainval, sets = load_dataset(cfg)
    indices = training_indices(cfg, trainval, sets)
    masks = torch.cat([m for _, _, m in batches(trainval, 1000, indices)])[:, 0] > 0
    indices = indices[masks.flatten(1).any(1).numpy()]
    log(f"{task}: explaining {len(indices)} training images with a decoy")
    x = torch.cat([x for x, _, _ in batches(trainval, 1000, indices)])
    truth = torch.cat([m for _, _, m in batches(trainval, 1000, indices)])[:, 0] > 0
    set_seed(0)
    predicted = predictive_probs(model, x, SAMPLES).mean(0).argmax(-1)
    net = explained_network(model.net, "mean")
    gradcam, saliency = [], []
    for start in range(0, len(x), 250):
        g, s = attribution_maps(net, x[start:start + 250], predicted[start:start + 250])
        gradcam.append(g[:, 0].float())
        saliency.append(s.float())
    gradcam, saliency = torch.cat(gradcam), torch.cat(saliency)
    w = gradcam.clamp(min=0) * saliency.clamp(min=0).sum(1)
    share = (w * truth).flatten(1).sum(1) / w.flatten(1).sum(1).clamp(min=1e-30)
    found = {"indices": indices, "predicted": predicted.numpy(), "gradcam": gradcam.numpy(),
             "saliency": saliency.numpy(), "share": share.numpy(), "images": x.numpy(), "truth": truth.numpy()}
    np.savez_compressed(path, **found)
    return found


def measure(image, gradcam, saliency, truth, options: dict) -> dict:
    """Best IoU, oracle IoU and proposal count of one method on one image."""
    regions = proposal_regions(image, gradcam, saliency, **options)
    proposals = [regions.segments == i for i in regions.ids]
    decoys = label(truth, connectivity=1)
    best = max((float(region_iou(p, decoys == d)) for p in proposals for d in range(1, decoys.max() + 1)),
               default=0.0)
    touching = [p for p in proposals if (p & truth).any()]
    oracle = float(region_iou(np.any(touching, 0), truth)) if touching else 0.0
    return {"best_iou": best, "oracle_iou": oracle, "proposals": len(proposals)}


def evaluate(root: Path, task: str, images: int, rests: float, seed: int) -> list[dict]:
    found = explanations(root, task)
    share = found["share"]
    rng = np.random.default_rng(seed)
    sets = {f"rests on the decoy (share >= {rests:g})": np.flatnonzero(share >= rests),
            "every image with a decoy": np.arange(len(share))}
    rows = []
    for name, candidates in sets.items():
        chosen = np.sort(rng.choice(candidates, size=min(images, len(candidates)), replace=False))
        for method, options in METHODS.items():
            t0 = time.time()
            per_image = [measure(found["images"][i], found["gradcam"][i], found["saliency"][i], found["truth"][i],
                                 options) for i in chosen]
            values = {k: np.array([r[k] for r in per_image], float) for k in per_image[0]} if per_image else {}
            row = {"task": task, "images": name, "method": method, "n_images": int(len(chosen)),
                   "of_images": int(len(candidates)), "training_images_with_decoy": int(len(share)),
                   "seconds_per_image": (time.time() - t0) / max(1, len(chosen))}
            for key in ("best_iou", "oracle_iou", "proposals"):
                row[key] = float(values[key].mean()) if per_image else float("nan")
                row[f"{key}_std"] = float(values[key].std()) if per_image else float("nan")
            row["coverage"] = float((values["proposals"] > 0).mean()) if per_image else float("nan")
            rows.append(row)
            log(f"{task} / {name} / {method}: best IoU {row['best_iou']:.3f} ± {row['best_iou_std']:.3f}, "
                f"oracle IoU {row['oracle_iou']:.3f}, coverage {row['coverage']:.3f}, "
                f"{row['proposals']:.1f} proposals ({len(chosen)} images)")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="results/proposals", help="start models and cached explanations")
    parser.add_argument("--out", default="experiments/results/annotation", help="where the CSV and JSON go")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--images", type=int, default=500, help="images per task and image set")
    parser.add_argument("--rests", type=float, default=0.5,
                        help="the share of the explanation's mass inside the true mask above which it rests on the decoy")
    parser.add_argument("--seed", type=int, default=0, help="seeds the draw of the images")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root, out = Path(args.root), Path(args.out)
    rows, shares = [], {}
    for task in args.tasks.split(","):
        rows += evaluate(root, task, args.images, args.rests, args.seed)
        share = explanations(root, task)["share"]
        shares[task] = {"training_images_with_decoy": int(len(share)), "rests_on_decoy": float((share >= args.rests).mean()),
                        "share_median": float(np.median(share)), "share_quartiles": np.quantile(share, [0.25, 0.75]).tolist()}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "proposal_iou.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    settings = {"rests": args.rests, "images": args.images, "seed": args.seed, "samples": SAMPLES,
                "methods": METHODS, "photos": PHOTOS, "rules": {k: v[1] for k, v in learning_curves.RULES.items()},
                "data": learning_curves.DATA}
    (out / "proposal_iou.json").write_text(json.dumps({"settings": settings, "explanation_share": shares, "rows": rows},
                                                      indent=2, default=str))
    log(f"wrote {out / 'proposal_iou.csv'} and {out / 'proposal_iou.json'}")


if __name__ == "__main__":
    main()

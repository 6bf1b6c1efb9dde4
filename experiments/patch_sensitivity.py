"""How much a trained network still reacts to a task's coloured patch, and through which cells.

For a task written by ``experiments/shortcut_photos.py`` and run directories trained on it, the
test images *without* a patch are read, the task's patch (its colour, its size scaled to the
network's input size, its placement rule) is pasted on each at a random place, and for every run:

* accuracy on the clean images and with the patch, per class;
* the mean change of p(class 0) (the class the patch predicts in training) that the patch causes;
* the same change when the patch's cells of the last convolution are zeroed afterwards: only the
  cells of its adaptive-max-pool bins (``mask_pool: max``) or every cell whose receptive field
  holds a patch pixel (``mask_pool: receptive``); what is left is what the network reads from
  the cells that feedback with that pool does not silence;
* the change of p(class 0) when, on the clean image, the patch's ``max`` cells are zeroed with no
  patch pasted: does the head read a hole in the last convolution (what the evidence leaves on the
  marked cells of class 0's training images) as class 0?
* the mean |pre-activation| of the last convolution on the patch's cells against elsewhere
  (posterior-mean network): does feedback make the convolution blind to the patch, or quiet
  everywhere?

    python experiments/patch_sensitivity.py --task-dir data/moving \
        --run none=results/own_images/moving/image_folder_small/none/fold0 \
        --run feedback=results/own_images/moving/image_folder_small/feedback/fold0 --out results/patch_moving.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pyro_ebnn.bnn.evidence import downsize_mask
from pyro_ebnn.bnn.nets import run_lrt
from pyro_ebnn.data.base import batches
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.protocol import prepare_split
from pyro_ebnn.experiment.rundir import CONFIG, load_model


def pasted(images: torch.Tensor, task: dict, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``images`` with the task's patch pasted at a random place each, and the patch's pixels."""
    size = images.shape[-1]
    side = max(1, round(task["patch"] * size / task["size"]))
    colour = torch.tensor(task["colour"], dtype=torch.float32).view(3, 1, 1) / 255
    rng = np.random.default_rng(seed)
    out, where = images.clone(), torch.zeros(len(images), 1, size, size, dtype=torch.bool)
    for i in range(len(images)):
        if task["placement"] == "corner":
            c = rng.integers(4)
            top, left = (0 if c < 2 else size - side), (0 if c % 2 == 0 else size - side)
        else:
            top, left = rng.integers(0, size - side + 1), rng.integers(0, size - side + 1)
        out[i, :, top:top + side, left:left + side] = colour
        where[i, :, top:top + side, left:left + side] = True
    return out, where


def sensitivity(run: Path, x: torch.Tensor, y: torch.Tensor, xp: torch.Tensor, where: torch.Tensor) -> dict:
    model, _, _ = load_model(run)
    net = model.net.eval()
    with torch.no_grad():
        clean = net.evidence_layer(run_lrt(net.body, x))
        patched = net.evidence_layer(run_lrt(net.body, xp))
        p = lambda a: torch.softmax(net.classify(a), -1)
        p_clean, p_patch = p(clean), p(patched)
        cells = {"max": downsize_mask(where, tuple(clean.shape[-2:]), "max"), "receptive": net.receptive_field_cells(where)}
        zeroed = {k: p(patched * ~c) for k, c in cells.items()}
        hole = p(clean * ~cells["max"])  # no patch, its cells zeroed: what the head makes of a hole
        size = patched.abs()
        on = cells["max"].expand_as(size)
        seen = cells["receptive"].expand_as(size)
    acc = lambda probs, sel: float((probs[sel].argmax(1) == y[sel]).float().mean())
    row = {"accuracy clean": acc(p_clean, y >= 0), "accuracy with patch": acc(p_patch, y >= 0)}
    for k in range(int(y.max()) + 1):
        row[f"class {k}: clean → patch"] = f"{acc(p_clean, y == k):.3f} → {acc(p_patch, y == k):.3f}"
    row["shift of p(class 0)"] = float((p_patch[:, 0] - p_clean[:, 0]).mean())
    for k, probs in zeroed.items():
        row[f"shift, {k} cells zeroed"] = float((probs[:, 0] - p_clean[:, 0]).mean())
    row["shift, hole only (no patch, max cells zeroed)"] = float((hole[:, 0] - p_clean[:, 0]).mean())
    row["mean absolute pre-activation away from the patch"] = float(size[~seen].mean())
    row["mean absolute pre-activation, patch cells / elsewhere"] = float(size[on].mean() / size[~seen].mean())
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task-dir", required=True, help="a folder written by experiments/shortcut_photos.py")
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR, repeated")
    parser.add_argument("--out", help="a Markdown table (default: print it)")
    args = parser.parse_args(argv)
    task = json.loads((Path(args.task_dir) / "shortcut_photos.json").read_text())
    runs = dict(r.split("=", 1) for r in args.run)
    cfg = load_config(str(Path(next(iter(runs.values()))) / CONFIG))
    test = prepare_split(cfg, progress=False).test
    x, y, m = (torch.cat(t) for t in zip(*batches(test, 4096)))
    unmarked = ~m.flatten(1).any(1)
    x, y = x[unmarked], y[unmarked]
    xp, where = pasted(x, task)
    rows = {name: sensitivity(Path(run), x, y, xp, where) for name, run in runs.items()}
    keys = list(next(iter(rows.values())))
    fmt = lambda v: f"{v:+.3f}" if isinstance(v, float) and "shift" in k else (f"{v:.3f}" if isinstance(v, float) else v)
    lines = [f"{len(x)} test images without a patch; patch pasted at random ({task['placement']}), "
             f"{task['patch']} px at {task['size']} px", "", "| | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(fmt(rows[n][k]) for n in rows) + " |")
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

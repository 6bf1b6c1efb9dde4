"""The own-images study's tables: none against feedback per task, the shortcut report, lam: auto.

    python experiments/own_images_table.py --root results/own_images --out experiments/results/own_images

Reads every ``metrics.json`` under ``ROOT/<task>/`` (as ``compare --out ROOT/<task>`` writes them)
and writes ``OUT/summary.md`` and ``OUT/runs.csv``:

* per task, mean ± std over runs (folds, and seeds when ``--root`` is repeated) of the test balanced
  accuracy without and with feedback and the difference (paired by fold and seed), the worst-group accuracy (class x marked), the saliency
  overlap with the marked region when it was computed;
* the shortcut report per task and mode: every group's accuracy, mean over folds;
* ``lam: auto``: the value chosen per fold (per image, g), and the time the search added: the
  feedback run's training seconds against the same fold's run without feedback;
* with ``--ceiling CEILING``: the runs without feedback under ``CEILING/<task>/`` trained on the same
  task built with ``shortcut_photos.py --clean-train`` (no square in training): what the task allows
  without the shortcut, the shortcut's cost to the run without feedback (ceiling − none) and what
  feedback leaves of it (ceiling − feedback), paired by fold.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path

from pyro_ebnn.experiment.tables import mean_std
from pyro_ebnn.metrics import groups_of

ROW_KEYS = ("task", "mode", "fold", "seed", "balanced_accuracy", "worst_group_accuracy", "worst_group", "overlap_saliency",
            "lam", "lam_per_image", "train_seconds", "search_seconds", "best_epoch")


def runs_of(root: Path) -> list[dict]:
    rows = []
    for path in sorted(root.glob("*/*/*/fold*/metrics.json")):
        m = json.loads(path.read_text())
        task = path.relative_to(root).parts[0]
        search = m.get("lam_search") or {}
        rows.append({"task": task, "mode": m["mode"], "fold": m["fold"], "seed": m.get("seed", 0),
                     "run": (m["fold"], m.get("seed", 0)), "metrics": m,
                     **{k: m.get(k) for k in ("balanced_accuracy", "worst_group_accuracy", "worst_group",
                                               "overlap_saliency", "lam", "train_seconds", "best_epoch")},
                     "lam_per_image": search.get("per_image"), "search_seconds": search.get("seconds")})
    return rows


def summary(rows: list[dict]) -> str:
    by = defaultdict(dict)
    for r in rows:
        by[r["task"]].setdefault(r["mode"], {})[r["run"]] = r
    lines = ["| task | runs | no feedback | feedback | difference (paired) | worst group: none → feedback | "
             "saliency overlap: none → feedback |", "|---|---|---|---|---|---|---|"]
    for task, modes in by.items():
        none, fb = modes.get("none", {}), modes.get("feedback", {})
        folds = sorted(set(none) & set(fb))
        diff = [fb[f]["balanced_accuracy"] - none[f]["balanced_accuracy"] for f in folds]
        cell = lambda rs, k: mean_std([r[k] for r in rs.values()])[0]
        lines.append(f"| {task} | {len(folds)} | {cell(none, 'balanced_accuracy')} | {cell(fb, 'balanced_accuracy')} | "
                     f"{mean_std(diff)[0] if diff else 'n/a'} | {cell(none, 'worst_group_accuracy')} → "
                     f"{cell(fb, 'worst_group_accuracy')} | {cell(none, 'overlap_saliency')} → "
                     f"{cell(fb, 'overlap_saliency')} |")
    lines += ["", "### The shortcut report: test accuracy per group, mean over folds", "",
              "| task | mode | " + "group (class, marked or not): accuracy |", "|---|---|---|"]
    for task, modes in by.items():
        for mode in ("none", "feedback"):
            groups = defaultdict(list)
            for r in modes.get(mode, {}).values():
                for c, state, acc, _ in groups_of(r["metrics"]):
                    groups[f"{c}, {state}"].append(acc)
            if groups:
                lines.append(f"| {task} | {mode} | " + "; ".join(f"{g} {statistics.fmean(v):.3f}"
                                                             for g, v in groups.items()) + " |")
    lines += ["", "### lam: auto", "", "| task | λ per image chosen (runs) | λ chosen (runs) | search and training, s "
              "(feedback) | training, s (no feedback) | ratio |", "|---|---|---|---|---|---|"]
    for task, modes in by.items():
        fb, none = modes.get("feedback", {}), modes.get("none", {})
        if not fb:
            continue
        folds = sorted(fb)
        t_fb = [fb[f]["train_seconds"] + (fb[f]["search_seconds"] or 0) for f in folds]
        t_none = [none[f]["train_seconds"] for f in folds if f in none]
        ratio = statistics.fmean(t_fb) / statistics.fmean(t_none) if t_none else float("nan")
        chosen = ", ".join(f"{fb[f]['lam_per_image']:g}" for f in folds if fb[f]["lam_per_image"] is not None)
        lams = ", ".join(f"{fb[f]['lam']:.2g}" for f in folds if fb[f]["lam"] is not None)
        lines.append(f"| {task} | {chosen} | {lams} | "
                     f"{statistics.fmean(t_fb):.0f} | {statistics.fmean(t_none) if t_none else float('nan'):.0f} | "
                     f"{ratio:.2f} |")
    return "\n".join(lines) + "\n"


def ceiling_table(rows: list[dict], clean: list[dict]) -> str:
    """The ceiling section: per task, none, feedback and clean training, with paired differences."""
    acc = defaultdict(dict)
    for r in rows:
        acc[(r["task"], r["mode"])][r["run"]] = r["balanced_accuracy"]
    for r in clean:
        acc[(r["task"], "clean")][r["fold"]] = r["balanced_accuracy"]  # paired with every seed of its fold
    lines = ["### The ceiling: no square in training", "",
             "| task | runs | no feedback | feedback | clean training (ceiling) | shortcut's cost: ceiling − none | "
             "left by feedback: ceiling − feedback |", "|---|---|---|---|---|---|---|"]
    for task in sorted({t for t, m in acc if m == "clean"}):
        none, fb, top = acc[(task, "none")], acc[(task, "feedback")], acc[(task, "clean")]
        top = {run: top[run[0]] for run in none if run[0] in top}
        folds = sorted(set(none) & set(fb) & set(top))
        if not folds:
            continue
        cell = lambda d: mean_std([d[f] for f in folds])[0]
        paired = lambda a, b: mean_std([a[f] - b[f] for f in folds])[0]
        lines.append(f"| {task} | {len(folds)} | {cell(none)} | {cell(fb)} | {cell(top)} | {paired(top, none)} | "
                     f"{paired(top, fb)} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, type=Path, action="append",
                   help="compare --out folders (repeat for runs of other seeds); runs pair by fold and seed")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--ceiling", type=Path, help="runs without feedback on the tasks built with --clean-train")
    a = p.parse_args(argv)
    rows = [r for root in a.root for r in runs_of(root)]
    if not rows:
        p.error(f"no runs under {', '.join(map(str, a.root))}/<task>/<name>/<mode>/fold<k>/metrics.json")
    a.out.mkdir(parents=True, exist_ok=True)
    text = summary(rows)
    if a.ceiling:
        clean = [r for r in runs_of(a.ceiling) if r["mode"] == "none"]
        if not clean:
            p.error(f"no runs under {a.ceiling}/<task>/<name>/none/fold<k>/metrics.json")
        text += "\n" + ceiling_table(rows, clean)
    (a.out / "summary.md").write_text(text)
    with open(a.out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROW_KEYS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(text)


if __name__ == "__main__":
    main()

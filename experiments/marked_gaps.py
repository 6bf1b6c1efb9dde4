"""How far each run's marked and unmarked test images of one class score apart, and which runs the
warning of :func:`pyro_ebnn.experiment.report.marked_gap_warning` names.

    python experiments/marked_gaps.py --root results/own_images --root results/untuned \\
        --out experiments/results/own_images/marked_gaps.md

Reads every ``metrics.json`` under ``ROOT/<task>/`` (as ``compare --out ROOT/<task>`` writes them)
and writes one table row per task and mode (the largest gap between a class's two groups, lowest and
highest over the runs, and how many runs warn) and one row per run.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from pyro_ebnn.experiment.report import MARKED_GAP, MARKED_GAP_P, marked_gap, marked_gap_warning


def gaps_of(root: Path) -> list[dict]:
    rows = []
    for path in sorted(root.glob("*/*/*/fold*/metrics.json")):
        m = json.loads(path.read_text())
        gap = marked_gap(m)
        if gap is None:
            continue
        rows.append({"task": path.relative_to(root).parts[0], "mode": m["mode"], "fold": m["fold"],
                     "seed": m.get("seed", 0), **gap, "warns": bool(marked_gap_warning(m, m["mode"]))})
    return rows


def table(rows: list[dict]) -> str:
    by = defaultdict(list)
    for r in rows:
        by[(r["task"], r["mode"])].append(r)
    lines = [f"Per run, the class whose test images with a marked region and without differ most in accuracy (a "
             f"class that warns first); the warning needs a gap of at least {MARKED_GAP} and p <= {MARKED_GAP_P:g} "
             "(Fisher's exact test, times the classes compared).", "",
             "| task | mode | runs | gap, lowest – highest | runs warned |", "|---|---|---|---|---|"]
    for (task, mode), rs in by.items():
        gaps = [r["gap"] for r in rs]
        lines.append(f"| {task} | {mode} | {len(rs)} | {min(gaps):.3f} – {max(gaps):.3f} | "
                     f"{sum(r['warns'] for r in rs)} |")
    lines += ["", "| task | mode | fold | seed | class | marked | unmarked | images | gap | p | warns |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['mode']} | {r['fold']} | {r['seed']} | {r['class']} | {r['marked']:.3f} | "
              f"{r['unmarked']:.3f} | {r['images_marked']} / {r['images_unmarked']} | {r['gap']:.3f} | "
              f"{r['p']:.1g} | {'yes' if r['warns'] else ''} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = [r for root in args.root for r in gaps_of(root)]
    if not rows:
        raise SystemExit(f"no run with marked and unmarked test images of one class under {', '.join(map(str, args.root))}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(rows))
    print(args.out.read_text().split("\n\n")[1])


if __name__ == "__main__":
    main()

"""Collect the metrics.json files of many runs into mean ± std tables (Markdown and CSV)."""
from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from .config import KEYS, saved_config

DEFAULT_COLUMNS = ("balanced_accuracy", "f1_macro", "roc_auc", "decoy_swap_accuracy")
#: the wider set: calibration (every run has it) and attribution overlap (runs evaluated with
#: ``evaluate`` or trained with ``eval_attributions: true``; "n/a" elsewhere)
WIDE_COLUMNS = DEFAULT_COLUMNS + ("nll", "brier", "ece", "plugin_ece", "mutual_information", "decoy_swap_ece",
                                  "overlap_saliency", "overlap_deeplift", "overlap_gradcam", "overlap_occlusion")
#: names usable in ``--columns`` in place of (or next to) metric keys, e.g. ``--columns wide``
COLUMN_SETS = {"default": DEFAULT_COLUMNS, "wide": WIDE_COLUMNS}


def expand_columns(columns) -> tuple:
    """Replace the names of column sets ("default", "wide") by their keys, keeping order, no repeats."""
    out = []
    for c in columns:
        for k in COLUMN_SETS.get(c, (c,)):
            if k not in out:
                out.append(k)
    return tuple(out)


def collect(root) -> list[dict]:
    runs = []
    for p in sorted(Path(root).rglob("metrics.json")):
        m = json.loads(p.read_text())
        m["_path"] = str(p.parent)
        runs.append(m)
    return runs


def mean_std(values):
    """``("mean ± std", mean, std)`` of the given numbers (sample std, 0 for one value), ignoring
    missing values and NaNs; ``("n/a", None, None)`` when none are left."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "n/a", None, None
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}", mean, std


def group_value(run: dict, key: str):
    """The value of ``key`` for grouping a run: a metric (``name``, ``mode``, ``fold`` ...), else the
    run's config key (``rho_init``, ``lr`` ...; a key the run's config lacks counts as its
    default). An unknown key is an error naming the keys there are."""
    if key in run:
        return run[key]
    if key in KEYS:
        return saved_config(run.get("config"))[key]
    raise ValueError(f"cannot group by {key!r}: it is neither a metric of the runs nor a config key "
                     f"(config keys: {', '.join(sorted(KEYS))})")


def summarize(runs, columns=DEFAULT_COLUMNS, by=("name", "mode")):
    columns = expand_columns(columns)
    groups = defaultdict(list)
    for r in runs:
        groups[tuple(group_value(r, k) for k in by)].append(r)
    rows = []
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        row = dict(zip(by, key))
        row["runs"] = len(rs)
        for c in columns:
            text, mean, std = mean_std([r.get(c) for r in rs])
            row[c] = text
            row[f"{c}_mean"], row[f"{c}_std"] = mean, std
        rows.append(row)
    return rows


def write_tables(rows, out_prefix, columns=DEFAULT_COLUMNS, by=("name", "mode")):
    columns = expand_columns(columns)
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    head = list(by) + ["runs"] + list(columns)
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        md.append("| " + " | ".join(str(r[h]) for h in head) + " |")
    text = "\n".join(md) + "\n"
    out_prefix.with_suffix(".md").write_text(text)
    fields = list(by) + ["runs"] + [f"{c}_{s}" for c in columns for s in ("mean", "std")]
    with open(out_prefix.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return text

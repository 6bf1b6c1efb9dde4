"""Collect metrics.json files of many runs into mean +- std tables (Markdown and CSV)."""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

DEFAULT_COLUMNS = ("balanced_accuracy", "f1_macro", "roc_auc", "decoy_swap_accuracy")


def collect(root) -> list[dict]:
    runs = []
    for p in sorted(Path(root).rglob("metrics.json")):
        m = json.loads(p.read_text())
        m["_path"] = str(p.parent)
        runs.append(m)
    return runs


def _fmt(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "n/a", None, None
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}", mean, std


def summarize(runs, columns=DEFAULT_COLUMNS, by=("name", "mode")):
    groups = defaultdict(list)
    for r in runs:
        groups[tuple(r.get(k) for k in by)].append(r)
    rows = []
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        row = dict(zip(by, key))
        row["runs"] = len(rs)
        for c in columns:
            text, mean, std = _fmt([r.get(c) for r in rs])
            row[c] = text
            row[f"{c}_mean"], row[f"{c}_std"] = mean, std
        rows.append(row)
    return rows


def write_tables(rows, out_prefix, columns=DEFAULT_COLUMNS, by=("name", "mode")):
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

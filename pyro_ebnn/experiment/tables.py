"""Collect the metrics.json files of many runs into mean ± std tables (Markdown and CSV)."""
from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from .config import KEYS, saved_config

DEFAULT_COLUMNS = ("balanced_accuracy", "worst_group_accuracy", "f1_macro", "roc_auc", "decoy_swap_accuracy")
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


def present(values) -> list:
    """The values that are there: neither missing (None) nor NaN."""
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def mean_std(values):
    """``("mean ± std", mean, std)`` of the given numbers (sample std, 0 for one value), ignoring
    missing values and NaNs; ``("n/a", None, None)`` when none are left."""
    values = present(values)
    if not values:
        return "n/a", None, None
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return _text(mean, std), mean, std


def _text(mean, std) -> str:
    return f"{mean:.3f} ± {std:.3f}"


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


def pooled_mean_std(parts):
    """``("mean ± std", mean, std, n)`` of all the values behind several summaries, each given as
    ``(n, mean, std)`` (its count, mean and sample std; std 0 for one value; parts with no mean
    are skipped). Exact, not an approximation: the pooled sum of squares is each part's own,
    ``(n - 1) std²``, plus its spread about the pooled mean, ``n (mean - pooled mean)²``.

    >>> text, mean, std, n = pooled_mean_std([(2, 0.5, 0.1), (1, 0.8, 0.0)])
    >>> text == mean_std([0.5 - 0.1 / 2 ** 0.5, 0.5 + 0.1 / 2 ** 0.5, 0.8])[0], n
    (True, 3)
    """
    parts = [(int(n), float(m), float(s or 0.0)) for n, m, s in parts if m is not None and int(n) > 0]
    n = sum(k for k, _, _ in parts)
    if not n:
        return "n/a", None, None, 0
    mean = sum(k * m for k, m, _ in parts) / n
    squares = sum((k - 1) * s ** 2 + k * (m - mean) ** 2 for k, m, s in parts)
    std = math.sqrt(squares / (n - 1)) if n > 1 else 0.0
    return _text(mean, std), mean, std, n


def read_summary(path, by=("name", "mode"), columns=()) -> list[dict]:
    """The rows of a summary CSV that ``aggregate`` wrote (its ``--by`` keys, ``runs``, and each
    column's ``_mean`` and ``_std``), to pool with further runs (``aggregate --with-summary``).
    A row counts as ``runs`` values in every column it has a mean for, so pool only summaries
    whose runs all have the columns pooled (as every run's test metrics and evaluated overlaps do).
    A summary without one of ``columns`` is refused: pooled, it would count only the new runs."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no summary table at {path}; give the .csv that aggregate wrote")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [k for k in (*by, "runs") if rows and k not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path} is not a summary table of aggregate --by {','.join(by)} "
                         f"(missing: {', '.join(missing) or 'every row'}); aggregate it with the same --by")
    lacking = [c for c in expand_columns(columns) if f"{c}_mean" not in rows[0]]
    if lacking:
        raise ValueError(f"{path} has no column {', '.join(lacking)}; leave it out of --columns or give a "
                         f"summary that has it")
    return rows


def _number(text):
    return float(text) if text not in (None, "", "None") else None


def summarize(runs, columns=DEFAULT_COLUMNS, by=("name", "mode"), earlier=()):
    """One row per value of ``by``: the mean ± std of every column over the runs, pooled with the
    rows of ``earlier`` summaries (``read_summary``) of the same group, as if their runs were here."""
    columns = expand_columns(columns)
    groups, keys = defaultdict(list), {}
    for r in runs:
        key = tuple(group_value(r, k) for k in by)
        groups[tuple(map(str, key))].append(r)
        keys.setdefault(tuple(map(str, key)), key)
    before = defaultdict(list)
    for row in earlier:
        key = tuple(str(row[k]) for k in by)
        before[key].append(row)
        keys.setdefault(key, key)
    rows = []
    for skey in sorted(keys):
        rs, old = groups.get(skey, []), before.get(skey, [])
        row = dict(zip(by, keys[skey]))
        row["runs"] = len(rs) + sum(int(o["runs"]) for o in old)
        for c in columns:
            text, mean, std = mean_std([r.get(c) for r in rs])
            if old:
                parts = [(len(present(r.get(c) for r in rs)), mean, std)]
                parts += [(o["runs"], _number(o[f"{c}_mean"]), _number(o[f"{c}_std"])) for o in old]
                text, mean, std, _ = pooled_mean_std(parts)
            row[c] = text
            row[f"{c}_mean"], row[f"{c}_std"] = mean, std
        rows.append(row)
    return rows


def write_tables(rows, out_prefix, columns=DEFAULT_COLUMNS, by=("name", "mode"), runs=None):
    """``OUT.md`` and ``OUT.csv`` of the summary rows and, given the ``runs`` behind them,
    ``OUT_runs.csv``: one row per run (its group keys, fold, seed and columns), so that the numbers
    of every run outlive the run directories."""
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
    if runs is not None:
        keys = list(dict.fromkeys((*by, "fold", "seed")))
        per_run = [{**{k: group_value(r, k) if k in by else r.get(k) for k in keys},
                    **{c: r.get(c) for c in columns if c not in keys}} for r in runs]
        per_run.sort(key=lambda r: tuple(str(r[k]) for k in keys))
        with open(out_prefix.with_name(out_prefix.name + "_runs.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[*keys, *(c for c in columns if c not in keys)])
            w.writeheader()
            w.writerows(per_run)
    return text

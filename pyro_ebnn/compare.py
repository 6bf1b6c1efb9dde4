"""The comparison grid (decoy rule x method x fold) and its tables in the layout of [000]
Table 1 (one row per dataset / rule, one column per method; balanced accuracy, macro F1, ROC AUC)
and Table 2 (attribution overlap), mean ± std over folds, in Markdown and CSV.

A *method* is a mode on a network: ``rrr`` (the penalty on the Bayesian LeNet, added to the
negative ELBO) or ``rrr@deterministic`` (the plain LeNet of the baseline's own paper). Runs live in
``OUT/<config name>/<mode>[-deterministic]/fold<k>``; finished runs are collected, not re-trained.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .aggregate import collect, summarize
from .config import MODES
from .errors import ConfigError

NETWORKS = ("bayesian", "deterministic")
TABLE_METRICS = (("balanced_accuracy", "balanced accuracy"), ("f1_macro", "macro F1"), ("roc_auc", "ROC AUC"))
OVERLAP_METRICS = ("overlap_saliency", "overlap_deeplift", "overlap_gradcam", "overlap_occlusion")
COST_METRICS = (("seconds_per_epoch", "seconds per epoch"),)


def parse_methods(text: str) -> list[tuple[str, str]]:
    """``"none,feedback,rrr@deterministic"`` -> [(mode, network), ...]."""
    out = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        mode, _, network = item.partition("@")
        network = network or "bayesian"
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r} in --methods; use {', '.join(MODES)}, optionally "
                              "with @deterministic (e.g. rrr@deterministic)")
        if network not in NETWORKS:
            raise ConfigError(f"unknown network {network!r} in --methods item {item!r}; use @bayesian or @deterministic")
        if mode == "feedback" and network == "deterministic":
            raise ConfigError("feedback@deterministic does not exist: feedback is evidence in the Bayesian model")
        out.append((mode, network))
    if not out:
        raise ConfigError("--methods is empty; e.g. none,feedback,rrr@deterministic")
    return out


def run_dir(out, name: str, mode: str, network: str, fold: int) -> Path:
    tag = mode if network == "bayesian" else f"{mode}-{network}"
    return Path(out) / name / tag / f"fold{fold}"


def label(mode: str, network: str) -> str:
    return mode if network == "bayesian" else f"{mode} (det.)"


def run_grid(configs: Sequence[str], methods, folds: Sequence[int], out, sets=(), device=None,
             overlap: Sequence[str] = ("saliency",), overlap_images: Optional[int] = 2000,
             train: bool = True, echo=print):
    """Train every (config, method, fold) that is not finished (``train=False``: only collect), then
    add the attribution overlap of ``overlap`` methods on the first ``overlap_images`` masked test
    images to every run that lacks it."""
    from .config import load_config, parse_sets
    from .train import METRICS, add_overlap
    from .train import train as train_run
    for config in configs:
        for fold in folds:
            for mode, network in methods:
                overrides = {**parse_sets(sets), "mode": mode, "network": network, "fold": fold}
                if device:
                    overrides["device"] = device
                cfg = load_config(config, overrides)
                where = run_dir(out, cfg.name, mode, network, fold)
                done = _finished(where / METRICS, cfg)
                if not done and train:
                    m = train_run(cfg, where)
                    echo(f"{cfg.name} [{label(mode, network)}] fold {fold}: balanced_accuracy="
                         f"{m['balanced_accuracy']:.4f}")
                    done = True
                if done and overlap:
                    add_overlap(where, overlap, overlap_images, device=device)


def _finished(metrics_path: Path, cfg) -> bool:
    """A run counts as finished when its metrics.json was written with this very config (device and
    threads aside). Otherwise it is trained: resumed and extended when only ``epochs`` grew, refused
    with a one-line error when other keys differ."""
    if not metrics_path.exists():
        return False
    saved = json.loads(metrics_path.read_text()).get("config", {})
    return all(saved[k] == v for k, v in cfg.to_dict().items() if k in saved and k not in ("device", "threads"))


def _cell(row, key):
    return row.get(key, "n/a") if row else "n/a"


def tables(runs: list[dict], methods=None) -> tuple[str, list[dict]]:
    """Markdown ([000] Table 1 / Table 2 layout plus cost) and the long CSV rows."""
    # runs written before the network key existed are Bayesian
    runs = [{**r, "network": r.get("network") or (r.get("config") or {}).get("network", "bayesian")} for r in runs]
    keys = [k for k, _ in TABLE_METRICS] + list(OVERLAP_METRICS) + [k for k, _ in COST_METRICS] + \
        ["decoy_swap_accuracy", "ece", "nll"]
    rows = summarize(runs, keys, by=("name", "network", "mode"))
    present = {(r["mode"], r["network"]) for r in rows}
    order = [m for m in (methods or []) if m in present] + sorted(present - set(methods or []))
    names = sorted({r["name"] for r in rows})
    index = {(r["name"], r["mode"], r["network"]): r for r in rows}
    heads = [label(*m) for m in order]

    def table(key, title):
        lines = [f"### {title}", "", "| rule | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(_cell(index.get((n, *m)), key) for m in order) + " |")
        return lines + [""]

    md = ["Mean ± std over folds (the number of runs per cell is in the CSV). Methods without a suffix "
          "are the Bayesian LeNet (penalties added to the negative ELBO); (det.) is the deterministic "
          "LeNet of the baselines' own papers.", ""]
    md += ["## Table 1: test performance", ""]
    for key, title in TABLE_METRICS:
        md += table(key, title)
    md += ["## Table 2: attribution overlap with the irrelevant region (lower is better)", ""]
    for key in OVERLAP_METRICS:
        if any(r.get(f"{key}_mean") is not None for r in rows):
            md += table(key, key.replace("overlap_", "overlap, "))
    md += ["## Cost and robustness", ""]
    for key, title in COST_METRICS + (("decoy_swap_accuracy", "decoy-swap accuracy"), ("ece", "ECE")):
        md += table(key, title)
    return "\n".join(md), rows


def write(runs, out_prefix, methods=None) -> str:
    text, rows = tables(runs, methods)
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    out_prefix.with_suffix(".md").write_text(text + "\n")
    keys = [k for k in rows[0] if k.endswith("_mean") or k.endswith("_std")] if rows else []
    with open(out_prefix.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["name", "network", "mode", "runs"] + keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return text


def compare(configs, methods: str, folds, out, sets=(), device=None, overlap=("saliency",),
            overlap_images: Optional[int] = 2000, train: bool = True, table_prefix=None, echo=None) -> str:
    echo = echo or (lambda s: print(s, file=sys.stderr))
    parsed = parse_methods(methods)
    if train or overlap:
        run_grid(configs, parsed, folds, out, sets, device, overlap, overlap_images, train, echo)
    runs = collect(out)
    if not runs:
        raise ConfigError(f"no finished runs under {out}; run compare without --collect-only first")
    return write(runs, table_prefix or Path(out) / "compare", parsed)

"""The comparison grid (decoy rule x mode x fold) and its tables in the layout of [000]
Table 1 (one row per dataset / rule, one column per mode; balanced accuracy, macro F1, ROC AUC)
and Table 2 (attribution overlap), mean ± std over folds, in Markdown and CSV.

A column is a mode on a network: ``rrr`` (the penalty on the Bayesian LeNet, added to the
negative ELBO) or ``rrr@deterministic`` (the plain LeNet of the baseline's own paper). Runs live in
``OUT/<config name>/<mode>[-deterministic]/fold<k>``; finished runs are collected, not re-trained.

Settings can be swept per mode (``sweeps``, e.g. ``rrr:penalty_weight=10,100,1000`` or
``feedback:lam=5e-5,5e-4``; ``penalty_weights`` is the short form for every penalty mode): the
mode is then trained once per setting, in ``OUT/<name>/<mode>[-deterministic]-<key><value>/fold<k>``
(``-w10`` for ``penalty_weight``), and the tables report, per rule and mode, the setting with the
best mean *validation* score over the folds (the config's ``select_metric``; never the test score).
Use it with ``validation_decoys: test`` so that the validation fold rewards models that do not read
the decoy. The sweep itself is written as a table of its own (validation and test score of every
setting, the chosen one marked) and as ``<prefix>_sweep.csv``.
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import yaml

from ..baselines import PENALTY_MODES, default_weight
from ..errors import ConfigError
from .build import resolve_device
from .config import KEYS, MODES, NETWORKS, coerce, config_difference, load_config, parse_sets, saved_config, setting_of
from .evaluation import add_overlap
from .report import marked_gap, reads_marks
from .rundir import METRICS, read_metrics
from .search import train_choosing_lam as train_run
from .tables import collect, mean_std, summarize

__all__ = ["parse_modes", "run_dir", "parse_weights", "parse_sweeps", "settings_of", "label", "run_grid",
           "train_in_parallel", "worker_pool", "GPU_MIB_PER_RUN", "gpu_free_mib", "auto_jobs",
           "is_finished", "effective_weight", "select_settings", "against_none", "tables", "write", "compare"]
TABLE_METRICS = (("balanced_accuracy", "balanced accuracy"), ("worst_group_accuracy", "worst-group accuracy"),
                 ("f1_macro", "macro F1"), ("roc_auc", "ROC AUC"))
OVERLAP_METRICS = ("overlap_saliency", "overlap_deeplift", "overlap_gradcam", "overlap_occlusion")
COST_METRICS = (("seconds_per_epoch", "seconds per epoch"),)
#: a mean paired difference within this of zero counts as "no change" in :func:`against_none`
NO_CHANGE = 0.01


def parse_modes(text: str) -> list[tuple[str, str]]:
    """``"none,feedback,rrr@deterministic"`` -> [(mode, network), ...].

    >>> parse_modes("none,feedback,rrr@deterministic")
    [('none', 'bayesian'), ('feedback', 'bayesian'), ('rrr', 'deterministic')]
    """
    out = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        mode, _, network = item.partition("@")
        network = network or "bayesian"
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r} in --modes; use {', '.join(MODES)}, optionally "
                              "with @deterministic (e.g. rrr@deterministic)")
        if network not in NETWORKS:
            raise ConfigError(f"unknown network {network!r} in --modes item {item!r}; use @bayesian or @deterministic")
        if mode == "feedback" and network == "deterministic":
            raise ConfigError("feedback@deterministic does not exist: feedback is evidence in the Bayesian model")
        out.append((mode, network))
    if not out:
        raise ConfigError("--modes is empty; e.g. none,feedback,rrr@deterministic")
    return out


def run_dir(out, name: str, mode: str, network: str, fold: int, setting: Optional[dict] = None) -> Path:
    """``OUT/<name>/<mode>[-deterministic][-<key><value>...]/fold<k>``; the suffix names a swept setting."""
    tag = mode if network == "bayesian" else f"{mode}-{network}"
    for key, value in (setting or {}).items():
        tag += f"-{SWEEP_ALIASES.get(key, key)}{_fmt_value(value)}"
    return Path(out) / name / tag / f"fold{fold}"


#: short names of swept keys in run directories (rrr-deterministic-w10)
SWEEP_ALIASES = {"penalty_weight": "w"}


def _fmt_value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def parse_weights(text: Optional[str]) -> Optional[list[float]]:
    """``"10,100,1000"`` -> [10.0, 100.0, 1000.0]; empty or None -> None (no sweep)."""
    if not text or not text.strip():
        return None
    try:
        weights = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--penalty-weights takes comma-separated numbers such as 10,100,1000; got {text!r}")
    if not weights or any(not (w > 0 and w != float("inf")) for w in weights):
        raise ConfigError(f"--penalty-weights must be positive finite numbers; got {text!r}")
    return sorted(set(weights))


def parse_sweeps(items: Sequence[str]) -> dict[str, dict[str, list]]:
    """``["rrr:penalty_weight=10,100", "feedback:lam=5e-5,5e-4"]`` ->
    ``{"rrr": {"penalty_weight": [10.0, 100.0]}, "feedback": {"lam": [5e-05, 0.0005]}}``.
    Values are read as ``--set`` reads them (typed by the config key); several keys of one mode are
    crossed. The values are checked when each run's config is built."""
    out: dict = {}
    for item in items:
        mode, sep, rest = item.partition(":")
        key, eq, values = rest.partition("=")
        mode, key = mode.strip(), key.strip()
        if not sep or not eq or not values.strip():
            raise ConfigError(f"--sweep takes MODE:KEY=V1,V2,... (e.g. feedback:lam=5e-5,5e-4); got {item!r}")
        if mode not in MODES:
            raise ConfigError(f"--sweep {item!r}: unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if key not in KEYS or key in ("mode", "network", "fold"):
            raise ConfigError(f"--sweep {item!r}: {key!r} is not a config key that can be swept")
        parsed = [coerce(key, yaml.safe_load(v.strip())) for v in values.split(",") if v.strip()]
        out.setdefault(mode, {})[key] = list(dict.fromkeys(parsed))
    return out


def settings_of(mode: str, sweeps: Optional[dict]) -> list[dict]:
    """Every setting (dict of swept keys) a mode is trained with; ``[{}]`` when it is not swept."""
    grid = (sweeps or {}).get(mode) or {}
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))] or [{}]


def label(mode: str, network: str) -> str:
    return mode if network == "bayesian" else f"{mode} (det.)"


def run_grid(configs: Sequence[str], modes, folds: Sequence[int], out, sets=(), device=None,
             overlap: Sequence[str] = ("saliency",), overlap_images: Optional[int] = 2000,
             train: bool = True, echo=print, sweeps: Optional[dict] = None, jobs: Union[int, str] = 1,
             cpu_jobs: int = 1):
    """Train every (config, mode, fold) that is not finished (``train=False``: only collect), then
    add the attribution overlap of ``overlap`` methods on the first ``overlap_images`` masked test
    images to every run that lacks it. ``sweeps`` ({mode: {key: values}}, :func:`parse_sweeps`):
    train a swept mode once per setting. ``jobs`` > 1: train that many runs at once, each in its own
    process (:func:`train_in_parallel`); ``"auto"``: :func:`auto_jobs` on a CUDA device,
    ``cpu_jobs`` on the CPU."""
    pending, runs = [], []
    for config in configs:
        for fold in folds:
            for mode, network in modes:
                for setting in settings_of(mode, sweeps):
                    overrides = {**parse_sets(sets), **setting, "mode": mode, "network": network, "fold": fold}
                    if device:
                        overrides["device"] = device
                    cfg = load_config(config, overrides)
                    where = run_dir(out, cfg.name, mode, network, fold, setting)
                    tag = ", ".join([label(mode, network)] + [f"{k}={_fmt_value(v)}" for k, v in setting.items()])
                    runs.append((where, cfg))
                    if train and not is_finished(where, cfg):
                        pending.append((cfg, where, f"{cfg.name} [{tag}] fold {fold}"))
    if jobs == "auto":
        jobs = auto_jobs(pending, cpu_jobs, echo)
    for name, m in train_in_parallel(pending, jobs, echo):
        echo(f"{name}: balanced_accuracy={m['balanced_accuracy']:.4f}")
    if overlap:
        for where, cfg in runs:
            if is_finished(where, cfg):
                add_overlap(where, overlap, overlap_images, device=device)


def train_in_parallel(pending, jobs: int, echo=print):
    """Train ``pending`` runs ((cfg, out, name) triples), ``jobs`` at a time, and yield (name,
    metrics) as each finishes. One job: in this process, with progress bars. Several: each run in
    a process of its own (spawned), without progress bars, on ``cpu_count // jobs`` torch threads
    unless its config sets ``threads``: on a 2-core CPU two LeNet runs of one thread each finish
    in 0.6 of the time of one after the other on two threads (docs/results/default-job.md). When a
    run fails, the runs not started yet are cancelled, the ones running finish, and the error is
    raised here (a run stopped part-way resumes from its last epoch when the grid runs again)."""
    if jobs <= 1 or len(pending) <= 1:
        for cfg, where, name in pending:
            yield name, train_run(cfg, where)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with worker_pool(jobs) as pool:
        running = {}
        for cfg, where, name in pending:
            cfg = cfg if cfg.threads else dataclasses.replace(cfg, threads=threads)
            running[pool.submit(train_run, cfg, where, progress=False)] = name
        echo(f"training {len(pending)} runs, {jobs} at a time, {threads} CPU thread(s) each")
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                if future.exception() is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise future.exception()
                yield name, future.result()


#: what one run takes of a GPU's memory at most, by architecture, in MiB: its CUDA context, the
#: training and test images on the device, the network, Adam's state and the captured step. An
#: upper estimate for the default batch sizes; the measured figures are on docs/results/cost.md.
GPU_MIB_PER_RUN = {"lenet": 2048, "cdep_cnn": 2048, "alexnet": 16384}


def auto_jobs(pending, cpu_jobs: int = 1, echo=print) -> int:
    """How many of the ``pending`` runs ((cfg, out, name) triples) to train at once for ``--jobs
    auto``. On a CUDA device: min(the runs, CPU cores // 2, the device's free memory // the
    memory of a run), at least 1: a LeNet step on a GPU is launch and Python overhead, a CPU core's
    work, so several processes keep the device busy where one leaves it idle between kernels, and
    each process needs a core of its own (and one spare for the data and the parent) and its share
    of the memory (:data:`GPU_MIB_PER_RUN`). The free memory is read without initializing CUDA in
    this process (:func:`gpu_free_mib`): the workers are spawned, and a context here would hold
    memory that the runs need. On the CPU: ``cpu_jobs`` (``main``: as many runs as cores, at most
    the runs: two at a time on 2 cores finish in 0.6 of the time of one after the other on two
    threads, docs/results/default-job.md; ``grid`` and ``compare``: 1).

    Measured on one H200 (16 cores, 139 GiB), ``main`` (6 LeNet runs x 8 epochs): 174 s one run
    at a time with eager steps, 71 s with six at a time with eager steps; with ``--jobs auto`` and
    graph steps: (to be measured: experiments/gpu_check.sh, docs/results/cost.md "On a GPU")."""
    if not pending:
        return 1
    devices = {resolve_device(cfg.device) for cfg, _, _ in pending}
    if not any(d.type == "cuda" for d in devices):
        return cpu_jobs
    device = next(d for d in devices if d.type == "cuda")
    cores = os.cpu_count() or 1
    per_run = max(GPU_MIB_PER_RUN.get(cfg.architecture, max(GPU_MIB_PER_RUN.values())) for cfg, _, _ in pending)
    free = gpu_free_mib(device)
    by_memory = len(pending) if free is None else free // per_run
    jobs = max(1, min(len(pending), cores // 2, by_memory))
    memory = "free memory unknown" if free is None else f"{free / 1024:.0f} GiB free / {per_run / 1024:g} GiB per run"
    echo(f"--jobs auto: {jobs} run(s) at a time on {device} ({len(pending)} runs, {cores} CPU cores / 2, {memory})")
    return jobs


def gpu_free_mib(device) -> Optional[int]:
    """Free memory of the CUDA ``device`` in MiB, read without initializing CUDA in this process:
    from ``nvidia-smi`` (the device as ``CUDA_VISIBLE_DEVICES`` names it; the least free memory
    of all GPUs when it is not set and there are several), else from a spawned Python process;
    None when neither answers."""
    index = torch.device(device).index or 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    query = ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"]
    if visible:
        query += ["-i", visible[min(index, len(visible) - 1)]]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=30)
        values = [int(float(v)) for v in out.stdout.split()] if out.returncode == 0 else []
        if values:
            return min(values)
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    code = f"import torch; print(torch.cuda.mem_get_info({index})[0] // 2 ** 20)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        return int(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """``jobs`` spawned worker processes that end when this process ends, however it ends: killed
    with SIGTERM or SIGKILL, it cannot stop them itself, and a worker left behind would go on
    writing its run directory beside the grid started next."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_end_with_parent, initargs=(os.getpid(),))


def _end_with_parent(parent: int, every: float = 0.5):
    """Pool initializer: a thread that ends the worker once ``parent`` is no longer its parent (the
    orphan was handed to another process). Checkpoints are written atomically, so the run stops at
    its last finished epoch and resumes from there."""
    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)
    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def is_finished(where: Path, cfg) -> bool:
    """A run counts as finished when its metrics.json was written with this very config (execution
    keys aside: :func:`~pyro_ebnn.experiment.config.config_difference`). Otherwise it is trained:
    resumed and extended when only ``epochs`` grew, refused with a one-line error when other keys
    differ."""
    if not (Path(where) / METRICS).exists():
        return False
    return not config_difference(read_metrics(where).get("config"), cfg.to_dict())


def effective_weight(run: dict) -> Optional[float]:
    """The penalty weight a run was trained with (the mode's default when the config left it null);
    None for modes without a penalty."""
    cfg = saved_config(run.get("config"))
    mode = run.get("mode") or cfg["mode"]
    if mode not in PENALTY_MODES:
        return None
    w = cfg["penalty_weight"]
    return float(w) if w is not None else default_weight(mode, run.get("network") or cfg["network"])


def select_settings(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per (rule, network, mode): when the runs were trained with more than one setting (a sweep:
    config values other than fold / seed / device / threads differ), keep the runs of the setting
    with the best mean validation score (``val_<select_metric>``) over its folds, never the test
    score. Returns (kept runs, sweep rows); the sweep rows list every setting (the keys that differ)
    with its validation and test score and whether it was chosen."""
    groups: dict = {}
    for r in runs:
        key = (r.get("name"), r.get("network"), r.get("mode"))
        groups.setdefault(key, {}).setdefault(setting_of(r.get("config")), []).append(r)
    kept, sweep = [], []
    for key, by_setting in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        if len(by_setting) == 1:
            kept += next(iter(by_setting.values()))
            continue
        configs = {s: dict(s) for s in by_setting}
        differ = sorted({k for c in configs.values() for k in c
                         if len({c2.get(k) for c2 in configs.values()}) > 1})
        name = {s: ", ".join(f"{k}={_fmt_value(json.loads(c[k])) if k in c else 'n/a'}" for k in differ)
                for s, c in configs.items()}
        scored = {}
        for s, rs in by_setting.items():
            metric = (rs[0].get("config") or {}).get("select_metric", "balanced_accuracy")
            vals = [r.get(f"val_{metric}") for r in rs]
            if any(v is None for v in vals):
                raise ConfigError(f"{key[0]} {label(key[2], key[1])} {name[s]}: a run has no validation score "
                                  f"val_{metric}; the setting cannot be selected (set val_every, rerun)")
            scored[s] = (sum(vals) / len(vals), metric)
        best = max(scored, key=lambda s: (scored[s][0], len(by_setting[s])))
        kept += by_setting[best]
        for s in sorted(by_setting, key=lambda s: [_sort_key(configs[s], k) for k in differ]):
            rs = by_setting[s]
            _, vmean, vstd = mean_std([r.get(f"val_{scored[s][1]}") for r in rs])
            _, tmean, tstd = mean_std([r.get("balanced_accuracy") for r in rs])
            sweep.append({"name": key[0], "network": key[1], "mode": key[2], "setting": name[s], "runs": len(rs),
                          "folds": ",".join(str(r.get("fold")) for r in sorted(rs, key=lambda r: r.get("fold", 0))),
                          "select_metric": scored[s][1],
                          "validation_decoys": (rs[0].get("config") or {}).get("validation_decoys", "train"),
                          "val_mean": vmean, "val_std": vstd, "test_balanced_accuracy_mean": tmean,
                          "test_balanced_accuracy_std": tstd, "chosen": s == best})
    return kept, sweep


def _sort_key(config: dict, key: str) -> tuple:
    """Numbers in order, then words; a key the config lacks last."""
    if key not in config:
        return (2, 0, "")
    v = json.loads(config[key])
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))


def sweep_table(sweep: list[dict]) -> list[str]:
    if not sweep:
        return []
    lines = ["## Sweeps", "",
             "Modes trained with several settings (`--sweep`, `--penalty-weights`): the tables above use, per "
             "rule and mode, the setting with the best mean validation score (chosen: **bold**). The test "
             "column is shown for the record only; it played no part in the choice.", "",
             "| rule | mode | setting | validation decoys | validation score | test balanced accuracy | runs |",
             "|---|---|---|---|---|---|---|"]
    f = lambda m, s: "n/a" if m is None else f"{m:.3f} ± {s:.3f}"
    for r in sweep:
        setting = f"**{r['setting']}**" if r["chosen"] else r["setting"]
        lines.append(f"| {r['name']} | {label(r['mode'], r['network'])} | {setting} | {r['validation_decoys']} | "
                     f"{r['select_metric']} {f(r['val_mean'], r['val_std'])} | "
                     f"{f(r['test_balanced_accuracy_mean'], r['test_balanced_accuracy_std'])} | {r['runs']} |")
    return lines + [""]


def _cell(row, key):
    return row.get(key, "n/a") if row else "n/a"


def _with_network(runs):
    """A run whose metrics name no network is Bayesian (the default of the key)."""
    return [{**r, "network": r.get("network") or (r.get("config") or {}).get("network", "bayesian")} for r in runs]


def against_none(runs: list[dict]) -> list[dict]:
    """Every mode against ``none`` on the same rule, network, fold and seed: the paired differences
    of balanced accuracy and worst-group accuracy, mean ± std over the pairs, a verdict
    ("helped", "no change" within :data:`NO_CHANGE`, "hurt") from the balanced accuracy, and
    ``marks_read``: how many of the pairs' runs without and with the mode the marked-gap warning names
    (:func:`~.report.reads_marks`: a class whose marked test images score far from its unmarked ones),
    "3/3 → 0/3".

    >>> run = lambda mode, fold, acc, worst: dict(name="r", network="bayesian", mode=mode, fold=fold, seed=0,
    ...                                           balanced_accuracy=acc, worst_group_accuracy=worst)
    >>> rows = against_none([run("none", 0, 0.75, 0.5), run("none", 1, 0.74, 0.6),
    ...                      run("feedback", 0, 0.70, 0.4), run("feedback", 1, 0.71, 0.5)])
    >>> rows[0]["verdict"], rows[0]["pairs"], rows[0]["balanced_accuracy"]
    ('hurt', 2, '-0.040 ± 0.014')
    """
    key = lambda r: (r.get("name"), r.get("network"), r.get("fold"), r.get("seed"))
    reference = {key(r): r for r in runs if r.get("mode") == "none"}
    pairs = {}
    for r in runs:
        base = reference.get(key(r))
        if r.get("mode") != "none" and base is not None:
            pairs.setdefault((r.get("name"), r.get("network"), r.get("mode")), []).append((r, base))
    rows = []
    for (name, network, mode), pp in sorted(pairs.items(), key=lambda kv: tuple(map(str, kv[0]))):
        row = {"name": name, "network": network, "mode": mode, "pairs": len(pp)}
        for metric in ("balanced_accuracy", "worst_group_accuracy"):
            diffs = [r[metric] - b[metric] for r, b in pp if r.get(metric) is not None and b.get(metric) is not None]
            _, mean, std = mean_std(diffs)
            row[metric], row[f"{metric}_mean"] = ("n/a" if mean is None else f"{mean:+.3f} ± {std:.3f}"), mean
        read = [sum(reads_marks(marked_gap(run)) for run in side) for side in ([b for _, b in pp], [r for r, _ in pp])]
        row["marks_read"] = f"{read[0]}/{len(pp)} → {read[1]}/{len(pp)}"
        change = row["balanced_accuracy_mean"]
        row["verdict"] = ("n/a" if change is None else "helped" if change > NO_CHANGE
                          else "hurt" if change < -NO_CHANGE else "no change")
        rows.append(row)
    return rows


def _against_none_table(rows) -> list[str]:
    if not rows:
        return []
    md = ["## Against no feedback (mode minus none, paired by fold)", "",
          "| rule | mode | balanced accuracy | worst-group accuracy | folds | verdict | runs that read the marks: "
          "none → mode |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['name']} | {label(r['mode'], r['network'])} | {r['balanced_accuracy']} | "
           f"{r['worst_group_accuracy']} | {r['pairs']} | {r['verdict']} | {r['marks_read']} |" for r in rows]
    return md + [""]


def tables(runs: list[dict], modes=None) -> tuple[str, list[dict]]:
    """Markdown ([000] Table 1 / Table 2 layout plus cost) and the long CSV rows."""
    text, rows, _ = _tables(runs, modes)
    return text, rows


def _tables(runs, modes):
    """:func:`tables`, plus the sweep rows of :func:`select_settings`."""
    runs, sweep = select_settings(_with_network(runs))
    keys = [k for k, _ in TABLE_METRICS] + list(OVERLAP_METRICS) + [k for k, _ in COST_METRICS] + \
        ["decoy_swap_accuracy", "ece", "nll", "hole_information"]
    rows = summarize(runs, keys, by=("name", "network", "mode"))
    chosen = {(r.get("name"), r.get("network"), r.get("mode")): effective_weight(r) for r in runs}
    for r in rows:
        r["penalty_weight"] = chosen.get((r["name"], r["network"], r["mode"]))
    present = {(r["mode"], r["network"]) for r in rows}
    order = [m for m in (modes or []) if m in present] + sorted(present - set(modes or []))
    names = sorted({r["name"] for r in rows})
    index = {(r["name"], r["mode"], r["network"]): r for r in rows}
    heads = [label(*m) for m in order]

    def table(key, title):
        lines = [f"### {title}", "", "| rule | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(_cell(index.get((n, *m)), key) for m in order) + " |")
        return lines + [""]

    archs = sorted({(r.get("config") or {}).get("architecture", "lenet") for r in runs})
    md = ["Mean ± std over folds (the number of runs per cell is in the CSV). Modes without a suffix "
          "are the Bayesian network (penalties added to the negative ELBO); (det.) is the same "
          "architecture with point weights, the setting of the baselines' own papers. "
          f"Architecture: {', '.join(archs)}.", ""]
    md += _against_none_table(against_none(runs))
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
    if any(r.get("hole_information_mean") is not None for r in rows):
        md += table("hole_information", "hole information (feedback: how well the holes the head sees tell the "
                    "class by themselves, 0 chance .. 1; docs/evaluation.md)")
    md += sweep_table(sweep)
    return "\n".join(md), rows, sweep


def write(runs, out_prefix, modes=None) -> str:
    text, rows, sweep = _tables(runs, modes)
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    out_prefix.with_suffix(".md").write_text(text + "\n")
    keys = [k for k in rows[0] if k.endswith("_mean") or k.endswith("_std")] if rows else []
    with open(out_prefix.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["name", "network", "mode", "penalty_weight", "runs"] + keys,
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    if sweep:
        with open(out_prefix.parent / f"{out_prefix.name}_sweep.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(sweep[0]))
            w.writeheader()
            w.writerows(sweep)
    return text


def compare(configs, modes: str, folds, out, sets=(), device=None, overlap=("saliency",),
            overlap_images: Optional[int] = 2000, train: bool = True, table_prefix=None, echo=None,
            penalty_weights: Optional[Sequence[float]] = None, sweeps: Optional[dict] = None,
            jobs: Union[int, str] = 1) -> str:
    """Train (``train=True``) or only collect the grid of ``configs`` x ``modes`` x ``folds`` under
    ``out`` and write ``compare.md`` / ``compare.csv``. ``penalty_weights`` is short for sweeping
    ``penalty_weight`` of every penalty mode in ``modes``; ``sweeps`` ({mode: {key: values}}) sweeps any config key of any mode."""
    echo = echo or (lambda s: print(s, file=sys.stderr))
    parsed = parse_modes(modes)
    sweeps = {m: dict(k) for m, k in (sweeps or {}).items()}
    for mode in {m for m, _ in parsed if m in PENALTY_MODES} if penalty_weights else ():
        sweeps.setdefault(mode, {})["penalty_weight"] = list(penalty_weights)
    if train or overlap:
        run_grid(configs, parsed, folds, out, sets, device, overlap, overlap_images, train, echo, sweeps, jobs)
    runs = collect(out)
    if not runs:
        raise ConfigError(f"no finished runs under {out}; run compare without --collect-only first")
    text = write(runs, table_prefix or Path(out) / "compare", parsed)
    chosen, _ = select_settings(_with_network(runs))
    for row in against_none(chosen):
        if row["verdict"] == "hurt":
            echo(f"warning: {label(row['mode'], row['network'])} scored below none on {row['name']}'s test images: "
                 f"balanced accuracy {row['balanced_accuracy']}, worst group {row['worst_group_accuracy']} "
                 f"({row['pairs']} folds, paired); keep the run without feedback or change what it learns from "
                 f"(docs/evaluation.md, \"When feedback does not help\")")
    return text

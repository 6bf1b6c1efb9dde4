"""Evaluation of a run: the posterior predictive on every test set (classification, calibration,
uncertainty), the attribution overlap with the masks, figures; and the side-by-side explanation
of several runs on the same test images."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..bnn import mean_probs, predictive_probs
from ..data import Split, batches
from ..errors import ConfigError
from ..explain import (METHODS, REFERENCE_METHODS, REFERENCES, SAMPLE_IMAGES, ExplainError, channel_mean, explain,
                       figure_indices, overlap_metrics, parse_methods)
from ..metrics import classification_metrics, group_accuracies, marked_shares, plugin_metrics, uncertainty_metrics
from ..progress import progress_bar
from .build import resolve_device
from .config import DATA_KEYS, Config, config_difference, load_config, parse_sets
from .figures import attribution_grid, attribution_title, evaluation_figures, shortcut_groups, validation_curve
from .protocol import images_of, prepare_split, set_seed, use_threads
from .report import run_warnings
from .rundir import CHECKPOINT, CONFIG, METRICS, MODEL, load_model, read_metrics, write_metrics, writing

__all__ = ["CHECKPOINTS", "POSTERIOR_MEAN_SETS", "evaluate_sets", "posterior_mean_scores", "attribution_reference", "drop_stale_overlaps", "add_overlap",
           "overlap_images", "evaluate_run", "explain_runs"]

#: which network of a run to evaluate: the model selected on validation, or the last epoch's
CHECKPOINTS = ("selected", "last")
#: test images read and handed to the posterior predictive at a time
PREDICTIVE_BATCH = 1000
#: extra test sets scored at the posterior mean only: the shortcut report's replaced marked regions
#: (one pass instead of ``eval_samples``: 10 s against 0.5 s per 1,000 64-px images on 2 CPU cores)
POSTERIOR_MEAN_SETS = ("marked_noise", "marked_swap")


def _evaluation_split(cfg, progress: bool):
    """The run's split for evaluating or explaining it: the training masks play no part there, so a
    run trained on a feedback store (``feedback_store``) is evaluated without reading the store."""
    return prepare_split(dataclasses.replace(cfg, feedback_store=None), progress=progress)


def evaluate_sets(model, split: Split, cfg: Config, device, progress=True, attributions: Optional[bool] = None,
                  methods=None, attribution_samples: int = 0, max_images: Optional[int] = None,
                  keep: Optional[dict] = None, figure_images: int = 8, sample_images: Optional[int] = None) -> dict:
    """Posterior predictive metrics on the test set (unprefixed) and the extra test sets (prefixed,
    e.g. ``decoy_swap_accuracy``): classification (scikit-learn) plus calibration and uncertainty
    (nll, brier, ece, predictive_entropy, mutual_information; :mod:`pyro_ebnn.metrics`), and
    plugin_nll, plugin_brier, plugin_ece of the posterior-mean network (no averaging over q). On
    the test set also the accuracy per group (class x marked) and the posterior-mean network's
    balanced accuracy and worst group (``plugin_*``); the sets of :data:`POSTERIOR_MEAN_SETS` get
    the posterior-mean network's classification metrics only.

    With ``attributions`` (default: the config key ``eval_attributions``) also the attribution
    overlap with the feedback masks on the test set, ``overlap_<method>`` ([001] Eq. 17), for
    ``methods`` (default all four), at the posterior mean or averaged over ``attribution_samples``
    weight samples, on the first ``max_images`` masked test images, or on a seeded random sample of
    ``sample_images`` of them (:func:`~pyro_ebnn.explain.masked_indices`; default: all), with its
    standard error over the images ``overlap_<method>_se``.
    ``keep`` (a dict) receives the predictive probabilities and the attributions of
    ``figure_images`` masked test images of every class, for figures."""
    # how the training marks fall on the classes: the marked-gap warning's control (pyro_ebnn.experiment.report)
    metrics = {f"train_{k}": v for k, v in marked_shares(split.train.labels.numpy(), split.train.has_mask.numpy(),
                                                         split.train.class_names).items()}
    sets = {"test": split.test, **split.extra_tests}
    bar = progress_bar(total=sum(len(s) for s in sets.values()), desc="posterior predictive", unit="img",
                       disable=not progress, leave=False)
    t0 = time.time()
    for name, data in sets.items():
        if name in POSTERIOR_MEAN_SETS:  # the shortcut report's sets: the posterior-mean network only
            plugin = torch.cat([mean_probs(model, x, device=device) for x, _, _ in batches(data, PREDICTIVE_BATCH,
                                                                                          workers=cfg.workers)])
            bar.update(len(data))
            m = classification_metrics(data.labels.numpy(), plugin.numpy())
            metrics.update({f"{name}_{k}": v for k, v in m.items() if k != "confusion_matrix"})
            continue
        probs, plugin = [], []
        for x, _, _ in batches(data, PREDICTIVE_BATCH, workers=cfg.workers):
            probs.append(predictive_probs(model, x, cfg.eval_samples, device=device, progress=bar))
            plugin.append(mean_probs(model, x, device=device))
        probs, plugin = torch.cat(probs, dim=1), torch.cat(plugin)
        m = classification_metrics(data.labels.numpy(), probs.mean(0).numpy())
        if name == "test":
            m.update(group_accuracies(data.labels.numpy(), probs.mean(0).argmax(-1).numpy(), data.has_mask.numpy(),
                                      data.class_names))
            m.update(posterior_mean_scores(data, plugin))
        m.update(uncertainty_metrics(data.labels, probs))
        m.update(plugin_metrics(data.labels, plugin))
        if name == "test":
            metrics.update(m)
        else:
            metrics.update({f"{name}_{k}": v for k, v in m.items() if k != "confusion_matrix"})
        if keep is not None:
            keep.setdefault("sets", {})[name] = {"probs": probs, "labels": data.labels}
    bar.close()
    metrics["predictive_seconds"] = time.time() - t0
    if attributions is None:
        attributions = cfg.eval_attributions
    if attributions:
        t0 = time.time()
        kept = {} if keep is not None else None
        metrics.update(overlap_metrics(model.net, split.test, methods, samples=attribution_samples,
                                       max_images=max_images, device=device, progress=progress, seed=cfg.seed,
                                       keep=kept, keep_images=figure_images, workers=cfg.workers,
                                       reference=attribution_reference(cfg, split), sample=sample_images))
        metrics["attribution_reference"] = cfg.attribution_reference
        metrics["attribution_seconds"] = time.time() - t0
        if keep is not None and kept:
            keep["attributions"] = kept
    return metrics


def posterior_mean_scores(data, plugin: torch.Tensor, prefix: str = "plugin_") -> dict:
    """Balanced accuracy, worst group and confusion matrix of the posterior-mean network's
    probabilities ``plugin`` on ``data`` (``plugin_balanced_accuracy``, ...): the numbers that the
    shortcut report and the last network's are compared with."""
    labels = data.labels.numpy()
    m = classification_metrics(labels, plugin.numpy())
    groups = group_accuracies(labels, plugin.argmax(-1).numpy(), data.has_mask.numpy(), data.class_names)
    keep = {"balanced_accuracy": m["balanced_accuracy"], "confusion_matrix": m["confusion_matrix"],
            "worst_group_accuracy": groups.get("worst_group_accuracy"), "worst_group": groups.get("worst_group")}
    return {f"{prefix}{k}": v for k, v in keep.items()}


def attribution_reference(cfg: Config, split: Split):
    """The reference image (DeepLIFT's reference, Occlusion's fill) that ``cfg.attribution_reference``
    names: None (black), or the per-channel mean of the training images (``mean``)."""
    if cfg.attribution_reference == "black":
        return None
    return channel_mean(images_of(split.train, cfg.workers))


def drop_stale_overlaps(metrics: dict, reference: str) -> dict:
    """Remove from a run's ``metrics`` the overlaps that were taken against another reference image
    than ``reference`` (metrics that name none were taken against black)."""
    old = metrics.pop("attribution_baseline", None)  # the key's old spelling (RENAMED_KEYS)
    taken = metrics.get("attribution_reference", "mean" if old == "mean" else "black")
    if taken != reference:
        for m in REFERENCE_METHODS:
            metrics.pop(f"overlap_{m}", None)
            metrics.pop(f"overlap_{m}_se", None)
    metrics["attribution_reference"] = reference
    return metrics


def _drop_overlaps(metrics: dict) -> dict:
    """Remove every method's overlap and standard error from ``metrics``."""
    for m in METHODS:
        metrics.pop(f"overlap_{m}", None)
        metrics.pop(f"overlap_{m}_se", None)
    return metrics


def _first_images_taken(metrics: dict, max_images: Optional[int]) -> bool:
    """Whether the overlaps in ``metrics`` were taken on the first ``max_images`` masked test images
    (None: all), as far as ``overlap_selection`` records it (older metrics without it: assumed so).

    >>> sample, first = {"overlap_selection": "random", "n_overlap_images": 500}, {"overlap_selection": "first",
    ...                                                                            "n_overlap_images": 2000}
    >>> _first_images_taken(sample, 2000), _first_images_taken(first, 2000), _first_images_taken(first, None)
    (False, True, False)
    >>> _first_images_taken({"overlap_selection": "all", "n_overlap_images": 16}, 2000), _first_images_taken({}, 2000)
    (True, True)
    """
    taken, n = metrics.get("overlap_selection"), metrics.get("n_overlap_images")
    if taken is None:
        return True
    if max_images is None:
        return taken == "all"
    return (taken == "first" and n == max_images) or (taken == "all" and n is not None and n <= max_images)


def add_overlap(run_dir, methods=("saliency",), max_images: Optional[int] = 2000, device=None,
                progress: bool = True) -> dict:
    """Add the attribution overlap ``overlap_<method>`` (and its standard error) of a finished run on
    the first ``max_images`` masked test images (None: all) to its metrics.json (the other metrics
    are kept; nothing is re-trained). Methods already there are skipped, unless they were taken
    against another reference image than the run's config names, or on other images (then every
    overlap of the run is taken again)."""
    run_dir = Path(run_dir)
    with writing(run_dir):
        metrics = read_metrics(run_dir)
        cfg = load_config(str(run_dir / CONFIG), {"device": device} if device else None)
        drop_stale_overlaps(metrics, cfg.attribution_reference)
        if not _first_images_taken(metrics, max_images):
            _drop_overlaps(metrics)
        todo = [m for m in parse_methods(methods) if metrics.get(f"overlap_{m}") is None]
        if not todo:
            return metrics
        use_threads(cfg.threads)
        dev = resolve_device(cfg.device)
        split = _evaluation_split(cfg, progress)
        model, _, _ = load_model(run_dir, dev, cfg)
        t0 = time.time()
        metrics.update(overlap_metrics(model.net, split.test, todo, max_images=max_images, device=dev,
                                       progress=progress, seed=cfg.seed, workers=cfg.workers,
                                       reference=attribution_reference(cfg, split)))
        metrics["overlap_seconds"] = time.time() - t0
        write_metrics(run_dir, metrics)
        return metrics


def overlap_images(max_images=None, sample_images: Optional[int] = SAMPLE_IMAGES) -> tuple:
    """``evaluate``'s choice of the overlap's images as (max_images, sample) for
    :func:`~pyro_ebnn.explain.overlap_metrics`: ``max_images`` None -> the seeded random sample of
    ``sample_images`` masked test images; ``"all"`` -> every masked test image; an integer N -> the
    first N.

    >>> overlap_images(), overlap_images("all"), overlap_images(2000), overlap_images("2000")
    ((None, 500), (None, None), (2000, None), (2000, None))
    """
    if max_images is not None:
        text = str(max_images).strip()
        if text.lower() == "all":
            return None, None
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"--max-images takes a positive number of images or 'all', got {max_images!r}; "
                              "e.g. --max-images 2000 (the first 2000 masked test images) or --max-images all")
        return int(text), None
    if sample_images is None or sample_images < 1:
        raise ConfigError(f"--sample-images takes a positive number of images, got {sample_images!r}; e.g. "
                          f"--sample-images {SAMPLE_IMAGES}, or --max-images all for every masked test image")
    return None, int(sample_images)


def evaluate_run(run_dir, out, sets=(), device=None, progress=True, attributions: bool = True, methods=None,
                 samples: int = 0, max_images=None, figures: bool = True,
                 figure_images: int = 8, checkpoint: str = "selected",
                 sample_images: Optional[int] = SAMPLE_IMAGES) -> dict:
    """Re-evaluate a saved run on its test sets (same data rule and fold as it was trained on):
    classification, calibration and uncertainty metrics, the attribution overlap (``attributions``,
    see :func:`evaluate_sets`; on the images that :func:`overlap_images` chooses: by default a seeded
    random sample of ``sample_images`` masked test images, the same for every run on the same test
    set; ``max_images="all"`` every one, an integer N the first N) and, with ``figures``,
    reliability diagrams, mutual-information
    histograms, attribution grids of ``figure_images`` test images and the validation curve, all
    written into ``out``. ``sets``: ``--set key=value`` overrides of the run's config (e.g.
    ``threads``, ``eval_samples``, ``attribution_reference``). ``checkpoint``: the model selected on
    validation (``"selected"``, model.pt), or the network after the last training epoch (``"last"``,
    from checkpoint.pt)."""
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / MODEL).exists():
        raise ConfigError(f"no saved model in {run_dir}; pass the --out directory of a finished train run")
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"--checkpoint must be 'selected' or 'last', got {checkpoint!r}")
    if checkpoint == "last":
        if not (run_dir / CHECKPOINT).exists():
            raise ConfigError(f"no {CHECKPOINT} in {run_dir}, so there is no last-epoch network to evaluate; "
                              "use --checkpoint selected")
        if out.resolve() == run_dir.resolve():
            raise ConfigError("--checkpoint last would mix the last epoch's metrics into the selected model's "
                              "metrics.json; pass another --out")
    if samples < 0:
        raise ConfigError(f"--samples must be >= 0 (0 = attributions at the posterior mean), got {samples}")
    max_images, sample_images = overlap_images(max_images, sample_images)
    methods = parse_methods(methods)
    overrides = parse_sets(sets)
    if device:
        overrides["device"] = device
    cfg = load_config(str(run_dir / CONFIG), overrides)
    use_threads(cfg.threads)
    dev = resolve_device(cfg.device)
    set_seed(cfg.seed)
    split = _evaluation_split(cfg, progress)
    model, _, payload = load_model(run_dir, dev, cfg)
    # memory-mapped: only the tensors used are read (the history, and the network for "last")
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", mmap=True, weights_only=False) \
        if (run_dir / CHECKPOINT).exists() else None
    if checkpoint == "last":
        model.net.load_state_dict(state["net"])
    with writing(out):  # creates out; nobody else writes there meanwhile (a training run, another evaluate)
        t0 = time.time()
        keep = {} if figures else None
        metrics = {"name": cfg.name, "rule": cfg.rule, "network": cfg.network, "mode": cfg.mode, "fold": cfg.fold,
                   "seed": cfg.seed,
                   **evaluate_sets(model, split, cfg, dev, progress, attributions=attributions, methods=methods,
                                   attribution_samples=samples, max_images=max_images, keep=keep,
                                   figure_images=figure_images, sample_images=sample_images),
                   "n_test": len(split.test), "eval_seconds": time.time() - t0, "device": str(dev),
                   "threads": torch.get_num_threads(), "evaluated_run": str(run_dir),
                   "evaluated_checkpoint": checkpoint,
                   "evaluated_epoch": state["epoch"] if checkpoint == "last" else payload.get("epoch"),
                   "config": cfg.to_dict()}
        if figures:
            t1 = time.time()
            paths = evaluation_figures(out, keep, run_name=f"{cfg.name} [{cfg.mode}]", samples=samples,
                                       reference=cfg.attribution_reference)
            paths += shortcut_groups(metrics, out / "shortcut_groups", title=f"{cfg.name} [{cfg.mode}]: shortcut report")
            if state is not None and state.get("history"):
                paths += validation_curve(state["history"], cfg.select_metric, out / "validation_curve",
                                          selected=payload.get("epoch"), title=f"{cfg.name} [{cfg.mode}]")
            metrics["figures"] = sorted(Path(p).name for p in paths)
            metrics["figure_seconds"] = time.time() - t1
        if out.resolve() == run_dir.resolve() and (out / METRICS).exists():
            # evaluating in place: keep what training recorded (epochs, timings) next to the new metrics
            old = read_metrics(out)
            if attributions:
                drop_stale_overlaps(old, cfg.attribution_reference)
                if (old.get("overlap_selection"), old.get("n_overlap_images")) != \
                        (metrics.get("overlap_selection"), metrics.get("n_overlap_images")):
                    _drop_overlaps(old)  # other methods' overlaps on other images would read as on these
            metrics = {**old, **metrics}
        if state is not None and state.get("history") and checkpoint == "selected":
            metrics["warnings"] = run_warnings(metrics, state["history"], cfg.mode, cfg.select_metric)
        write_metrics(out, metrics)
        return metrics


def explain_runs(run_dirs: Sequence, out, n_images: int = 8, methods=None, samples: int = 0, device=None,
                 progress: bool = True, reference: str = "black") -> dict:
    """One attribution grid per method (image with its mask | run A | run B | ...) on the same
    ``n_images`` masked test images, of every class (:func:`~pyro_ebnn.explain.figure_indices`);
    ``reference`` as the config key ``attribution_reference`` (the training images of the first
    run's fold give the mean). Returns {method: [png, pdf]}."""
    methods = parse_methods(methods)
    if reference not in REFERENCES:
        raise ExplainError(f"unknown reference image {reference!r}; use {' or '.join(REFERENCES)}")
    run_dirs = [Path(r) for r in run_dirs]
    if len(run_dirs) < 2:
        raise ExplainError("explain compares two or more runs; pass --run at least twice")
    if n_images < 1:
        raise ExplainError(f"--n-images must be >= 1, got {n_images}")
    configs = []
    for r in run_dirs:
        if not (r / MODEL).exists() or not (r / CONFIG).exists():
            raise ConfigError(f"no saved model in {r}; pass the --out directory of a finished train run")
        configs.append(load_config(str(r / CONFIG)))
    for cfg, r in zip(configs[1:], run_dirs[1:]):
        diff = config_difference(configs[0].to_dict(), cfg.to_dict(), only=DATA_KEYS)
        if diff:
            detail = ", ".join(f"{k}: {getattr(configs[0], k)!r} vs {getattr(cfg, k)!r}" for k in diff)
            raise ExplainError(f"runs {run_dirs[0]} and {r} were trained on different data ({detail}); "
                               "compare only runs that share the data config")
    names = [_run_label(r, run_dirs) for r in run_dirs]
    dev = resolve_device(device or configs[0].device)
    split = _evaluation_split(configs[0], True)
    test = split.test
    reference_values = channel_mean(images_of(split.train, configs[0].workers)) if reference == "mean" else None
    idx = figure_indices(test.labels, test.has_mask, n_images, configs[0].seed)
    if len(idx) == 0:
        raise ExplainError("the test set has no image with a non-empty mask; nothing to compare")
    x, y, masks = next(batches(test, len(idx), idx))
    columns = []
    for r, name in zip(run_dirs, names):
        model, _, _ = load_model(r, dev)
        if tuple(model.net.input_shape) != tuple(x.shape[1:]):
            raise ExplainError(f"the model in {r} takes {tuple(model.net.input_shape)} images, the test set has "
                               f"{tuple(x.shape[1:])}")
        attrs = explain(model.net, x, y, methods, samples=samples, device=dev, progress=progress,
                        reference=reference_values)
        columns.append({"name": name, "attributions": attrs, "probs": mean_probs(model, x, device=dev)})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for m in methods:
        cols = [(c["name"], c["attributions"][m], c["probs"]) for c in columns]
        written[m] = attribution_grid(x, masks, y, cols, m, out / f"attributions_{m}",
                                      title_suffix=attribution_title(m, samples, reference),
                                      class_names=test.class_names)
    return written


def _run_label(run, runs) -> str:
    """A short column title: the path components that tell the runs apart (at most three)."""
    parts = [p.parts for p in runs]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    label = "/".join(run.parts[common:][-3:])
    return label or run.name

"""Figures (matplotlib, written as PNG and PDF): attribution grids, reliability diagrams,
histograms of the mutual information and validation curves."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402

from ..explain import REFERENCE_METHODS  # noqa: E402
from ..metrics import ece, mutual_information_per_image, reliability  # noqa: E402
from ..metrics import groups_of  # noqa: E402
from .report import marked_gap, number, reads_marks  # noqa: E402

METHOD_TITLES = {"saliency": "Saliency (input gradient)", "deeplift": "DeepLIFT",
                 "gradcam": "Grad-CAM (last conv, upsampled)", "occlusion": "Occlusion"}
MASK_COLOUR = "#00e5ff"
WRONG_COLOUR = "#c44e52"


def _save(fig, stem) -> list[str]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = stem.with_suffix(f".{ext}")
        fig.savefig(p, dpi=150, bbox_inches="tight")
        paths.append(str(p))
    plt.close(fig)
    return paths


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _show_image(ax, image: np.ndarray):
    """C x H x W in [0, 1] -> grey or RGB."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(image[:3].transpose(1, 2, 0), 0, 1), interpolation="nearest")


def class_label(k: int, class_names: Optional[Sequence[str]] = None) -> str:
    """The name of class ``k``, or "class k" where the classes have none (or only their numbers).

    >>> class_label(1, ["everyday", "scientific"]), class_label(3), class_label(3, [str(k) for k in range(10)])
    ('scientific', 'class 3', 'class 3')
    """
    k = int(k)
    if class_names is not None and 0 <= k < len(class_names) and str(class_names[k]) != str(k):
        return str(class_names[k])
    return f"class {k}"


def _plain(value, _pos=None) -> str:
    """A tick label without trailing zeros or powers of ten: 0, 0.25, 1, 20, 0.001."""
    return f"{value:g}"


def count_ticks(top: float, most: int = 4) -> list[int]:
    """Ticks of a logarithmic count axis up to ``top``: 1, 2, 5, 10, 20, ..., or only the powers of
    ten (every other one, ...) where that would be more than ``most`` ticks.

    >>> count_ticks(300, 8), count_ticks(300), count_ticks(10 ** 6)
    ([1, 2, 5, 10, 20, 50, 100, 200], [1, 10, 100], [1, 100, 10000, 1000000])
    """
    decades = range(int(np.log10(max(top, 1))) + 1)
    at = [m * 10 ** d for d in decades for m in (1, 2, 5) if m * 10 ** d <= top]
    if len(at) > most:
        at = [10 ** d for d in decades]
    return at[::-(-len(at) // most)]


def _count_axis(ax, counts, most: int = 4):
    """Numbers of images on the y axis: linear with whole-number ticks, or logarithmic with plain
    ticks (:func:`count_ticks`) where the largest count is over 50."""
    top = float(np.max(counts, initial=0))
    if top <= 50:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=most, integer=True))
        return
    ax.set_yscale("log")
    ax.set_ylim(0.7, top * 1.5)
    ax.yaxis.set_major_locator(FixedLocator(count_ticks(top * 1.5, most)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _outline(ax, mask: np.ndarray, colour: str = MASK_COLOUR, lw: float = 1.3):
    """Pixel-exact outline of a binary mask (closed also where it touches the image border)."""
    if not mask.any():
        return
    m = np.pad(mask.astype(bool), 1)
    segs = []
    rows, cols = np.nonzero(m[1:, :] != m[:-1, :])      # horizontal edges: between row r-1 and r
    segs += [[(c - 1.5, r - 0.5), (c - 0.5, r - 0.5)] for r, c in zip(rows, cols) if 0 < c < m.shape[1] - 1]
    rows, cols = np.nonzero(m[:, 1:] != m[:, :-1])      # vertical edges: between column c-1 and c
    segs += [[(c - 0.5, r - 1.5), (c - 0.5, r - 0.5)] for r, c in zip(rows, cols) if 0 < r < m.shape[0] - 1]
    ax.add_collection(LineCollection(segs, colors=colour, linewidths=lw, clip_on=False, capstyle="projecting"))


def attribution_grid(images, masks, labels, columns: Sequence, method: str, stem,
                     title_suffix: str = "posterior mean", class_names: Optional[Sequence[str]] = None) -> list[str]:
    """Rows: images, named by their class; columns: the image with its feedback mask outlined, then
    |attribution| (summed over channels, scaled to its maximum per image) of each run, the mask
    outlined on top, the predicted class (in red where wrong) and the attribution's share in the mask.

    ``columns``: (name, attributions N x C x H x W, probs N x K or None) per run."""
    x, m, y = _np(images), _np(masks).astype(bool), _np(labels)
    n, ncol = len(x), 1 + len(columns)
    fig, axes = plt.subplots(n, ncol, figsize=(1.75 * ncol + 1.0, 1.75 * n + 0.5), squeeze=False,
                             layout="constrained")
    im = None
    for i in range(n):
        ax = axes[i, 0]
        _show_image(ax, x[i])
        _outline(ax, m[i, 0])
        ax.set_ylabel(class_label(y[i], class_names), fontsize=9)
        if i == 0:
            ax.set_title("image, mask", fontsize=9)
        for j, (name, attrs, probs) in enumerate(columns, start=1):
            t = np.abs(_np(attrs[i])).sum(0)
            top = t.max()
            ax = axes[i, j]
            im = ax.imshow(t / top if top > 0 else t, cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
            _outline(ax, m[i, 0])
            share = (t * m[i, 0]).sum() / t.sum() if t.sum() > 0 else float("nan")
            text, colour = f"in mask {number(share)}", "black"
            if probs is not None:
                p = _np(probs[i])
                text = f"pred {class_label(p.argmax(), class_names)} ({number(p.max())})\n" + text
                colour = "black" if int(p.argmax()) == int(y[i]) else WRONG_COLOUR
            ax.set_xlabel(text, fontsize=7, color=colour)
            if i == 0:
                ax.set_title(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{METHOD_TITLES.get(method, method)}\nfor the true class, {title_suffix}", fontsize=11)
    if im is not None:
        cb = fig.colorbar(im, ax=axes[:, 1:], shrink=min(1.0, 4.0 / n), aspect=30, pad=0.02)
        cb.set_label("|attribution| / its maximum", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    return _save(fig, stem)


def reliability_diagram(table: dict, ece: float, stem, title: str = "") -> list[str]:
    """Accuracy per confidence bin against the diagonal, the gaps to the bins' mean confidence
    marked (over- and under-confidence apart), bin counts below."""
    edges, count = table["edges"], table["count"]
    acc, conf = np.nan_to_num(table["accuracy"]), np.nan_to_num(table["confidence"])
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(4.6, 5.4), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08})
    filled = count > 0
    ax.bar(centres[filled], acc[filled], width=width[filled], color="#4c72b0", edgecolor="white",
           label="accuracy")
    # the gap between accuracy and confidence: filled above an over-confident bar, hatched over
    # the top of an under-confident one (so the accuracy bar stays visible)
    over, under = filled & (conf > acc), filled & (conf < acc)
    if over.any():
        ax.bar(centres[over], (conf - acc)[over], bottom=acc[over], width=width[over], color="#c44e52",
               alpha=0.35, edgecolor="#c44e52", hatch="//", label="over-confident: gap to confidence")
    if under.any():
        ax.bar(centres[under], (acc - conf)[under], bottom=conf[under], width=width[under], fill=False,
               edgecolor="#dd8452", hatch="\\\\", lw=0.8, label="under-confident: gap to confidence")
    ax.plot([0, 1], [0, 1], "--", color="0.3", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(FixedLocator([0, 0.25, 0.5, 0.75, 1]))
        axis.set_major_formatter(FuncFormatter(_plain))
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8, frameon=True, framealpha=0.85, edgecolor="none")
    ax.text(0.97, 0.04, f"ECE = {number(ece)}\nN = {int(count.sum())}", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=9, bbox=dict(boxstyle="round", fc="white", ec="0.7"))
    ax.set_title(title or "reliability diagram", fontsize=11)
    axc.bar(centres, count, width=width, color="0.55", edgecolor="white")
    _count_axis(axc, count)
    axc.set_ylabel("images")
    axc.set_xlabel("confidence (top-label mean predictive)")
    return _save(fig, stem)


def mutual_information_histogram(mi, correct, stem, title: str = "") -> list[str]:
    """Histogram of the per-image mutual information (nats), correct and wrong predictions apart,
    each group's mean marked by a dashed line."""
    mi, correct = _np(mi), _np(correct).astype(bool)
    top = max(float(mi.max()) if len(mi) else 0.0, 1e-6)
    bins = np.linspace(0, top, 41)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    tallest = 0
    for sel, colour, name in ((correct, "#55a868", "correct"), (~correct, "#c44e52", "wrong")):
        if sel.any():
            ax.hist(mi[sel], bins=bins, color=colour, alpha=0.25, histtype="stepfilled")
            counts, _, _ = ax.hist(mi[sel], bins=bins, color=colour, histtype="step", linewidth=1.6,
                                   label=f"{name} (n={int(sel.sum())}, mean {number(mi[sel].mean())})")
            ax.axvline(mi[sel].mean(), color=colour, ls="--", lw=1)
            tallest = max(tallest, counts.max())
    _count_axis(ax, [tallest], most=7)
    ax.set_xlim(0, top)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.set_xlabel("mutual information I[y; w | x] (nats)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or "epistemic uncertainty", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem)


def validation_points(history: Sequence[dict], metric: str) -> list[tuple[float, float]]:
    """(epoch, validation score) of every validation in a trainer's history, those inside an epoch
    (fractional epochs) and those at its end, in order."""
    key = f"val_{metric}"
    return sorted([(v["epoch"], v[key]) for h in history for v in h.get("validations_within_epoch", [])]
                  + [(h["epoch"], h[key]) for h in history if h.get(key) is not None])


def validation_curve(history: Sequence[dict], metric: str, stem, selected=None, title: str = "") -> list[str]:
    """Validation score over training (every validation, also those inside an epoch) with the
    selected epoch marked, and the training loss per image on a second axis. ``history`` is the
    trainer's (``checkpoint.pt``)."""
    points = validation_points(history, metric)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    if points:
        ax.plot(*zip(*points), color="C0", marker=".", ms=3, lw=1.2, label=f"validation {metric}")
    if selected is not None:
        ax.axvline(selected, color="C3", ls="--", lw=1, label=f"selected (epoch {selected:g})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}", color="C0")
    loss = ax.twinx()
    loss.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="0.45", lw=1, marker="s", ms=2.5,
              label="training loss per image")
    loss.set_ylabel("training loss per image", color="0.35")
    handles = ax.get_legend_handles_labels()[0] + loss.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower left", fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    return _save(fig, stem)


MARKED_COLOUR, UNMARKED_COLOUR = "#dd8452", "#4c72b0"


def shortcut_groups(metrics: dict, stem, title: str = "") -> list[str]:
    """The shortcut report as a figure: per class, the test accuracy of its images with a marked
    region and without, side by side, with their image counts; the class that the marked-gap
    warning names (:func:`~.report.marked_gap_warning`) in red, with its gap; the balanced
    accuracy as a dashed line. Nothing is drawn (``[]``) where the metrics hold no groups."""
    groups = groups_of(metrics)
    if not groups:
        return []
    classes = list(dict.fromkeys(g[0] for g in groups))
    cell = {(c, s): (a, n) for c, s, a, n in groups}
    gap = marked_gap(metrics)
    warned = gap["class"] if reads_marks(gap) else None
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.62 * len(classes)))
    rows = np.arange(len(classes))[::-1]
    both = len({state for _, state in cell}) == 2     # a test set marked on every image has one bar a class
    for offset, state, colour in ((0.19, "marked", MARKED_COLOUR), (-0.19, "unmarked", UNMARKED_COLOUR)):
        offset = offset if both else 0.0
        for row, c in zip(rows, classes):
            if (c, state) not in cell:
                continue
            accuracy, n = cell[(c, state)]
            ax.barh(row + offset, accuracy, height=0.36 if both else 0.5, color=colour, edgecolor="white",
                    label="with a marked region" if state == "marked" else "without")
            ax.text(min(accuracy, 1.0) + 0.01, row + offset, f"{number(accuracy)} ({n})", va="center", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if metrics.get("balanced_accuracy") is not None:
        ax.axvline(metrics["balanced_accuracy"], color="0.3", ls="--", lw=1)
        unique[f"balanced accuracy {number(metrics['balanced_accuracy'])}"] = ax.lines[-1]
    ax.set_yticks(rows, classes)
    for label in ax.get_yticklabels():
        if label.get_text() == warned:
            label.set_color(WRONG_COLOUR)
            label.set_fontweight("bold")
    if warned is not None:
        ax.annotate(f"{warned}: marked and unmarked {number(gap['gap'])} apart (Fisher's exact test p = "
                    f"{gap['p']:.1g}): a sign that the network reads the marked regions", xy=(1, 0),
                    xycoords="axes fraction", xytext=(0, -36), textcoords="offset points", ha="right", va="top",
                    fontsize=8, color=WRONG_COLOUR)
    ax.set_xlim(0, 1.18)
    ax.xaxis.set_major_locator(FixedLocator([0, 0.25, 0.5, 0.75, 1]))
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.set_xlabel("test accuracy of the class")
    ax.legend(unique.values(), unique.keys(), loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize=8,
              frameon=False)
    ax.set_title(title or "shortcut report", fontsize=10, pad=24)
    return _save(fig, stem)


def attribution_title(method: str, samples: int = 0, reference: str = "black") -> str:
    """The second title line of an attribution grid: the weights explained and, for the methods
    that have one, the reference image."""
    text = "posterior mean" if samples == 0 else f"mean of {samples} posterior samples"
    if method in REFERENCE_METHODS:
        text += ", reference: " + ("training mean" if reference == "mean" else "black")
    return text


def evaluation_figures(out, kept: dict, run_name: str = "run", samples: int = 0,
                       reference: str = "black") -> list[str]:
    """All figures of one evaluation: per test set a reliability diagram and an MI histogram; per
    method an attribution grid of the masked test images kept, of every class (if attributions
    were computed).
    ``kept`` is what :func:`pyro_ebnn.experiment.evaluation.evaluate_sets` keeps."""
    out = Path(out)
    written = []
    for name, d in kept.get("sets", {}).items():
        probs, y = d["probs"], d["labels"]
        table = reliability(y, probs)
        written += reliability_diagram(table, ece(y, probs), out / f"reliability_{name}",
                                       title=f"{run_name}: {name} set")
        correct = _np(probs.mean(0).argmax(-1)) == _np(y)
        written += mutual_information_histogram(mutual_information_per_image(probs), correct,
                                                out / f"mutual_information_{name}",
                                                title=f"{run_name}: {name} set, {probs.shape[0]} posterior samples")
    attr = kept.get("attributions")
    if attr and attr.get("labels") is not None:
        test = kept.get("sets", {}).get("test")
        probs = test["probs"].mean(0)[attr["indices"]] if test is not None else None
        for method, a in attr["attributions"].items():
            written += attribution_grid(attr["images"], attr["masks"], attr["labels"],
                                        [(run_name, a, probs)], method, out / f"attributions_{method}",
                                        title_suffix=attribution_title(method, samples, reference),
                                        class_names=attr.get("class_names"))
    return written

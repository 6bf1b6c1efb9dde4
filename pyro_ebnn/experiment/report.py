"""What a finished run tells its user in words: the shortcut report and the warnings.

The shortcut report reads the test metrics per group (:mod:`pyro_ebnn.metrics.groups`: every class,
with and without a marked region) and the accuracy when the marked regions are replaced (the
``marked_noise`` and ``marked_swap`` test sets). The warnings name a run that did not learn what it
should, in one line each, with the numbers of the selected and the last network side by side.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy.stats import fisher_exact

from ..data.counterfactual import KINDS as COUNTERFACTUALS
from ..metrics import groups_of, marked_shares_of
from .training import at_chance

__all__ = ["ONE_CLASS_SHARE", "MARKED_GAP", "MARKED_GAP_P", "predicted_share", "marked_gap", "reads_marks",
           "marked_gap_warning",
           "run_warnings", "shortcut_report", "fmt", "number"]

#: a network that gives one class to more than this share of the test images, where the labels'
#: largest class is at most :data:`LABEL_SHARE_GAP` below it, "predicts one class for most images"
ONE_CLASS_SHARE = 0.9
LABEL_SHARE_GAP = 0.25


def number(value: float, decimals: int = 3, digits: int = 3) -> str:
    """``value`` with ``decimals`` decimals, or with ``digits`` significant digits where the decimals
    would keep fewer (a mutual information of 0.0005 reads 0.0005, not 0.000).

    >>> number(0.8123), number(0.0623), number(0.0005), number(0.00001234), number(0.0), number(12.5, 4)
    ('0.812', '0.0623', '0.0005', '1.23e-05', '0.000', '12.5000')
    """
    if value != 0 and abs(value) < 10.0 ** (digits - 1 - decimals):
        return f"{value:.{digits}g}"
    return f"{value:.{decimals}f}"


def fmt(value: Optional[float]) -> str:
    """Three decimals, or two significant digits for small values (never 0.000 for 0.0005).

    >>> fmt(0.8123), fmt(0.00052), fmt(None), fmt(0.0)
    ('0.812', '0.00052', 'n/a', '0.000')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return number(value, 3, digits=2)


def predicted_share(confusion) -> tuple[float, float]:
    """(share of the test images given the most predicted class, share of the largest true class),
    from a confusion matrix (rows: true, columns: predicted).

    >>> predicted_share([[5, 0], [4, 1]])
    (0.9, 0.5)
    """
    c = np.asarray(confusion, dtype=float)
    total = c.sum()
    if total == 0:
        return float("nan"), float("nan")
    return float(c.sum(0).max() / total), float(c.sum(1).max() / total)


#: :func:`~pyro_ebnn.metrics.holes.hole_information` from which a feedback run warns
HOLES_TELL_CLASS = 0.5


def hole_warning(information: Optional[float], holes: str) -> str:
    """The line for holes that tell the class by themselves (""  below :data:`HOLES_TELL_CLASS`).
    Which holes serve best differs between tasks, so the line names the sweep that decides it on
    validation rather than one setting.

    >>> hole_warning(0.2, "own")
    ''
    >>> hole_warning(0.9, "shared").split(": the head")[0]
    'the holes the head sees (evidence_holes: shared) tell the class by themselves (0.90 on a scale from 0, chance, to 1, for a classifier shown only which last-convolution cells are zeroed)'
    """
    if information is None or information < HOLES_TELL_CLASS or holes == "none":
        return ""
    return (f"the holes the head sees (evidence_holes: {holes}) tell the class by themselves ({information:.2f} on a "
            f"scale from 0, chance, to 1, for a classifier shown only which last-convolution cells are zeroed): the "
            f"head can learn the holes in place of the images; choose the holes on validation with compare "
            f"--modes feedback --sweep feedback:evidence_holes=own,shared,none (docs/evaluation.md)")


#: a class whose test images with a marked region and without differ in accuracy by at least this
#: much (and by Fisher's exact test at :data:`MARKED_GAP_P`) is "read through the marked regions".
#: On the tasks of docs/results/own-images.md the runs without feedback differ by 0.44 to 0.88 where
#: there is a shortcut, by at most 0.18 on the control task (marks on both classes alike).
MARKED_GAP = 0.25
MARKED_GAP_P = 1e-3
#: training marks whose share of each class's images spreads less than this fall on every class
#: alike: they cannot tell the network a class, so a test gap is what the marks hide, not a shortcut
MARKS_ALIKE = 0.1


def marked_gap(metrics: dict) -> Optional[dict]:
    """The class whose test images with a marked region and without differ most in accuracy, with
    Fisher's exact test of the two groups' right and wrong counts (``p`` two-sided, times the number
    of classes compared); a class that passes both thresholds (:data:`MARKED_GAP`,
    :data:`MARKED_GAP_P`) goes before a larger gap on a handful of images. ``marks_alike``: the
    training images' marks fall on every class alike (``train_marked_share_<class>`` within
    :data:`MARKS_ALIKE`; None where the metrics do not say or no training image is marked). None
    where no class has both groups.

    >>> gap = marked_gap({"accuracy_three_marked": 0.35, "images_three_marked": 100,
    ...                   "accuracy_three_unmarked": 0.95, "images_three_unmarked": 100,
    ...                   "accuracy_four_marked": 0.9, "images_four_marked": 100,
    ...                   "accuracy_four_unmarked": 0.92, "images_four_unmarked": 100})
    >>> gap["class"], round(gap["gap"], 2), gap["p"] < 1e-15
    ('three', 0.6, True)
    """
    by_class: dict = {}
    for name, state, accuracy, images in groups_of(metrics):
        by_class.setdefault(name, {})[state] = (accuracy, images)
    pairs = {name: g for name, g in by_class.items() if len(g) == 2 and min(n for _, n in g.values()) > 0}
    gaps = []
    for name, g in pairs.items():
        (a_m, n_m), (a_u, n_u) = g["marked"], g["unmarked"]
        right_m, right_u = round(a_m * n_m), round(a_u * n_u)
        _, p = fisher_exact([[right_m, n_m - right_m], [right_u, n_u - right_u]])
        gaps.append({"class": name, "marked": a_m, "unmarked": a_u, "images_marked": n_m, "images_unmarked": n_u,
                     "gap": abs(a_m - a_u), "p": min(1.0, float(p) * len(pairs))})
    if not gaps:
        return None
    shares = marked_shares_of(metrics)
    alike = (max(shares.values()) - min(shares.values()) < MARKS_ALIKE) if shares and any(shares.values()) else None
    for g in gaps:
        g["marks_alike"] = alike
    return max(gaps, key=lambda g: (reads_marks(g), g["gap"]))


def reads_marks(gap: Optional[dict]) -> bool:
    """Whether a :func:`marked_gap` passes both thresholds, :data:`MARKED_GAP` and :data:`MARKED_GAP_P`,
    where the training marks do not fall on every class alike (False for None: no class has both
    groups). Marks on every class alike (a control) can hide what a class needs, and cost it accuracy,
    without telling the network any class."""
    return (gap is not None and gap["gap"] >= MARKED_GAP and gap["p"] <= MARKED_GAP_P
            and not gap.get("marks_alike"))


def marked_gap_warning(metrics: dict, mode: str) -> str:
    """The line for a class whose marked test images score far from its unmarked ones
    (:data:`MARKED_GAP`), "" otherwise. A network that reads a pattern is right on the marked images of
    the class that carried it in training and wrong on the marked images of the others; the mean
    accuracy and the validation score can hide it where only some test images carry the pattern.

    >>> groups = {"accuracy_three_marked": 0.35, "images_three_marked": 108,
    ...           "accuracy_three_unmarked": 0.96, "images_three_unmarked": 92}
    >>> marked_gap_warning(groups, "none").split(": ")[-1]
    'a sign that the network reads the marked regions; train with mode feedback'
    >>> marked_gap_warning({**groups, "accuracy_three_marked": 0.9}, "none")
    ''
    """
    gap = marked_gap(metrics)
    if not reads_marks(gap):
        return ""
    fix = ("train with mode feedback" if mode == "none" else
           f"{mode} did not keep it off them; compare --modes none,{mode} and read both shortcut reports "
           f"(docs/evaluation.md, \"When feedback does not help\")")
    return (f"class {gap['class']} is right on {fmt(gap['marked'])} of its test images with a marked region and on "
            f"{fmt(gap['unmarked'])} of those without ({gap['images_marked']} and {gap['images_unmarked']} images, "
            f"Fisher's exact test p = {gap['p']:.1g}): a sign that the network reads the marked regions; {fix}")


def run_warnings(metrics: dict, history: list, mode: str, select_metric: str = "balanced_accuracy") -> list[str]:
    """One line per sign that the run did not learn what it should (empty when none):

    * the model was selected at the first epoch and validation then declined;
    * the selected or the last network gives one class to most test images;
    * a feedback run's last validation score is below its first epoch's;
    * ``lam: auto`` found no lambda that beat training without feedback (the run has no evidence);
    * the holes the head sees tell the class by themselves (:func:`hole_warning`);
    * a class's marked test images score far from its unmarked ones (:func:`marked_gap_warning`);
    * the selected network is at chance on the validation images (:func:`~.training.at_chance`):
      nothing it learned holds there; on counterfactual validation images, it reads the marked regions.
    """
    key = f"val_{select_metric}"
    scores = [h[key] for h in history if key in h]
    side = _selected_and_last(metrics)
    out = []
    if len(scores) >= 2 and metrics.get("best_epoch") == 1 and scores[-1] < scores[0] - 0.02:
        out.append(f"the model was selected at epoch 1 and validation then fell from {fmt(scores[0])} to "
                   f"{fmt(scores[-1])}: the later epochs learned something the validation images punish{side}")
    for which, prefix in (("selected", "plugin_"), ("last", "last_")):
        confusion = metrics.get(f"{prefix}confusion_matrix")
        if confusion is None:
            continue
        share, label_share = predicted_share(confusion)
        if share > ONE_CLASS_SHARE and label_share < share - LABEL_SHARE_GAP:
            out.append(f"the {which} network gives one class to {share:.0%} of the test images (the largest class is "
                       f"{label_share:.0%} of them): it hardly tells the classes apart{side}")
    if mode == "feedback" and metrics.get("lam") == 0:
        out.append("lam: auto found no lambda that did better than no feedback, by more than their standard error, "
                   "on the validation images (marked regions exchanged between classes) at the full run, so this "
                   "run is trained without it: the network may not read the marked regions; compare --modes "
                   "none,feedback on your test images before relying on either")
    elif mode == "feedback" and len(scores) >= 2 and scores[-1] < scores[0] - 0.02:
        out.append(f"with feedback, validation ended at {fmt(scores[-1])}, below its first epoch's {fmt(scores[0])}: "
                   f"the evidence may outweigh the labels; try "
                   f"{'a smaller lam than the one chosen' if 'lam_search' in metrics else 'lam: auto or a smaller lam'}{side}")
    holes = metrics.get("evidence_holes") or (metrics.get("config") or {}).get("evidence_holes", "own")
    if mode == "feedback" and hole_warning(metrics.get("hole_information"), holes):
        out.append(hole_warning(metrics["hole_information"], holes))
    if line := marked_gap_warning(metrics, mode):
        out.append(line)
    best, n_val = metrics.get(key), metrics.get("n_val")
    classes = len(metrics.get("plugin_confusion_matrix") or metrics.get("confusion_matrix") or [])
    if select_metric == "balanced_accuracy" and best is not None and n_val and classes >= 2 \
            and at_chance(best, classes, n_val):
        decoys = (metrics.get("config") or {}).get("validation_decoys")
        why = (f"; its validation images have their marked regions replaced ({decoys}), so it reads the marked "
               f"regions: train with mode feedback" if mode == "none" and decoys_replaced(metrics) else "")
        out.append(f"the selected network is at chance on the validation images ({select_metric} {fmt(best)}, chance "
                   f"{1 / classes:.3f}): nothing it learned holds there{why}{side}")
    elif select_metric == "balanced_accuracy" and best is not None and n_val and classes >= 2 \
            and best < 1 / classes and decoys_replaced(metrics):
        fix = ("train with mode feedback" if mode == "none" else
               f"{mode} did not stop it (docs/evaluation.md, \"When feedback does not help\")")
        out.append(f"the selected network is below chance on the validation images ({select_metric} {fmt(best)}, "
                   f"chance {1 / classes:.3f}), whose marked regions are replaced "
                   f"({metrics['config']['validation_decoys']}): it reads the marked regions; {fix}{side}")
    return out


def decoys_replaced(metrics: dict) -> bool:
    """Whether the run's validation images have their marked regions replaced (counterfactual
    validation images), where scoring below chance means reading the marked regions.

    >>> decoys_replaced({"config": {"validation_decoys": "exchange"}}), decoys_replaced({})
    (True, False)
    """
    return (metrics.get("config") or {}).get("validation_decoys") in COUNTERFACTUALS


def _selected_and_last(metrics: dict) -> str:
    """"; selected network (epoch k): ... / last network (epoch n): ..." when both were evaluated."""
    if "last_balanced_accuracy" not in metrics or "plugin_balanced_accuracy" not in metrics:
        return ""
    def numbers(prefix):
        parts = [f"balanced accuracy {fmt(metrics.get(prefix + 'balanced_accuracy'))}"]
        if prefix + "worst_group_accuracy" in metrics:
            parts.append(f"worst group {fmt(metrics[prefix + 'worst_group_accuracy'])}")
        return ", ".join(parts)
    return (f" (test, posterior-mean networks: selected, epoch {metrics.get('best_epoch')}: {numbers('plugin_')}; "
            f"last, epoch {metrics.get('epochs_run')}: {numbers('last_')})")


def shortcut_report(metrics: dict) -> str:
    """The test accuracy of every group (class x marked or not), the worst group, and the balanced
    accuracy of the posterior-mean network with the marked regions replaced; "" when the metrics
    hold no groups.

    >>> print(shortcut_report({"accuracy_cat_marked": 0.9, "images_cat_marked": 10, "accuracy_cat_unmarked": 0.6,
    ...     "images_cat_unmarked": 10, "worst_group_accuracy": 0.6, "worst_group": "cat, unmarked",
    ...     "plugin_balanced_accuracy": 0.75, "marked_noise_balanced_accuracy": 0.7}))
    shortcut report (test accuracy per class, with and without a marked region):
      class   marked        unmarked
      cat     0.900 (10)    0.600 (10)
      worst group: cat, unmarked 0.600
      posterior-mean network: balanced accuracy 0.750 as the images are; with the marked regions replaced by
        noise: 0.700 (-0.050)
    """
    groups = groups_of(metrics)
    if not groups:
        return ""
    classes = list(dict.fromkeys(g[0] for g in groups))
    cell = {(c, s): f"{fmt(a)} ({n})" for c, s, a, n in groups}
    width = max(5, *(len(c) for c in classes))
    lines = ["shortcut report (test accuracy per class, with and without a marked region):",
             f"  {'class':<{width}}   {'marked':<12}  unmarked"]
    for c in classes:
        lines.append(f"  {c:<{width}}   {cell.get((c, 'marked'), '-'):<12}  {cell.get((c, 'unmarked'), '-')}".rstrip())
    lines.append(f"  worst group: {metrics['worst_group']} {fmt(metrics['worst_group_accuracy'])}")
    base = metrics.get("plugin_balanced_accuracy")
    replaced = [(words, metrics.get(f"marked_{kind}_balanced_accuracy"))
                for kind, words in (("noise", "noise"), ("swap", "another class's pixels"))]
    if base is not None and any(v is not None for _, v in replaced):
        lines.append(f"  posterior-mean network: balanced accuracy {fmt(base)} as the images are; with the marked "
                     "regions replaced by")
        lines += [f"    {words}: {fmt(v)} ({v - base:+.3f})" for words, v in replaced if v is not None]
    return "\n".join(lines)

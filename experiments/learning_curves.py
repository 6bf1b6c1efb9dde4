"""Learning curves of the selection strategies: balanced accuracy after fine-tuning on B annotated
images, per strategy and simulated annotator (docs/results/annotation.md).

    python experiments/learning_curves.py --root RUNS --out experiments/results/annotation \\
        [--rules corners,position,photos] [--budgets 50,100,200,25,400] [--seeds 0,1,2] \\
        [--strategies random,entropy,bald,explanation] [--oracles candidates,truth] [--summary-only]
    python experiments/learning_curves.py --root RUNS --actions 5,10,20,50,100,200 \\
        [--annotators groups,finder,clicker,painter] [--rules corners,position,photos] [--seeds 0,1,2] \\
        [--finetune-epochs 6] [--finetune-lam 1|auto] [--route finetune|train]

Against effort (``--actions``; without ``--budgets`` only these run): test balanced accuracy after
fine-tuning on what a simulated annotator gives for A actions, counted as a person spends them
(:data:`pyro_ebnn.annotate.oracle.ACTIONS`): the painter paints the whole true mask of one image
per action, the clicker clicks the proposed regions that touch it (one action per click, one to
accept an image with nothing to click), both on the seed's random ranking of the pool; the group
annotator marks, best-ranked group first, the region where the true masks of a discovered group's
members agree, one action per group, propagated to the group's images at the same place; the finder
answers the same groups but marks the decoy on one of a group's shown images and has it found in
every pool image that looks the same in pixels ("mark once, find everywhere"). Runs go
in the order of ``--actions`` (smallest first), all annotators, rules and seeds of one budget
before the next; a budget beyond the groups there are repeats the run of all groups
(``same_as.json``). The seed's control (no annotated image) is the same as for the budgets.

Rules: ``corners`` and ``position`` (Decoy MNIST) and ``photos``, the real-photo patch task of
docs/results/photos.md, written by experiments/shortcut_photos.py into ``ROOT/photos/data``. Per
rule: one start model (``train``, mode none) trained once; on test images, how well its
candidate regions find the decoys. Per seed: the pool (``--pool`` training images, the seed's
draw), each strategy's ranking of it (its best ``max(budgets)`` images, best first) and the
attribution overlap of every pool image. Per oracle and budget B: a feedback store holding the
oracle's answers to the first B images of the ranking (so the budgets of one strategy and seed
are nested, as running ``annotate`` again on one store would make them), and ``finetune
--feedback`` on it, seeded by the seed; a store without any mask (every answer "accepted") adds no
evidence, so its point is the seed's control, the same fine-tuning without annotated images, run
once. Then the tables and the figure.

Every step resumes: a finished start model, ranking, store or fine-tuning run (its metrics.json)
is skipped, an interrupted fine-tuning run resumes from its checkpoint, and a store with the wrong
number of answers is written again. Runs go in the order: the first three budgets of both rules,
then the other budgets, so that an interrupted job has whole curves at the budgets that matter
most. One process, one thread.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pyro_ebnn.annotate import AnnotationTask, oracle_answer  # noqa: E402
from pyro_ebnn.annotate.oracle import ACTIONS, GROUP_RULES, answer_groups, image_actions  # noqa: E402
from pyro_ebnn.data import batches, load_dataset  # noqa: E402
from pyro_ebnn.data.store import FeedbackStore  # noqa: E402
from pyro_ebnn.experiment.config import load_config  # noqa: E402
from pyro_ebnn.experiment.feedback import store_fingerprint  # noqa: E402
from pyro_ebnn.experiment.rundir import METRICS, read_metrics  # noqa: E402
from pyro_ebnn.experiment.runs import finetune, train  # noqa: E402
from pyro_ebnn.experiment.search import finetune_choosing_lam, train_choosing_lam  # noqa: E402
from pyro_ebnn.experiment.tables import mean_std  # noqa: E402
from pyro_ebnn.explain import attribute, explained_network, overlap_per_image  # noqa: E402
from pyro_ebnn.explain.regions import attribution_maps, candidate_regions, region_coverage, region_iou  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: both rules on 20,000 train+val images and 5,000 test images (the CPU budget; see the results page)
DATA = {"max_train_images": 20000, "max_test_images": 5000, "threads": 1, "eval_samples": 5}
#: the start models: mode none, trained once per rule and selected on validation images as they
#: are (a practitioner who does not know the shortcut keeps the model that reads it)
RULES = {
    # [001]: one epoch on 54,000 images = 211 steps of 256; here 3 epochs of 18,000 images
    "corners": ("configs/decoy_mnist_corners.yaml", {"mode": "none", "epochs": 3, "validation_decoys": "train"}),
    # [000]'s rule and hyperparameters, no feedback
    "position": ("configs/decoy_mnist_position.yaml", {"mode": "none", "epochs": 30, "validation_decoys": "train"}),
    # the real-photo task of docs/results/photos.md (a magenta patch anywhere on every everyday
    # image), written by experiments/shortcut_photos.py into ROOT/photos/data; the shipped small
    # folder config, no feedback
    "photos": ("configs/image_folder_small.yaml", {"mode": "none", "validation_decoys": "train"}),
}
#: what the fine-tuning of a rule sets besides FINETUNE: the photo task has no test rule to
#: validate on; its validation images get their marked regions exchanged across classes
RULE_FINETUNE = {"photos": {"validation_decoys": "exchange"}}
#: the fine-tuning of every point: [001]'s (lambda 1, lr 1e-3, validation decoys of the test rule),
#: fewer epochs, validation inside epochs, no early stopping
FINETUNE = {"finetune_epochs": 6, "finetune_lr": 1e-3, "finetune_lam": 1.0, "val_every_steps": 20, "patience": None,
            "validation_decoys": "test"}
#: the fine-tuning epochs and weight of FINETUNE (``--finetune-epochs``, ``--finetune-lam``); other
#: than 6 and 1, the control and the curves against actions go in directories named with them
#: (``control_e17``, ``actions_e17_lamauto``)
DEFAULTS = {"finetune_epochs": 6, "finetune_lam": 1.0}
#: what every point does with its store (``--route``): fine-tune the start model ([001]), or train a
#: network from scratch on the store's masks (``train --feedback``; the rule's config, its lambda,
#: the fine-tuning's validation images); the train route's runs go in ``*_train`` directories
ROUTE = {"route": "finetune"}


def tag(name: str, weighted: bool = True) -> str:
    """``name``, with ``_e<epochs>`` and (unless not ``weighted``: the control has no evidence to
    weigh) ``_lam<weight>`` for fine-tuning settings other than the defaults."""
    epochs, lam = FINETUNE["finetune_epochs"], FINETUNE["finetune_lam"]
    if ROUTE["route"] == "train":
        return f"{name}_train"
    if epochs != DEFAULTS["finetune_epochs"]:
        name += f"_e{epochs}"
    return name if lam == DEFAULTS["finetune_lam"] or not weighted else f"{name}_lam{lam}"
STRATEGIES = ("random", "entropy", "bald", "explanation")
ORACLES = ("candidates", "truth")
#: test images whose candidate regions are compared with the true masks
REGION_IMAGES = 1000
#: test images behind the median attribution overlap (the "decoy pick" threshold)
OVERLAP_IMAGES = 2000
#: lambda_1 of the candidate regions: [002]'s 0.2 (what annotate proposed) and a milder 0.5
KEEP_MASSES = (0.2, 0.5)
#: the regions the candidates oracle clicks: [002]'s, as in the published curves (annotate's
#: default is now the blobs: docs/results/annotation.md, "Proposals")
PROPOSALS = "thesis"


def log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def base_config(root: Path, rule: str):
    path, sets = RULES[rule]
    if rule == "photos":
        sets = {**sets, "data_dir": str(photos_data(root).resolve())}
    return load_config(str(ROOT / path), {**DATA, **sets})


def photos_data(root: Path) -> Path:
    """The photo task in the image-folder layout, written once (experiments/shortcut_photos.py)."""
    from shortcut_photos import TASKS, build_shortcut_photos  # this folder's script

    out = root / "photos" / "data"
    if not (out / "shortcut_photos.json").exists():
        log("photos: writing the task's images")
        build_shortcut_photos(out, task="photos", **TASKS["photos"])
    return out


def finetune_config(base: Path, rule: str, **sets):
    """The start model's config with the fine-tuning of every point (FINETUNE, RULE_FINETUNE)."""
    return load_config(str(base / "config.yaml"), {**FINETUNE, **RULE_FINETUNE.get(rule, {}), **sets})


def retrain_config(root: Path, rule: str, **sets):
    """The rule's config for the train route: its own training (epochs, lambda), validated as the
    fine-tuning is (FINETUNE's and RULE_FINETUNE's validation images)."""
    path, _ = RULES[rule]
    validation = {"validation_decoys": FINETUNE["validation_decoys"], **RULE_FINETUNE.get(rule, {})}
    data = {"data_dir": str(photos_data(root).resolve())} if rule == "photos" else {}
    return load_config(str(ROOT / path), {**DATA, **data, **validation, **sets})


def start_model(root: Path, rule: str) -> Path:
    out = root / rule / "base"
    if not (out / METRICS).exists():
        log(f"{rule}: training the start model")
        train(base_config(root, rule), out, progress=False)
    return out


def saliency_overlap(net, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """[001] Eq. 17 per image: the share of |saliency| (true label, posterior mean) inside the mask."""
    plain = explained_network(net, "mean")
    parts = [overlap_per_image(attribute(plain, x, y, "saliency"), m)
             for x, y, m in batches_of(images, labels, masks)]
    return torch.cat(parts).numpy()


def batches_of(*tensors, size: int = 500):
    for start in range(0, len(tensors[0]), size):
        yield tuple(t[start:start + size] for t in tensors)


def region_diagnostics(root: Path, rule: str) -> dict:
    """On the start model's test images: candidate regions against the true masks, and the median
    saliency overlap (the threshold of a decoy pick)."""
    path = root / rule / "test_diagnostics.json"
    if path.exists():
        return json.loads(path.read_text())
    log(f"{rule}: candidate regions and overlaps on test images")
    base = start_model(root, rule)
    task = AnnotationTask(base, pool=1)
    _, sets = load_dataset(task.cfg)
    test = sets["test"]
    x, y, m = (torch.cat(t) for t in zip(*batches(test, 1000, range(min(OVERLAP_IMAGES, len(test))))))
    overlap = saliency_overlap(task.model.net, x, y, m)
    net = explained_network(task.model.net, "mean")
    with torch.no_grad():
        predicted = net(x[:REGION_IMAGES]).argmax(-1)
    gradcam, saliency = attribution_maps(net, x[:REGION_IMAGES], predicted)
    truth = m[:REGION_IMAGES, 0].numpy()
    result = {"regions": {}, "overlap_images": int(len(overlap)), "overlap_median": float(np.nanmedian(overlap))}
    for keep_mass in KEEP_MASSES:
        found = np.stack([candidate_regions(x[i], gradcam[i], saliency[i], keep_mass=keep_mass).mask()
                          for i in range(len(predicted))])
        iou, coverage = region_iou(found, truth), region_coverage(found, truth)
        flat = found.reshape(len(found), -1)
        result["regions"][str(keep_mass)] = {
            "images": int(len(found)), "iou": float(np.nanmean(iou)), "iou_std": float(np.nanstd(iou)),
            "coverage": float(np.nanmean(coverage)), "coverage_std": float(np.nanstd(coverage)),
            "with_candidates": float(flat.any(1).mean()),
            "touching_decoy": float((found & truth).reshape(len(found), -1).any(1).mean()),
            "candidate_area": float(flat.sum(1).mean()), "decoy_area": float(truth.reshape(len(truth), -1).sum(1).mean())}
    path.write_text(json.dumps(result, indent=2))
    return result


def rankings(root: Path, rule: str, seed: int, strategies, budget: int, pool: int, samples: int) -> dict:
    """{strategy: its best ``budget`` images of the seed's pool, best first}, plus ``pool`` and the
    pool images' saliency overlaps (``overlap``), cached in a JSON file."""
    path = root / rule / "rankings" / f"seed{seed}.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    missing = [s for s in strategies if len(found.get(s, [])) < budget]
    if not missing:
        return found
    log(f"{rule} seed {seed}: ranking the pool by {', '.join(missing)}")
    task = AnnotationTask(start_model(root, rule), pool=pool, samples=samples, seed=seed)
    if "overlap" not in found:
        x, y, m = (torch.cat(t) for t in zip(*batches(task.trainval, 1000, task.pool)))
        found["pool"] = task.pool.tolist()
        found["overlap"] = saliency_overlap(task.model.net, x, y, m).tolist()
    for strategy in missing:
        found[strategy] = task.select(strategy, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found))
    return found


class Answers:
    """The oracles' answers per image, computed once per rule (they depend on the image only)."""

    def __init__(self, root: Path, rule: str):
        self.root, self.rule, self.task = root, rule, None
        self.path = root / rule / "oracle_answers.npz"
        self.cache = dict(np.load(self.path)) if self.path.exists() else {}

    def __call__(self, oracle: str, index: int):
        key = f"{oracle}_{index}"
        if key not in self.cache:
            if self.task is None:
                self.task = AnnotationTask(start_model(self.root, self.rule), pool=1, proposals=PROPOSALS)
            regions = self.task.candidates(index) if oracle == "candidates" else None
            decision, mask = oracle_answer(oracle, self.task.true_mask(index), regions)
            self.cache[key] = mask if decision == "irrelevant" else np.zeros(0, bool)
        mask = self.cache[key]
        return ("irrelevant", mask) if mask.size else ("accepted", None)

    def save(self):
        """Write the cache atomically (two processes on different seeds may share it)."""
        partial = self.path.with_name(f"{self.path.stem}.{os.getpid()}.partial.npz")
        np.savez_compressed(partial, **self.cache)
        os.replace(partial, self.path)


def write_store(path: Path, task_of, indices, answers: Answers, oracle: str):
    """A store holding the oracle's answers to ``indices`` (written again if it holds others)."""
    if path.exists():
        with task_of() as store:
            if sorted(store.answers()) == sorted(indices):
                return
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    with task_of() as store:
        for index in indices:
            store.record(index, *answers(oracle, index))


def control(root: Path, rule: str, seed: int) -> dict:
    """The same fine-tuning without any annotated image (``finetune_budget: 0``), once per seed."""
    out = root / rule / tag("control", weighted=False) / f"seed{seed}"
    if not (out / METRICS).exists() and ROUTE["route"] == "train":
        train(retrain_config(root, rule, mode="none", seed=seed), out, progress=False)
        log(f"{rule} control seed {seed}: balanced accuracy {read_metrics(out)['balanced_accuracy']:.4f}")
    if not (out / METRICS).exists():
        base = start_model(root, rule)
        finetune(base, finetune_config(base, rule, finetune_lam=1.0, seed=seed, finetune_budget=0), out, progress=False)
        log(f"{rule} control seed {seed}: balanced accuracy {read_metrics(out)['balanced_accuracy']:.4f}")
    return read_metrics(out)


def point(root: Path, rule: str, oracle: str, strategy: str, seed: int, budget: int, ranking: dict,
          answers: Answers, fingerprint, shape):
    """Fine-tune on the oracle's answers to the strategy's first ``budget`` images. A store without
    any mask is the control (accepted explanations add no evidence): its result is the seed's
    control run, recorded in ``control.json``."""
    out = root / rule / oracle / strategy / f"seed{seed}" / f"b{budget}"
    if (out / "run" / METRICS).exists() or (out / "control.json").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "feedback.sqlite"
    indices = ranking[strategy][:budget]
    write_store(store_path, lambda: FeedbackStore(store_path, fingerprint, shape, f"oracle:{oracle}"), indices,
                answers, oracle)
    answers.save()
    decisions = [answers(oracle, i)[0] for i in indices]
    if "irrelevant" not in decisions:
        m = control(root, rule, seed)
        (out / "control.json").write_text(json.dumps({"balanced_accuracy": m["balanced_accuracy"],
                                                      "feedback_irrelevant": 0, "feedback_accepted": len(indices),
                                                      "best_epoch": m["best_epoch"]}))
        log(f"{rule} {oracle} {strategy} seed {seed} B={budget}: no mask, the control ({m['balanced_accuracy']:.4f})")
        return
    base = start_model(root, rule)
    cfg = finetune_config(base, rule, seed=seed, finetune_feedback=str(store_path))
    t0 = time.time()
    m = finetune_choosing_lam(base, cfg, out / "run", progress=False)
    log(f"{rule} {oracle} {strategy} seed {seed} B={budget}: balanced accuracy {m['balanced_accuracy']:.4f} "
        f"({m['feedback_irrelevant']} irrelevant, {m['feedback_accepted']} accepted; {time.time() - t0:.0f} s)")


def run_all(args):
    root = Path(args.root)
    groups = [args.budgets[:3], args.budgets[3:]]
    for budgets in groups:
        for rule in args.rules:
            start_model(root, rule)
            region_diagnostics(root, rule)
            task = AnnotationTask(start_model(root, rule), pool=1)
            fingerprint = store_fingerprint(task.cfg, task.trainval.labels.numpy())
            shape = tuple(task.trainval.image_shape[1:])
            answers = Answers(root, rule)
            for seed in args.seeds:
                ranking = rankings(root, rule, seed, args.strategies, max(args.budgets), args.pool, args.samples)
                for oracle in args.oracles:
                    for budget in budgets:
                        for strategy in args.strategies:
                            point(root, rule, oracle, strategy, seed, budget, ranking, answers, fingerprint, shape)


# -- curves against effort: actions as a person spends them ---------------------------------------
class ClickAnswers:
    """The clicker's answer and its number of clicks per image, computed once per rule."""

    def __init__(self, root: Path, rule: str):
        self.root, self.rule, self.task = root, rule, None
        self.path = root / rule / "clicker_answers.npz"
        self.cache = dict(np.load(self.path)) if self.path.exists() else {}

    def __call__(self, index: int):
        if f"mask_{index}" not in self.cache:
            if self.task is None:
                self.task = AnnotationTask(start_model(self.root, self.rule), pool=1)
            decision, mask, clicks = image_actions("candidates", self.task.true_mask(index),
                                                   self.task.candidates(index))
            self.cache[f"mask_{index}"] = mask if decision == "irrelevant" else np.zeros(0, bool)
            self.cache[f"clicks_{index}"] = np.array(clicks)
        mask = self.cache[f"mask_{index}"]
        return ("irrelevant", mask) if mask.size else ("accepted", None), int(self.cache[f"clicks_{index}"])

    def save(self):
        partial = self.path.with_name(f"{self.path.stem}.{os.getpid()}.partial.npz")
        np.savez_compressed(partial, **self.cache)
        os.replace(partial, self.path)


def action_store(root: Path, rule: str, annotator: str, seed: int, actions: int, ranking: dict, clicks: ClickAnswers,
                 answers: Answers, discovery, true_mask, fingerprint, shape) -> dict:
    """The store of what ``annotator`` gives for ``actions`` actions (written again unless its
    ``spent.json`` is there) and what was spent: actions, images answered, images with a mask."""
    out = root / rule / tag("actions") / annotator / f"seed{seed}" / f"a{actions}"
    spent_path = out / "spent.json"
    if spent_path.exists():
        return json.loads(spent_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "feedback.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)
    with FeedbackStore(store_path, fingerprint, shape, f"oracle:{annotator}") as store:
        if annotator in GROUP_RULES:
            spent = answer_groups(discovery, store, true_mask, actions, GROUP_RULES[annotator])
        else:
            used, images = 0, []
            for index in ranking["random"]:
                answer, cost = (answers(ACTIONS[annotator], index), 1) if annotator == "painter" else clicks(index)
                if used + cost > actions:
                    break
                store.record(index, *answer)
                used += cost
                images.append(index)
            spent = {"actions": used, "answered": len(images)}
        spent["images"] = len([a for a in store.combined().values() if a.decision == "irrelevant"])
    answers.save()
    clicks.save()
    spent_path.write_text(json.dumps(spent))
    return spent


def action_point(root: Path, rule: str, annotator: str, seed: int, actions: int, spent: dict, previous: dict):
    """Fine-tune on the store of ``actions`` actions; a store without a mask is the control, and a
    store that spends what a smaller budget's spent (all groups) is that run (``same_as.json``)."""
    out = root / rule / tag("actions") / annotator / f"seed{seed}" / f"a{actions}"
    if (out / "run" / METRICS).exists() or (out / "control.json").exists() or (out / "same_as.json").exists():
        return
    same = [a for a, s in previous.items() if a < actions and s == spent]
    if same:
        (out / "same_as.json").write_text(json.dumps({"actions": min(same)}))
        return
    if not spent["images"]:
        m = control(root, rule, seed)
        (out / "control.json").write_text(json.dumps({"balanced_accuracy": m["balanced_accuracy"],
                                                      "feedback_irrelevant": 0, "best_epoch": m["best_epoch"]}))
        log(f"{rule} {annotator} seed {seed} A={actions}: no mask, the control ({m['balanced_accuracy']:.4f})")
        return
    base = start_model(root, rule)
    t0 = time.time()
    if ROUTE["route"] == "train":
        cfg = retrain_config(root, rule, mode="feedback", seed=seed, feedback_store=str(out / "feedback.sqlite"))
        m = train_choosing_lam(cfg, out / "run", progress=False)
    else:
        cfg = finetune_config(base, rule, seed=seed, finetune_feedback=str(out / "feedback.sqlite"))
        m = finetune_choosing_lam(base, cfg, out / "run", progress=False)
    log(f"{rule} {annotator} seed {seed} A={actions}: balanced accuracy {m['balanced_accuracy']:.4f} "
        f"({spent['actions']} actions, {m['feedback_irrelevant']} training images with a mask; {time.time() - t0:.0f} s)")


def run_actions(args):
    """The curves against effort, smallest budget first (module docstring)."""
    root = Path(args.root)
    setup = {}
    for actions in args.actions:
        for rule in args.rules:
            if rule not in setup:
                start_model(root, rule)
                region_diagnostics(root, rule)
                task = AnnotationTask(start_model(root, rule), pool=1)
                setup[rule] = (store_fingerprint(task.cfg, task.trainval.labels.numpy()),
                               tuple(task.trainval.image_shape[1:]), Answers(root, rule), ClickAnswers(root, rule),
                               task.true_mask, {})
            fingerprint, shape, answers, clicks, true_mask, discoveries = setup[rule]
            for seed in args.seeds:
                control(root, rule, seed)
                ranking = rankings(root, rule, seed, ["random", "shortcut"], max(args.actions), args.pool, args.samples)
                if seed not in discoveries and set(GROUP_RULES) & set(args.annotators):
                    discoveries[seed] = AnnotationTask(start_model(root, rule), pool=args.pool, samples=args.samples,
                                                       seed=seed).discovery()
                for annotator in args.annotators:
                    spent = {a: action_store(root, rule, annotator, seed, a, ranking, clicks, answers,
                                             discoveries.get(seed), true_mask, fingerprint, shape)
                             for a in args.actions if a <= actions}
                    action_point(root, rule, annotator, seed, actions, spent[actions], spent)


def collect_actions(root: Path) -> list[dict]:
    rows = []
    for spent_path in sorted(root.glob(f"*/{tag('actions')}/*/seed*/a*/spent.json")):
        out = spent_path.parent
        rule, _, annotator, seed, actions = out.parts[-5:]
        result = out
        if (out / "same_as.json").exists():
            result = out.parent / f"a{json.loads((out / 'same_as.json').read_text())['actions']}"
        if (result / "run" / METRICS).exists():
            m = read_metrics(result / "run")
        elif (result / "control.json").exists():
            m = json.loads((result / "control.json").read_text())
        else:
            continue
        spent = json.loads(spent_path.read_text())
        rows.append({"rule": rule, "annotator": annotator, "seed": int(seed[4:]), "actions": int(actions[1:]),
                     "spent": spent["actions"], "images": spent["images"], "balanced_accuracy": m["balanced_accuracy"],
                     "best_epoch": m["best_epoch"], "lam": m.get("lam_search", {}).get("lam", m.get("lam", ""))})
    return rows


def action_table(rows, rule, annotators, actions) -> list[str]:
    lines = ["| annotator | " + " | ".join(f"A = {a}" for a in actions) + " |", "|---|" + "---|" * len(actions)]
    for annotator in annotators:
        cells = []
        for a in actions:
            mine = [r for r in rows if (r["rule"], r["annotator"], r["actions"]) == (rule, annotator, a)]
            text = mean_std([r["balanced_accuracy"] for r in mine])[0]
            if mine:
                images = np.mean([r["images"] for r in mine])
                spent = np.mean([r["spent"] for r in mine])
                text += f" ({len(mine)} seeds; {spent:.0f} actions, {images:.0f} images)" if len(mine) < 3 else \
                    f" ({spent:.0f} actions, {images:.0f} images)"
            cells.append(text)
        lines.append(f"| {annotator} | " + " | ".join(cells) + " |")
    return lines


def _decorate(ax, ticks, start, spread, title: str, xlabel: str):
    """A learning-curve panel's frame: the start model's accuracy (mean ± std band), log x with the
    measured points as ticks, title and labels."""
    if start is not None:
        ax.axhspan(start - spread, start + spread, color="grey", alpha=0.25, lw=0)
        ax.axhline(start, color="grey", ls="--", lw=1, label="no annotated image")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test balanced accuracy")
    ax.grid(alpha=0.3)


def action_figure(rows, root: Path, rules, annotators, actions, seeds, stem: Path):
    """Balanced accuracy against actions, one panel per rule, mean ± std over seeds; the band is
    the control."""
    fig, axes = plt.subplots(1, len(rules), figsize=(5.2 * len(rules), 3.8), squeeze=False)
    for ax, rule in zip(axes[0], rules):
        start, spread = control_mean(root, rule, seeds)
        for annotator in annotators:
            points = []
            for a in sorted(actions):
                values = [r["balanced_accuracy"] for r in rows if (r["rule"], r["annotator"], r["actions"]) ==
                          (rule, annotator, a)]
                if values:
                    points.append((a, np.mean(values), np.std(values, ddof=1) if len(values) > 1 else 0.0))
            if points:
                a, mean, std = zip(*points)
                ax.errorbar(a, mean, yerr=std, marker="o", ms=4, capsize=3, label=annotator)
        _decorate(ax, actions, start, spread, f"{rule} rule", "annotator's actions")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(stem.with_suffix(".png"), dpi=130)
    plt.close(fig)


def action_summary(args):
    root, out = Path(args.root), Path(args.out)
    rows = collect_actions(root)
    actions = sorted(args.actions)
    text = ["# Learning curves against actions (written by experiments/learning_curves.py --actions)", "",
            "Test balanced accuracy after fine-tuning on what each simulated annotator gives for A actions, mean ± std "
            "over seeds, " + ("each store's masks trained on from scratch with the rule's config" if ROUTE["route"] == "train"
                              else f"{FINETUNE['finetune_epochs']} fine-tuning epochs, fine-tuning weight "
                                   f"{FINETUNE['finetune_lam']}") + "; in brackets the actions actually spent and the "
            "training images with a mask (means); each run's weight in the CSV.", ""]
    for rule in args.rules:
        start, spread = control_mean(root, rule, args.seeds)
        text += [f"## {rule} rule", "", "Control (no annotated image): "
                 + ("n/a" if start is None else f"{start:.3f} ± {spread:.3f}"), ""]
        text += action_table(rows, rule, args.annotators, actions) + [""]
    text += ["## Decoy picks at equal effort", "", "Share of the selected images whose saliency overlap with the true "
             "mask is above the median over the start model's test images; mean ± std over seeds.", ""]
    text += decoy_picks(root, args.rules, args.seeds, ["random", "shortcut"], actions) + [""]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag('action_curves')}.md").write_text("\n".join(text))
    with open(out / f"{tag('action_curves')}.csv", "w") as f:
        keys = ["rule", "annotator", "seed", "actions", "spent", "images", "balanced_accuracy", "best_epoch", "lam"]
        f.write(",".join(keys) + "\n")
        for r in rows:
            f.write(",".join(str(r[k]) for k in keys) + "\n")
    action_figure(rows, root, args.rules, args.annotators, actions, args.seeds, out / tag("action_curves"))
    log(f"wrote {out / tag('action_curves')}.md, .csv, .png ({len(rows)} points)")


# -- tables and figure ---------------------------------------------------------------------------
def collect(root: Path) -> list[dict]:
    rows = []
    found = list(root.glob("*/*/*/seed*/b*/run/metrics.json")) + list(root.glob("*/*/*/seed*/b*/control.json"))
    for path in sorted(found):
        rule, oracle, strategy, seed, budget = path.parts[-7:-2] if path.name == METRICS else path.parts[-6:-1]
        m = json.loads(path.read_text())
        rows.append({"rule": rule, "oracle": oracle, "strategy": strategy, "seed": int(seed[4:]),
                     "budget": int(budget[1:]), "balanced_accuracy": m["balanced_accuracy"],
                     "irrelevant": m["feedback_irrelevant"], "accepted": m["feedback_accepted"],
                     "best_epoch": m["best_epoch"]})
    return rows


def curve_table(rows, rule, oracle, budgets, strategies) -> list[str]:
    lines = ["| strategy | " + " | ".join(f"B = {b}" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for strategy in strategies:
        cells = []
        for b in budgets:
            values = [r["balanced_accuracy"] for r in rows if (r["rule"], r["oracle"], r["strategy"], r["budget"]) ==
                      (rule, oracle, strategy, b)]
            text = mean_std(values)[0]
            cells.append(f"{text} ({len(values)})" if values and len(values) < 3 else text)
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return lines


def mean_of(rows, **where):
    values = [r["balanced_accuracy"] for r in rows if all(r[k] == v for k, v in where.items())]
    return (float(np.mean(values)), len(values)) if values else (None, 0)


def control_mean(root: Path, rule: str, seeds) -> tuple:
    """Mean and std of the seeds' control runs (the budget-0 point), or of the start model alone."""
    control = root / rule / tag("control", weighted=False)
    values = [read_metrics(control / f"seed{s}")["balanced_accuracy"] for s in seeds
              if (control / f"seed{s}" / METRICS).exists()]
    if not values and (root / rule / "base" / METRICS).exists():
        values = [read_metrics(root / rule / "base")["balanced_accuracy"]]
    return (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0) if values else (None, None)


def aim(rows, rule, oracle, budgets, strategies, start) -> list[str]:
    """For each strategy, the smallest budget whose mean reaches random's mean at 200 images."""
    target, n = mean_of(rows, rule=rule, oracle=oracle, strategy="random", budget=200)
    if target is None:
        return ["random at B = 200 is not measured yet"]
    out = [f"random at B = 200: {target:.3f} ({n} seeds); without annotated images (the control): "
           + ("n/a" if start is None else f"{start:.3f}")]
    if start is not None and target - start < 0.005:
        return out + ["random does not improve on the control at B = 200, so no strategy can be said to reach it "
                      "sooner"]
    for strategy in strategies:
        reached = [b for b in sorted(budgets) if (mean_of(rows, rule=rule, oracle=oracle, strategy=strategy, budget=b)[0]
                                                  or -1) >= target]
        out.append(f"{strategy}: " + (f"reaches it at B = {reached[0]}" if reached else "does not reach it"))
    return out


def start_epochs(rows, rule, oracle) -> str:
    """How many fine-tuning runs kept the start model (best epoch 0: no validation gain)."""
    mine = [r for r in rows if (r["rule"], r["oracle"]) == (rule, oracle)]
    return f"{sum(r['best_epoch'] == 0 for r in mine)} of {len(mine)}"


def decoy_picks(root: Path, rules, seeds, strategies, budgets) -> list[str]:
    """Share of selected images whose saliency overlap with the true mask is above the test median."""
    lines = ["| rule | strategy | " + " | ".join(f"B = {b}" for b in budgets) + " |",
             "|---|---|" + "---|" * len(budgets)]
    for rule in rules:
        diag = root / rule / "test_diagnostics.json"
        if not diag.exists():
            continue
        median = json.loads(diag.read_text())["overlap_median"]
        rates = {s: {b: [] for b in budgets} for s in ("pool",) + tuple(strategies)}
        for seed in seeds:
            path = root / rule / "rankings" / f"seed{seed}.json"
            if not path.exists():
                continue
            r = json.loads(path.read_text())
            above = dict(zip(r["pool"], np.asarray(r["overlap"]) > median))
            for b in budgets:
                rates["pool"][b].append(float(np.mean(list(above.values()))))
                for s in strategies:
                    if len(r.get(s, [])) >= b:
                        rates[s][b].append(float(np.mean([above[i] for i in r[s][:b]])))
        for s, by_budget in rates.items():
            label = "whole pool" if s == "pool" else s
            lines.append(f"| {rule} | {label} | " + " | ".join(mean_std(by_budget[b])[0] for b in budgets) + " |")
    return lines


def region_table(root: Path, rules) -> list[str]:
    lines = ["| rule | keep_mass | test images | IoU | coverage of the decoy | with a candidate | "
             "candidates touch the decoy | candidate area (px) | decoy area (px) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for rule in rules:
        path = root / rule / "test_diagnostics.json"
        if path.exists():
            for keep_mass, d in json.loads(path.read_text())["regions"].items():
                lines.append(f"| {rule} | {keep_mass} | {d['images']} | {d['iou']:.3f} ± {d['iou_std']:.3f} | "
                             f"{d['coverage']:.3f} ± {d['coverage_std']:.3f} | {d['with_candidates']:.3f} | "
                             f"{d['touching_decoy']:.3f} | {d['candidate_area']:.1f} | {d['decoy_area']:.1f} |")
    return lines


def figure(rows, root: Path, rules, oracles, strategies, budgets, seeds, stem: Path):
    """Balanced accuracy against the budget, one panel per rule and oracle (a row shares its y axis),
    mean ± std over seeds; the strategies are drawn a little apart so that equal points stay visible;
    the band is the control (no annotated image)."""
    fig, axes = plt.subplots(len(rules), len(oracles), figsize=(5 * len(oracles), 3.6 * len(rules)), squeeze=False,
                             sharey="row")
    for i, rule in enumerate(rules):
        start, spread = control_mean(root, rule, seeds)
        for j, oracle in enumerate(oracles):
            ax = axes[i][j]
            for k, strategy in enumerate(strategies):
                points = []
                for b in sorted(budgets):
                    values = [r["balanced_accuracy"] for r in rows
                              if (r["rule"], r["oracle"], r["strategy"], r["budget"]) == (rule, oracle, strategy, b)]
                    if values:
                        points.append((b * 1.04 ** (k - 1.5), np.mean(values),
                                       np.std(values, ddof=1) if len(values) > 1 else 0.0))
                if points:
                    b, mean, std = zip(*points)
                    ax.errorbar(b, mean, yerr=std, marker="o", ms=4, capsize=3, label=strategy)
            _decorate(ax, budgets, start, spread, f"{rule} rule, oracle: {oracle}", "annotated images (B)")
    axes[0][-1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(stem.with_suffix(".png"), dpi=130)
    plt.close(fig)


def summary(args):
    root, out = Path(args.root), Path(args.out)
    rows = collect(root)
    budgets = sorted(args.budgets)
    text = ["# Learning curves (written by experiments/learning_curves.py)", ""]
    for rule in args.rules:
        for oracle in args.oracles:
            text += [f"## {rule} rule, oracle {oracle}", "", "Test balanced accuracy after fine-tuning, mean ± std "
                     "over seeds (the number of seeds in brackets where fewer than 3 finished).", ""]
            text += curve_table(rows, rule, oracle, budgets, args.strategies) + [""]
            start = control_mean(root, rule, args.seeds)[0]
            text += ["- " + line for line in aim(rows, rule, oracle, budgets, args.strategies, start)]
            text += [f"- runs whose selected model is the start model (no validation gain): "
                     f"{start_epochs(rows, rule, oracle)}", ""]
    text += ["## Decoy picks", "", "Share of the selected images whose saliency overlap with the true mask is above "
             "the median over the start model's test images; mean ± std over seeds.", ""]
    text += decoy_picks(root, args.rules, args.seeds, args.strategies, budgets) + [""]
    text += ["## Candidate regions on test images", ""] + region_table(root, args.rules) + [""]
    starts = [f"- {rule}: start model balanced accuracy {read_metrics(root / rule / 'base')['balanced_accuracy']:.4f}"
              for rule in args.rules if (root / rule / "base" / METRICS).exists()]
    text += ["## Start models", ""] + starts + [""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_curves.md").write_text("\n".join(text))
    with open(out / "learning_curves.csv", "w") as f:
        keys = ["rule", "oracle", "strategy", "seed", "budget", "balanced_accuracy", "irrelevant", "accepted",
                "best_epoch"]
        f.write(",".join(keys) + "\n")
        for r in rows:
            f.write(",".join(str(r[k]) for k in keys) + "\n")
    figure(rows, root, args.rules, args.oracles, args.strategies, budgets, args.seeds, out / "learning_curves")
    log(f"wrote {out / 'learning_curves.md'}, .csv, .png ({len(rows)} fine-tuning runs)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="where the runs and stores go")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "annotation"))
    ap.add_argument("--rules", default="corners,position")
    ap.add_argument("--budgets", default=None, help="the first three run first  [default: 50,100,200,25,400, "
                    "or none with --actions]")
    ap.add_argument("--actions", default=None, help="curves against the annotator's actions, e.g. 5,10,20,50,100,200")
    ap.add_argument("--annotators", default="groups,finder,clicker,painter", help="with --actions: " + ", ".join(ACTIONS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--oracles", default=",".join(ORACLES))
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--finetune-epochs", type=int, default=FINETUNE["finetune_epochs"],
                    help="epochs of every fine-tuning run and of the control (other than 6: in *_e<N> directories)")
    ap.add_argument("--finetune-lam", default="1", help="the fine-tuning weight: a number or auto "
                    "(other than [001]'s 1: in *_lam<weight> directories)")
    ap.add_argument("--route", choices=("finetune", "train"), default="finetune",
                    help="fine-tune the start model on each store, or train from scratch on its masks (in *_train "
                         "directories)")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    args.rules = [r for r in args.rules.split(",") if r]
    args.actions = [int(a) for a in args.actions.split(",")] if args.actions else []
    args.annotators = [a for a in args.annotators.split(",") if a]
    unknown = sorted(set(args.annotators) - set(ACTIONS))
    if unknown:
        ap.error(f"unknown annotator {unknown[0]!r}; use some of {', '.join(ACTIONS)}")
    budgets = args.budgets if args.budgets is not None else ("" if args.actions else "50,100,200,25,400")
    args.budgets = [int(b) for b in budgets.split(",") if b]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.strategies = [s for s in args.strategies.split(",") if s]
    args.oracles = [o for o in args.oracles.split(",") if o]
    torch.set_num_threads(1)
    FINETUNE["finetune_epochs"] = args.finetune_epochs
    ROUTE["route"] = args.route
    FINETUNE["finetune_lam"] = args.finetune_lam if args.finetune_lam == "auto" else float(args.finetune_lam)
    if not args.summary_only:
        if args.budgets:
            run_all(args)
        if args.actions:
            run_actions(args)
    if args.budgets:
        summary(args)
    if args.actions:
        action_summary(args)


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m pyro_ebnn.run COMMAND``.

  train      train one fold from scratch (any mode)                  -> OUT/metrics.json, model.pt
  annotate   show a trained run's explanations to an annotator (a page, or an oracle) -> a feedback store
  finetune   fine-tune a trained run with feedback on a small budget  -> OUT/metrics.json, model.pt
  evaluate   re-evaluate a trained run: metrics, calibration, overlap  -> OUT/metrics.json, figures
  explain    attribution grids of two or more runs on the same images  -> OUT/*.png, *.pdf
  grid       train folds x modes of one config, then aggregate
  aggregate  mean +- std tables (Markdown, CSV) over runs under a directory
  compare    rules x modes x folds (baselines on the same footing) -> [000] Table 1 / 2 layout
  main       the default job: Decoy MNIST position rule, none vs feedback, short CPU budget
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from .annotate import ORACLES, POOL, SAMPLES, STRATEGIES
from .annotate import annotate as annotate_run
from .errors import EBNNError
from .experiment import evaluation, search
from .experiment.compare import compare as compare_grid
from .experiment.compare import parse_modes, parse_sweeps, parse_weights
from .experiment.compare import run_grid as train_grid
from .experiment.config import DECOY_DATASETS, MODES, STEPS, load_config, parse_sets
from .experiment.protocol import use_threads
from .experiment.report import number, shortcut_report
from .experiment.tables import DEFAULT_COLUMNS, collect, read_summary, summarize, write_tables
from .explain import REFERENCES, SAMPLE_IMAGES, parse_methods
from .explain.regions import DEFAULT_PROPOSALS, PROPOSALS
from .progress import close_bars


def _fail(e: Exception):
    message = str(e).strip()
    if "Original Traceback" in message:  # raised in a DataLoader worker: the original line is the last one
        message = message.splitlines()[-1].split(": ", 1)[-1]
    close_bars()  # the error on a line of its own, not after a bar's partial line
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EBNNError as e:
            _fail(e)
        except KeyboardInterrupt:
            close_bars()
            click.echo("interrupted; the last finished epoch is in OUT/checkpoint.pt (run again to resume)", err=True)
            sys.exit(130)


@click.group(cls=_Group)
def cli():
    """pyro-ebnn: Bayesian CNNs with explanation feedback as evidence."""


def _deprecated(new: str, values: dict = None):
    """A click callback for an old option spelling: a one-line note, and the value under its new
    spelling (``values`` maps old values to new ones)."""
    def callback(ctx, param, value):
        if value is None or value == () or value is False:
            return value
        click.echo(f"note: {param.opts[0]} is now {new}; the old spelling will be removed", err=True)
        return (values or {}).get(value, value)
    return callback


def _config(config, mode, sets, seed, device, fold):
    overrides = parse_sets(sets)
    for key, value in (("mode", mode), ("seed", seed), ("device", device), ("fold", fold)):
        if value is not None:
            overrides[key] = value
    return load_config(config, overrides)


def _common(f):
    f = click.option("--config", "config", type=click.Path(), default=None, help="configs/<file>.yaml")(f)
    f = click.option("--mode", type=click.Choice(list(MODES)), default=None,
                     help="none | feedback (evidence) | augment | rrr | l1grad | cdep | eg | rrr_gradcam | hint | rbr (baselines)")(f)
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a config key (repeatable)")(f)
    f = click.option("--seed", type=int, default=None)(f)
    f = click.option("--device", default=None, help="auto | cpu | cuda")(f)
    f = click.option("--fold", type=int, default=None)(f)
    f = click.option("--data-dir", "data_dir", default=None,
                     help="the data's folder (config key data_dir): the image folder of dataset: folder, the files of "
                          "a real-world set (oxford_pets, sbd, isic, dogs_vs_cats) or the torchvision MNIST root "
                          "(DIR/MNIST/raw)")(f)
    return f


def _report(m, warnings: bool = False):
    """The shortcut report of a run's metrics (and its warnings) on the terminal."""
    text = shortcut_report(m)
    if text:
        click.echo(text)
    for line in m.get("warnings", []) if warnings else ():
        click.echo(f"warning: {line}", err=True)


def _summary(m, keys=("balanced_accuracy", "f1_macro", "roc_auc", "decoy_swap_accuracy")):
    """``key=value`` of the metrics ``keys`` that ``m`` has, small values not shown as 0.0000."""
    return "  ".join(f"{k}={number(m[k], 4)}" for k in keys if isinstance(m.get(k), float))


def _store_use(m) -> str:
    """How many training images the run's feedback store gave a mask, accepted or skipped ("" without one)."""
    if "feedback_store" not in m:
        return ""
    return "  feedback: " + ", ".join(f"{m[f'feedback_{d}']} {d}" for d in ("irrelevant", "accepted", "skipped"))


def _overlap(m, method: str) -> str:
    """``overlap_<method>=value ± standard error`` of the metrics ``m`` (no ± where it has no standard error)."""
    se = m.get(f"overlap_{method}_se")
    pm = f" ± {number(se, 4)}" if isinstance(se, float) and se == se else ""
    return f"overlap_{method}={number(m[f'overlap_{method}'], 4)}{pm}"


@cli.command()
@_common
@click.option("--out", required=True, type=click.Path(), help="run directory")
@click.option("--feedback", default=None, type=click.Path(),
              help="a feedback store (from annotate): train on its masks instead of the dataset's")
@click.option("--resume/--no-resume", default=True, help="continue from OUT/checkpoint.pt if present")
def train(config, mode, sets, seed, device, fold, data_dir, out, feedback, resume):
    """Train one model from scratch ([000] protocol)."""
    sets = list(sets) + ([f"data_dir={data_dir}"] if data_dir else []) + ([f"feedback_store={feedback}"] if feedback else [])
    cfg = _config(config, mode, sets, seed, device, fold)
    if config is None and os.environ.get("RANK", "0") == "0":  # one line, also in a torchrun group
        rule = f", rule {cfg.rule}" if cfg.dataset in DECOY_DATASETS else ""
        click.echo(f"no --config: training {cfg.dataset}{rule}, mode {cfg.mode}; --config configs/<file>.yaml chooses "
                   "other data", err=True)
    m = search.train_choosing_lam(cfg, out, resume=resume)
    if m:  # process 0 of a torchrun group reports; the others return nothing
        click.echo(f"{cfg.name} [{cfg.mode}] fold {cfg.fold}: {_summary(m)}{_store_use(m)}  -> {out}/metrics.json")
        _report(m)


@cli.command()
@_common
@click.option("--run", "run_dir", required=True, type=click.Path(), help="directory of a trained run")
@click.option("--out", required=True, type=click.Path())
@click.option("--feedback", default=None, type=click.Path(),
              help="a feedback store (from annotate): fine-tune on its answers instead of a random budget")
@click.option("--resume/--no-resume", default=True)
def finetune(config, mode, sets, seed, device, fold, data_dir, run_dir, out, feedback, resume):
    """Fine-tune a trained run with feedback on a random budget of annotated images ([001]), or on
    the images an annotator answered (--feedback)."""
    sets = list(sets) + ([f"data_dir={data_dir}"] if data_dir else [])
    if feedback:
        sets.append(f"finetune_feedback={feedback}")
    if config is None:
        config = str(Path(run_dir) / "config.yaml")
    # the run's own mode: finetune checks the network and switches the mode to feedback
    cfg = _config(config, None, sets, seed, device, fold)
    m = search.finetune_choosing_lam(run_dir, cfg, out, resume=resume)
    if m:
        click.echo(f"{cfg.name} fine-tuned: {_summary(m)}{_store_use(m)}  -> {out}/metrics.json")
        _report(m)


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="directory of a trained run")
@click.option("--store", required=True, type=click.Path(),
              help="the feedback store (an SQLite file, created when missing; one per dataset)")
@click.option("--budget", required=True, type=int, help="images to show (or to answer, with --oracle)")
@click.option("--select", "strategy", default="random", show_default=True, type=click.Choice(list(STRATEGIES)),
              help="selection strategy: uniform (the papers'), predictive entropy, BALD, the posterior "
                   "samples' disagreement about the explanation, or the share of the explanation on the pattern its "
                   "group of alike explanations shares (shortcut)")
@click.option("--pool", default=POOL, show_default=True, type=int,
              help="training images scored: a random draw seeded by --seed, the same for every strategy")
@click.option("--samples", default=SAMPLES, show_default=True, type=int,
              help="posterior samples behind the scores and the predictions")
@click.option("--seed", default=0, show_default=True, type=int, help="seeds the pool and the random strategy")
@click.option("--annotator", default=None, help="whose answers these are  [default: your login name; "
                                                "oracle:KIND with --oracle]")
@click.option("--oracle", default=None, type=click.Choice(list(ORACLES)),
              help="answer headlessly from the dataset's masks: the whole true mask (truth) or the candidate "
                   "regions that touch it (candidates); writes the store and exits")
@click.option("--proposals", default=DEFAULT_PROPOSALS, show_default=True, type=click.Choice(list(PROPOSALS)),
              help="how regions are proposed (the page's outlines, the candidates oracle): compact high-attribution "
                   "blobs grown to fine superpixels, or [002]'s candidate regions (thesis)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address the page listens on")
@click.option("--port", default=8765, show_default=True, type=int, help="port of the page (0: any free port)")
@click.option("--token", default=None,
              help="secret every request must carry; required off 127.0.0.1  [default on 127.0.0.1: the one kept "
                   "beside the store in STORE.page.json, made on first use]")
def annotate(run_dir, store, budget, strategy, pool, samples, seed, annotator, oracle, proposals, host, port, token):
    """Show a trained run's explanations of its training predictions to an annotator, who marks
    irrelevant regions, accepts or skips ([001] Fig. 1, step 3); answers go into the store."""
    annotate_run(run_dir, store, budget, strategy, pool=pool, samples=samples, seed=seed, annotator=annotator,
                 oracle=oracle, host=host, port=port, token=token, echo=click.echo, proposals=proposals)


_REFERENCE_HELP = ("the reference image of DeepLIFT and Occlusion: black, or every pixel at the training "
                   "images' channel mean")


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="directory of a trained run")
@click.option("--out", default=None, type=click.Path(), help="where to write metrics.json and figures (default: the run)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a key of the run's config (repeatable)")
@click.option("--device", default=None)
@click.option("--attributions/--no-attributions", default=True, show_default=True,
              help="attribution overlap with the masks on the test set (Captum)")
@click.option("--methods", default="saliency,deeplift,gradcam,occlusion", show_default=True,
              help="comma-separated attribution methods")
@click.option("--samples", default=0, show_default=True, type=int,
              help="average attributions over S posterior weight samples (0: at the posterior mean)")
@click.option("--max-images", "max_images", default=None, metavar="N|all",
              help="the overlap on the first N masked test images, or on all of them  [default: a fixed random "
                   "sample of --sample-images]")
@click.option("--sample-images", "sample_images", default=None, type=int, metavar="N",
              help=f"the overlap on N masked test images drawn at random, seeded, the same for every run on the same "
                   f"test set; reports the standard error  [default: {SAMPLE_IMAGES}]")
@click.option("--reference", default=None, type=click.Choice(list(REFERENCES)),
              help=_REFERENCE_HELP + " (default: the run's attribution_reference)")
@click.option("--baseline", "old_reference", default=None, hidden=True, type=click.Choice(["zero", "mean"]),
              callback=_deprecated("--reference", {"zero": "black"}))
@click.option("--figures/--no-figures", default=True, show_default=True)
@click.option("--figure-images", "figure_images", default=8, show_default=True, type=int,
              help="rows of the attribution grids")
@click.option("--checkpoint", default="selected", show_default=True, type=click.Choice(list(evaluation.CHECKPOINTS)),
              help="the model selected on validation (model.pt), or the network after the last epoch "
                   "(checkpoint.pt; needs another --out)")
@click.option("--weights", "old_checkpoint", default=None, hidden=True, type=click.Choice(["selected", "last"]),
              callback=_deprecated("--checkpoint"))
@click.option("--threads", default=None, type=int, help="torch CPU threads (default: the run's threads key)")
def evaluate(run_dir, out, sets, device, attributions, methods, samples, max_images, sample_images, reference,
             old_reference, figures, figure_images, checkpoint, old_checkpoint, threads):
    """Evaluate a trained run on its test sets: classification, calibration/uncertainty (NLL, Brier,
    ECE, predictive entropy, mutual information), attribution overlap, figures."""
    if max_images is not None and sample_images is not None:
        raise EBNNError("give --max-images (the first N masked test images, or all) or --sample-images (N at random), "
                        "not both")
    sample_images = SAMPLE_IMAGES if sample_images is None else sample_images
    evaluation.overlap_images(max_images, sample_images)  # bad values fail before the work
    if out is None:
        also = " and writes the figures there" if figures else ""
        click.echo(f"no --out: this updates {Path(run_dir) / 'metrics.json'}{also}; --out DIR writes elsewhere", err=True)
    out = out or run_dir
    reference = reference or old_reference
    if reference:
        sets = tuple(sets) + (f"attribution_reference={reference}",)
    if threads:
        sets = tuple(sets) + (f"threads={threads}",)
    m = evaluation.evaluate_run(run_dir, out, sets=sets, device=device, attributions=attributions, methods=methods,
                                samples=samples, max_images=max_images, figures=figures,
                                figure_images=figure_images, checkpoint=old_checkpoint or checkpoint,
                                sample_images=sample_images)
    extra = "  ".join([_summary(m, ("ece", "nll"))] + [_overlap(m, x) for x in parse_methods(methods)
                                                       if isinstance(m.get(f"overlap_{x}"), float)])
    if attributions and m.get("n_overlap_images"):
        which = {"random": ", drawn at random", "first": ", the first ones", "all": ", all"}.get(
            m.get("overlap_selection"), "")
        extra += f"  (overlap ± standard error on {m['n_overlap_images']} masked test images{which})"
    click.echo(f"{_summary(m)}  {extra}  ({m['eval_seconds']:.0f} s)  -> {out}/metrics.json")
    _report(m, warnings=True)


@cli.command()
@click.option("--run", "run_dirs", multiple=True, required=True, type=click.Path(),
              help="directory of a trained run (repeat: two or more, trained on the same data)")
@click.option("--out", required=True, type=click.Path(), help="directory for the figures")
@click.option("--n-images", "n_images", default=8, show_default=True, type=int, help="test images (rows)")
@click.option("--methods", default="saliency,deeplift,gradcam,occlusion", show_default=True)
@click.option("--samples", default=0, show_default=True, type=int,
              help="average attributions over S posterior weight samples (0: at the posterior mean)")
@click.option("--reference", default="black", show_default=True, type=click.Choice(list(REFERENCES)),
              help=_REFERENCE_HELP)
@click.option("--baseline", "old_reference", default=None, hidden=True, type=click.Choice(["zero", "mean"]),
              callback=_deprecated("--reference", {"zero": "black"}))
@click.option("--device", default=None)
@click.option("--threads", default=None, type=int, help="torch CPU threads (default: torch's choice)")
def explain(run_dirs, out, n_images, methods, samples, reference, old_reference, device, threads):
    """Attribution grids (image + mask | run A | run B | ...) of the same test images, one per method."""
    use_threads(threads)
    written = evaluation.explain_runs(run_dirs, out, n_images=n_images, methods=methods, samples=samples,
                                      device=device, reference=old_reference or reference)
    for method, paths in written.items():
        click.echo(f"{method}: {', '.join(paths)}")


@cli.command()
@click.argument("root", type=click.Path(exists=True))
@click.option("--out", default=None, type=click.Path(), help="prefix of the .md/.csv tables (default ROOT/summary)")
@click.option("--columns", default=None, help="comma-separated metric keys, or 'wide'")
@click.option("--by", default="name,mode", show_default=True,
              help="comma-separated keys that form the rows: metrics or config keys (e.g. name,mode,rho_init)")
@click.option("--with-summary", "earlier", multiple=True, type=click.Path(),
              help="a summary .csv that aggregate wrote of other runs (same --by): its groups are pooled "
                   "with the runs under ROOT, exactly as if those runs were here (repeatable)")
def aggregate(root, out, columns, by, earlier):
    """Mean ± std over the runs (folds, seeds) found under ROOT, one row per value of --by.

    Writes OUT.md, OUT.csv and OUT_runs.csv (one row per run found under ROOT)."""
    found = collect(root)
    if not found:
        raise EBNNError(f"no metrics.json under {root}; train some runs first")
    cols = tuple(columns.split(",")) if columns else DEFAULT_COLUMNS
    keys = tuple(k.strip() for k in by.split(",") if k.strip())
    if not keys:
        raise EBNNError("--by needs at least one key, e.g. --by name,mode")
    try:
        before = [row for path in earlier for row in read_summary(path, keys, cols)]
        rows = summarize(found, cols, by=keys, earlier=before)
    except ValueError as e:
        raise EBNNError(str(e))
    click.echo(write_tables(rows, out or Path(root) / "summary", cols, by=keys, runs=found))


def _folds(text: str) -> list[int]:
    try:
        return [int(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise EBNNError(f"--folds takes comma-separated fold numbers such as 0,1,2; got {text!r}")


class _Jobs(click.ParamType):
    """``--jobs``: a positive number of runs at once, or auto."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and value >= 1:
            return value
        if str(value).strip().lower() == "auto":
            return "auto"
        try:
            n = int(str(value).strip())
        except ValueError:
            n = None
        if n is None or n < 1:
            self.fail(f"{value!r} is not a number of runs; use a positive number (e.g. --jobs 2) or --jobs auto",
                      param, ctx)
        return n


_JOBS_HELP = ("runs trained at once, each in its own process on CPU cores / JOBS threads; auto: on a CUDA device "
              "min(runs, CPU cores / 2, free GPU memory / a run's), on the CPU {cpu}")


def run_grid(config, modes: str, folds, out, sets=(), device=None, jobs="auto", cpu_jobs: int = 1):
    """Train every (mode, fold) of one config that is not finished yet, then aggregate."""
    train_grid([config], parse_modes(modes), folds, out, sets, device, overlap=(),
               echo=lambda s: click.echo(s, err=True), jobs=jobs, cpu_jobs=cpu_jobs)
    found = collect(out)
    return write_tables(summarize(found), Path(out) / "summary", runs=found)


@cli.command()
@click.option("--config", "configs", multiple=True, required=True, type=click.Path())
@click.option("--modes", default="none,feedback", show_default=True,
              help="comma-separated modes (MODE@deterministic for the plain network)")
@click.option("--folds", default="0,1,2", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--device", default=None)
@click.option("--jobs", default="auto", show_default=True, type=_Jobs(), help=_JOBS_HELP.format(cpu="1"))
@click.option("--out", required=True, type=click.Path())
def grid(configs, modes, folds, sets, device, jobs, out):
    """Train every (config, mode, fold) that is not finished yet, then aggregate."""
    text = ""
    for config in configs:
        text = run_grid(config, modes, _folds(folds), out, sets, device, jobs)
    click.echo(text)


@cli.command()
@click.option("--config", "configs", multiple=True, required=True, type=click.Path(),
              help="one config per decoy rule / dataset (repeatable)")
@click.option("--modes", default="none,feedback,augment,rrr,l1grad,cdep,eg", show_default=True,
              help="comma-separated modes; MODE@deterministic trains the plain network of the baseline's paper")
@click.option("--methods", "old_modes", default=None, hidden=True, callback=_deprecated("--modes"))
@click.option("--folds", default="0,1,2", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a config key in every run")
@click.option("--device", default=None)
@click.option("--overlap", default="saliency", show_default=True,
              help="attribution methods for the overlap table (comma-separated; 'none' to skip)")
@click.option("--overlap-images", "overlap_images", default=2000, show_default=True, type=int,
              help="first N masked test images per run for the overlap")
@click.option("--penalty-weights", "penalty_weights", default=None, metavar="W1,W2,...",
              help="sweep: train every penalty mode (rrr, l1grad, cdep, eg, rrr_gradcam, hint, rbr) once per weight and report the weight "
                   "with the best mean validation score (use with --set validation_decoys=test)")
@click.option("--sweep", "sweeps", multiple=True, metavar="MODE:KEY=V1,V2,...",
              help="train MODE once per value of a config key and report the value with the best mean validation "
                   "score, e.g. feedback:lam=5e-5,5e-4 (repeatable; several keys of one mode are crossed)")
@click.option("--collect-only", is_flag=True, help="train nothing; tabulate the finished runs under OUT")
@click.option("--jobs", default="auto", show_default=True, type=_Jobs(), help=_JOBS_HELP.format(cpu="1"))
@click.option("--out", required=True, type=click.Path(), help="directory of the runs; tables in OUT/compare.md, .csv")
def compare(configs, modes, old_modes, folds, sets, device, overlap, overlap_images, penalty_weights, sweeps,
            collect_only, jobs, out):
    """Train (or collect) every rule x mode x fold and write the [000] Table 1 / Table 2 layout:
    balanced accuracy, macro F1, ROC AUC, overlap, cost, mean ± std over folds."""
    ov = () if overlap.strip().lower() in ("", "none") else parse_methods(overlap)
    text = compare_grid(configs, old_modes or modes, _folds(folds), out, sets, device, ov, overlap_images,
                        train=not collect_only, echo=lambda s: click.echo(s, err=True),
                        penalty_weights=parse_weights(penalty_weights), sweeps=parse_sweeps(sweeps), jobs=jobs)
    click.echo(text)
    click.echo(f"wrote {out}/compare.md and {out}/compare.csv")


@cli.command()
@click.option("--out", default="results/main", type=click.Path())
@click.option("--epochs", default=8, show_default=True)
@click.option("--folds", default="0,1,2", show_default=True)
@click.option("--eval-samples", default=10, show_default=True, help="posterior predictive samples at test time")
@click.option("--device", default=None)
@click.option("--jobs", default="auto", show_default=True, type=_Jobs(),
              help=_JOBS_HELP.format(cpu="the CPU cores, at most the runs"))
@click.option("--step", default=None, type=click.Choice(list(STEPS)),
              help="how training steps run (config key step)  [default: the config's, auto: a CUDA graph on a GPU, "
                   "eager on the CPU]")
def main(out, epochs, folds, eval_samples, device, jobs, step):
    """Default job: Decoy MNIST position rule, no feedback vs feedback, short CPU budget."""
    t0 = time.time()
    config = str(Path(__file__).resolve().parent.parent / "configs" / "decoy_mnist_position.yaml")
    if not Path(config).exists():
        raise EBNNError(f"{config} is missing; run from a checkout of pyro-ebnn")
    folds = _folds(folds)
    cpu_jobs = max(1, min(2 * len(folds), os.cpu_count() or 1))
    sets = [f"epochs={epochs}", f"eval_samples={eval_samples}"] + ([f"step={step}"] if step else [])
    text = run_grid(config, "none,feedback", folds, out, sets=sets, device=device, jobs=jobs, cpu_jobs=cpu_jobs)
    click.echo(text)
    click.echo(f"wrote {out}/summary.md and {out}/summary.csv in {time.time() - t0:.0f} s")

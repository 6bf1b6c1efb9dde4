"""One annotation session ([001] Fig. 1, step 3): select images of a trained run, then serve the
page for a person, or answer headlessly with an oracle; every answer goes into the feedback store.
``python -m pyro_ebnn.run annotate`` calls :func:`annotate`.

Serving the page keeps its state beside the store, in ``<store>.page.json`` (readable by its owner
only): the page's token, so that the address printed once keeps working after the server restarts,
and each annotator's selection while it has unanswered images, so that a restart with the same
options shows the same images (an open tab carries on where it was) instead of choosing new ones.
Once every image of a selection has an answer, the next start selects new images."""
from __future__ import annotations

import getpass
import json
import os
import secrets
import shlex
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

from ..data.store import DECISIONS
from ..explain.regions import DEFAULT_PROPOSALS
from .oracle import ORACLES, answer_with_oracle
from .server import AnnotateError, is_loopback, serve
from .task import POOL, SAMPLES, AnnotationTask

__all__ = ["annotate", "default_annotator", "finetune_command", "page_state_path", "page_token", "start_command"]

PAGE_STATE_SUFFIX = ".page.json"


def default_annotator(oracle: Optional[str] = None) -> str:
    """``oracle:<kind>`` for an oracle, else the login name (``anonymous`` when there is none)."""
    if oracle:
        return f"oracle:{oracle}"
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "anonymous"


def finetune_command(run_dir, store) -> str:
    """The command that fine-tunes the run on the store's answers (shown when the page is done)."""
    out = f"{str(run_dir).rstrip('/')}-feedback"
    return " ".join(["python -m pyro_ebnn.run finetune", "--run", shlex.quote(str(run_dir)), "--feedback",
                     shlex.quote(str(store)), "--out", shlex.quote(out)])


def start_command(run_dir, store, budget: int, strategy: str, pool: int = POOL, samples: int = SAMPLES,
                  seed: int = 0, annotator: Optional[str] = None, host: str = "127.0.0.1", port: int = 8765,
                  token: Optional[str] = None) -> str:
    """The ``annotate`` command that serves the same page again (shown when the page loses its
    server); options at their defaults are left out, and the token only when it was given."""
    words = ["--run", str(run_dir), "--store", str(store), "--budget", str(budget), "--select", strategy]
    for option, value, default in (("--pool", pool, POOL), ("--samples", samples, SAMPLES), ("--seed", seed, 0),
                                   ("--annotator", annotator, None), ("--host", host, "127.0.0.1"),
                                   ("--port", port, 8765), ("--token", token, None)):
        if value != default:
            words += [option, str(value)]
    return " ".join(["python -m pyro_ebnn.run annotate"] + [shlex.quote(w) for w in words])


def page_state_path(store_path) -> Path:
    """Where the page keeps its token and the unfinished selections: ``<store>.page.json``."""
    return Path(f"{store_path}{PAGE_STATE_SUFFIX}")


def _read_page_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise AnnotateError(f"cannot read the page's saved token and selection in {path} ({e}); delete the file "
                            "(a new token and a new selection are made)") from None
    if not isinstance(state, dict):
        raise AnnotateError(f"{path} does not hold the page's saved token and selection; delete the file "
                            "(a new token and a new selection are made)")
    return state


def _write_page_state(path: Path, update: dict):
    """Merge ``update`` into the saved state (re-read first), atomically, readable by the owner only."""
    state = _read_page_state(path)
    for key, value in update.items():
        state[key] = dict(state.get(key, {}), **value) if isinstance(value, dict) else value
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as f:
        os.chmod(f.name, 0o600)
        json.dump(state, f, indent=1)
    os.replace(f.name, path)


def page_token(store_path, token: Optional[str] = None) -> str:
    """The page's token: ``token`` when given (and nothing is saved), else the one saved beside
    the store, made and saved on first use. The same address then works after a restart."""
    if token:
        return token
    path = page_state_path(store_path)
    saved = _read_page_state(path).get("token")
    if isinstance(saved, str) and saved:
        return saved
    token = secrets.token_urlsafe(16)
    _write_page_state(path, {"token": token})
    return token


@contextmanager
def _stage(what: str):
    """One line on standard error per start-up stage: what it does, then how long it took."""
    sys.stderr.write(f"{what} … ")
    sys.stderr.flush()
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        sys.stderr.write("\n")  # the error starts on a line of its own
        raise
    sys.stderr.write(f"{time.perf_counter() - started:.1f} s\n")
    sys.stderr.flush()


def _select(task: AnnotationTask, state_path: Optional[Path], key: dict, annotator: str, strategy: str, budget: int,
            answered: set, echo: Callable[[str], None]):
    """Resume this annotator's unfinished selection saved for the same options, else select anew
    (and save the selection when ``state_path`` is given)."""
    saved = _read_page_state(state_path).get("selections", {}).get(annotator) if state_path else None
    pool = set(task.pool.tolist())
    if (isinstance(saved, dict) and saved.get("options") == key and isinstance(saved.get("indices"), list)
            and saved["indices"] and set(saved["indices"]) <= pool and set(saved["indices"]) - answered):
        task.indices = [int(i) for i in saved["indices"]]
        left = len(set(task.indices) - answered)
        echo(f"resumed the unfinished selection of {len(task.indices)} pool images by {strategy} ({left} without "
             f"an answer from {annotator}; once all have one, the next start selects new images)")
        return
    with _stage(f"ranking {len(task.pool)} pool images by {strategy}"):
        task.select(strategy, budget, answered)
    echo(f"selected {len(task.indices)} of {len(task.pool)} pool images by {strategy} "
         f"({len(answered)} answered by {annotator} before)")
    if state_path:
        _write_page_state(state_path, {"selections": {annotator: {"options": key, "indices": task.indices}}})


def annotate(run_dir, store_path, budget: int, strategy: str, pool: int = POOL, samples: int = SAMPLES,
             seed: int = 0, annotator: Optional[str] = None, oracle: Optional[str] = None,
             host: str = "127.0.0.1", port: int = 8765, token: Optional[str] = None,
             echo: Callable[[str], None] = print, proposals: str = DEFAULT_PROPOSALS) -> Optional[Counter]:
    """Select ``budget`` images of the run ``run_dir`` by ``strategy`` among those ``annotator``
    has not answered in the store, then either answer them with ``oracle`` and return the count of
    each decision, or serve the page on ``host``:``port`` until interrupted (``proposals``: how the
    page and the candidates oracle propose regions, blobs or thesis). Off loopback the page
    needs a ``token``; on loopback the one saved beside the store is used (made on first use) when
    none is given. Serving resumes this annotator's unfinished selection made with the same options
    (module docstring). Each start-up stage prints one line with its time on standard error."""
    if oracle is not None and oracle not in ORACLES:
        raise AnnotateError(f"unknown oracle {oracle!r}; use one of {', '.join(ORACLES)}")
    if oracle is None and not is_loopback(host) and not token:
        raise AnnotateError(f"serving on {host} exposes the page to the network; pass --token SECRET, "
                            "or serve on 127.0.0.1")
    store_path = Path(store_path)
    with _stage(f"loading the run {run_dir} (its model and dataset)"):
        task = AnnotationTask(run_dir, pool=pool, samples=samples, seed=seed, proposals=proposals)
    with task.open_store(store_path, annotator or default_annotator(oracle)) as store:
        answered = store.answered()
        options = {"run": str(Path(run_dir).resolve()), "select": strategy, "budget": budget, "pool": pool,
                   "samples": samples, "seed": seed}
        _select(task, None if oracle else page_state_path(store_path), options, store.annotator, strategy, budget,
                answered, echo)
        if oracle is not None:
            decisions = answer_with_oracle(task, store, oracle)
            echo(f"oracle {oracle} answered {sum(decisions.values())} images: "
                 + ", ".join(f"{decisions[d]} {d}" for d in DECISIONS) + f" -> {store_path}")
            return decisions
        first = next((i for i in task.indices if i not in answered), task.indices[0])
        with _stage("explaining the first image"):
            task.prediction(first), task.heatmap(first), task.regions(first)
        serve(task, store, host=host, port=port, token=page_token(store_path, token),
              next_command=finetune_command(run_dir, store_path),
              start_command=start_command(run_dir, store_path, budget, strategy, pool, samples, seed, annotator,
                                          host, port, token),
              discovery=task.discovery())
    return None

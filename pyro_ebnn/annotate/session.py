"""One annotation session ([001] Fig. 1, step 3): select images of a trained run, then serve the
page for a person, or answer headlessly with an oracle; every answer goes into the feedback store.
``python -m pyro_ebnn.run annotate`` calls :func:`annotate`."""
from __future__ import annotations

import getpass
import secrets
import shlex
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

from ..data.store import DECISIONS
from .oracle import ORACLES, answer_with_oracle
from .server import AnnotateError, is_loopback, serve
from .task import POOL, SAMPLES, AnnotationTask

__all__ = ["annotate", "default_annotator", "finetune_command"]


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


def annotate(run_dir, store_path, budget: int, strategy: str, pool: int = POOL, samples: int = SAMPLES,
             seed: int = 0, annotator: Optional[str] = None, oracle: Optional[str] = None,
             host: str = "127.0.0.1", port: int = 8765, token: Optional[str] = None,
             echo: Callable[[str], None] = print) -> Optional[Counter]:
    """Select ``budget`` images of the run ``run_dir`` by ``strategy`` among those ``annotator``
    has not answered in the store, then either answer them with ``oracle`` and return the count of
    each decision, or serve the page on ``host``:``port`` until interrupted. Off loopback the page
    needs a ``token``; on loopback one is generated when none is given."""
    if oracle is not None and oracle not in ORACLES:
        raise AnnotateError(f"unknown oracle {oracle!r}; use one of {', '.join(ORACLES)}")
    if oracle is None and not is_loopback(host) and not token:
        raise AnnotateError(f"serving on {host} exposes the page to the network; pass --token SECRET, "
                            "or serve on 127.0.0.1")
    store_path = Path(store_path)
    task = AnnotationTask(run_dir, pool=pool, samples=samples, seed=seed)
    with task.open_store(store_path, annotator or default_annotator(oracle)) as store:
        answered = store.answered()
        task.select(strategy, budget, answered)
        echo(f"selected {len(task.indices)} of {len(task.pool)} pool images by {strategy} "
             f"({len(answered)} answered by {store.annotator} before)")
        if oracle is not None:
            decisions = answer_with_oracle(task, store, oracle)
            echo(f"oracle {oracle} answered {sum(decisions.values())} images: "
                 + ", ".join(f"{decisions[d]} {d}" for d in DECISIONS) + f" -> {store_path}")
            return decisions
        serve(task, store, host=host, port=port, token=token or secrets.token_urlsafe(16),
              next_command=finetune_command(run_dir, store_path))
    return None

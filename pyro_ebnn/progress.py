"""Progress bars (tqdm) on standard error: every 0.1 s on a terminal, every 30 s into a log file."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on standard error, updated every 30 s when it is not a terminal
    (a log file would otherwise get a line per step)."""
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 0.1 if kwargs["file"].isatty() else 30.0)
    return tqdm(iterable, **kwargs)

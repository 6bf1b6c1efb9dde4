"""Progress bars (tqdm) on standard error: every 0.1 s on a terminal, every 30 s into a log file."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm

__all__ = ["progress_bar", "close_bars"]


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on standard error, updated every 30 s when it is not a terminal
    (a log file would otherwise get a line per step)."""
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 0.1 if kwargs["file"].isatty() else 30.0)
    return tqdm(iterable, **kwargs)


def close_bars():
    """Close every open progress bar, the inner ones first and the outermost left showing where it
    stopped, so that what is printed next (an error) starts on a line of its own."""
    bars = sorted(getattr(tqdm, "_instances", ()), key=lambda bar: -abs(getattr(bar, "pos", 0)))
    for k, bar in enumerate(bars):
        if k == len(bars) - 1:
            bar.leave = True   # its line ends with a newline, on a terminal and in a log file alike
        bar.close()

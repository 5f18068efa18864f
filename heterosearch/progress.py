"""Progress bars (rich) for long work and status lines (``logging``, logs.py); silenced with HETEROSEARCH_QUIET=1."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def quiet() -> bool:
    return os.environ.get("HETEROSEARCH_QUIET", "") not in ("", "0")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """``rich.progress.track`` with elapsed and remaining time on a terminal's stderr; elsewhere one line at the end."""
    if quiet():
        yield from items
        return
    import sys

    if not sys.stderr.isatty():  # a file or a pipe: one whole line when done, not a bar drawn into a log
        import time

        t0, n = time.perf_counter(), 0
        for item in items:
            n += 1
            yield item
        say(f"{description}: {n} done in {time.perf_counter() - t0:.1f}s")
        return
    with progress_bar() as bar:
        yield from bar.track(items, total=total, description=description)


def progress_bar() -> Any:
    """A rich ``Progress`` on stderr with the columns of every bar here (description, bar, n/N, elapsed, eta)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), transient=False)


def bars_wanted() -> bool:
    """Bars only on a terminal and when not quiet (a file or a pipe gets whole lines)."""
    import sys

    return not quiet() and sys.stderr.isatty()


def say(message: str) -> None:
    """One status line (stdout is kept for results): the logger ``heterosearch`` at INFO (logs.py)."""
    if not quiet():
        from heterosearch.logs import ensure_handler, log

        ensure_handler()
        log.info(message)

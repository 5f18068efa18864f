"""Progress bars (rich) for long work and status lines (``logging``, logs.py); silenced with HETEROSEARCH_QUIET=1."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def quiet() -> bool:
    return os.environ.get("HETEROSEARCH_QUIET", "") not in ("", "0")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """``rich.progress.track`` with elapsed and remaining time, on stderr."""
    if quiet():
        yield from items
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        yield from bar.track(items, total=total, description=description)


def say(message: str) -> None:
    """One status line (stdout is kept for results): the logger ``heterosearch`` at INFO (logs.py)."""
    if not quiet():
        from heterosearch.logs import ensure_handler, log

        ensure_handler()
        log.info(message)

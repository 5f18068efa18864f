"""heterosearch's messages go through ``logging`` (the logger ``"heterosearch"``), and third-party log noise stays scoped.

``say`` (progress.py) logs at INFO. Who shows the messages is the application's choice:

- an application that configured ``logging`` (a handler on the root logger or on
  ``"heterosearch"``) gets them through its own handlers, formatted its way;
- otherwise (the CLI, a notebook, a script) ``ensure_handler`` attaches one handler to
  ``"heterosearch"``: rich markup rendered in colour on a terminal, plain whole lines (no
  markup, no hard wrap at 80 columns) when stderr is a file or a pipe. It looks at
  ``sys.stderr`` on every message, so a redirected or captured stderr gets them too.

``quieter(name, level)`` raises a library logger's level for the duration of a block and
restores it after, so heterosearch never changes a library's verbosity for the whole process
(Optuna's per-trial INFO lines during our search, but not in the caller's own studies).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER = "heterosearch"
log = logging.getLogger(LOGGER)


# The rich style tags heterosearch's messages use ([dim]...[/dim], [bold yellow], [/]); nothing else is markup.
_TAG = re.compile(r"\[/?(?:(?:bold|dim|italic|underline|red|green|yellow|blue|magenta|cyan|white)\s*)*\]")


def _plain(message: str) -> str:
    """The message without our style tags; other brackets (``[L3.v]``, ``[0, 1)``) are kept."""
    return _TAG.sub("", message)


class ConsoleHandler(logging.Handler):
    """stderr on a terminal: rich (markup, colour); elsewhere: one plain line per message, never wrapped."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            stream = sys.stderr
            if stream.isatty():
                from rich.console import Console

                Console(stderr=True, highlight=False).print(message)
            else:
                stream.write(_plain(message) + "\n")
                stream.flush()
        except Exception:  # pragma: no cover - logging must never raise into the caller
            self.handleError(record)


def ensure_handler() -> None:
    """Attach ``ConsoleHandler`` unless the application already routes our messages somewhere."""
    if log.handlers or logging.getLogger().handlers:
        return
    log.addHandler(ConsoleHandler())
    log.setLevel(logging.INFO)
    log.propagate = False  # the one handler: no second copy through a root handler configured later


@contextmanager
def quieter(name: str, level: int = logging.WARNING) -> Iterator[None]:
    """Logger ``name`` at ``level`` or above inside the block; its previous level afterwards."""
    logger = logging.getLogger(name)
    before = logger.level
    if logger.getEffectiveLevel() < level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)

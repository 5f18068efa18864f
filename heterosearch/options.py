"""The command line's boundary: every bad option becomes one ``error:`` line and exit code 2.

Three doors lead in, and each one is closed here:
- click's own parsing (``--seed abc``, an unknown option): ``OneLineErrors`` replaces click's
  boxed usage message with one line;
- values of the right type but out of range (``--seed -1``, ``--lr nan``): ``check_int`` /
  ``check_float``, called by the commands before any model, data or folder is touched;
- ``UserError`` raised anywhere below: ``user_errors``.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

from heterosearch.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

#: Seeds numpy's and torch's generators accept.
SEED_RANGE = (0, 2**32 - 1)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _click_exceptions() -> Any:
    """The click exceptions module typer raises: its vendored copy (typer >= 0.2x) or click itself."""
    try:
        from typer._click import exceptions  # typer vendors click; the name is not public API
    except ImportError:  # older typer on real click
        from click import exceptions
    return exceptions


class OneLineErrors(TyperGroup):
    """Runs click in non-standalone mode so that a usage error is ours to print (one line, exit 2)."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        ce = _click_exceptions()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ce.NoArgsIsHelpError as exc:  # bare `heterosearch`: the help, as click prints it
            exc.show()
            sys.exit(exc.exit_code)
        except ce.ClickException as exc:  # UsageError, BadParameter, NoSuchOption, ... (exit_code 2)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo("error: " + one_line(exc.format_message()) + hint, err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)  # click returns a command's Exit code in this mode


def user_errors(fn: F) -> F:
    """Turn UserError into `error: <one line>` and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            typer.echo("error: " + one_line(str(exc)), err=True)  # one line, whatever the library said
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: finished work is kept in the run folder; rerun with --resume to continue", err=True)
            raise typer.Exit(130) from None
        finally:
            from heterosearch.run_folder import release_all

            release_all()  # the command is over: its run folders are free for the next writer

    return wrapper  # type: ignore[return-value]


def check_int(option: str, value: int | None, low: int, high: int) -> None:
    """``value`` (None = not given) within [low, high], or one line naming the option."""
    if value is not None and not low <= value <= high:
        raise UserError(f"{option} must be an integer in [{low:,}, {high:,}], got {short(value)}")


def check_float(option: str, value: float | None, low: float, high: float, low_open: bool = True) -> None:
    """``value`` (None = not given) finite and within (low, high] (or [low, high])."""
    if value is None:
        return
    above = value > low if low_open else value >= low
    if not (math.isfinite(value) and above and value <= high):
        left = "(" if low_open else "["
        raise UserError(f"{option} must be a finite number in {left}{low:g}, {high:g}], got {short(value)}")


def check_seed(option: str, value: int | None) -> None:
    check_int(option, value, *SEED_RANGE)


def short(value: Any, limit: int = 40) -> str:
    """A value for an error message, never longer than ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

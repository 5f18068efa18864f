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
from typing import Annotated, Any, Optional, TypeVar

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from heterosearch.config_file import HELP

        for cmd in self.commands.values():  # every command's --help names --config (config_file.py)
            if HELP not in (cmd.epilog or ""):
                cmd.epilog = f"{cmd.epilog}\n\n{HELP}" if cmd.epilog else HELP

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        ce = _click_exceptions()
        from heterosearch.config_file import split_config  # --config FILE.yaml on every command

        args, defaults, problem = split_config(sys.argv[1:] if args is None else args, self.commands)
        if problem is not None:
            typer.echo("error: " + one_line(problem), err=True)
            sys.exit(2)
        if defaults is not None:
            extra["default_map"] = defaults
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


MAX_SEEDS = 1000  # seeds per method: far beyond what a paired comparison needs
MAX_TRIALS = 10**6


def check_common(
    trials: int | None = None, score_batches: int | None = None, max_train_steps: int | None = None,
    seed: int | None = None, split_seed: int | None = None, train_epochs: float | None = None,
    batch_size: int | None = None, max_length: int | None = None,
) -> None:
    """The numeric options several commands share, checked before any work (None = not given)."""
    check_int("--trials", trials, 1, MAX_TRIALS)
    check_int("--score-batches", score_batches, 1, 100_000)
    check_int("--max-train-steps", max_train_steps, 1, 10**9)
    check_seed("--seed", seed)
    check_seed("--split-seed", split_seed)
    check_float("--train-epochs", train_epochs, 0.0, 1000.0)
    check_int("--batch-size", batch_size, 1, 4096)  # one batch of 4096 x 512 tokens is already tens of GB
    check_int("--max-length", max_length, 1, 65_536)


def check_recipe(lr: float | None = None, warmup: float | None = None, batch_size: int | None = None,
                 max_length: int | None = None, lora_dropout: float | None = None, device: str | None = None,
                 precision: str | None = None, lr_scaling: str | None = None) -> dict[str, Any]:
    """The training-recipe options (None = not given), checked; returns the given ones by ``RunConfig`` name.

    ``device`` and ``precision`` are checked where they are resolved (``RunConfig``, one line each).
    """
    check_float("--lr", lr, 0.0, 10.0)
    from heterosearch.recipe import LR_SCALINGS

    if lr_scaling is not None and lr_scaling not in LR_SCALINGS:
        raise UserError(f"--lr-scaling must be one of {', '.join(LR_SCALINGS)}, got {lr_scaling!r}")
    check_float("--warmup", warmup, 0.0, 0.999, low_open=False)  # a fraction of the steps, below 1
    check_common(batch_size=batch_size, max_length=max_length)
    check_float("--lora-dropout", lora_dropout, 0.0, 0.999, low_open=False)  # p = 1 would drop every update
    given = {"lr": lr, "warmup": warmup, "batch_size": batch_size, "max_length": max_length, "lora_dropout": lora_dropout,
             "device": device, "precision": precision, "lr_scaling": lr_scaling}
    return {k: v for k, v in given.items() if v is not None}


def parse_budget_option(value: str | None) -> int | None:
    """Parse --budget; a bad value is a UserError, so it gets the one-line `error:` treatment.

    (typer.BadParameter would print a multi-line, terminal-width boxed usage panel instead.)
    """
    if value is None:
        return None
    from heterosearch.space.budget import parse_budget

    return parse_budget(value)


# The options several commands share, declared once (typer reads them from the annotations).
BudgetOpt = Annotated[Optional[str], typer.Option("--budget", "-b", help="Adapter-parameter budget: 500000, 500k, 0.5M, 1.2e6.")]
TaskOpt = Annotated[str, typer.Option(help="GLUE task (mrpc, rte, stsb, sst2, cola), your data (a CSV/TSV/JSON/JSONL file, "
                                            "or a folder with train/validation/test files), a hub dataset name, or lm:FILE.")]
TextColumnsOpt = Annotated[Optional[str], typer.Option(help="Your data: the text column, or two (a,b) for pairs (default: text, sentence, sentence1,sentence2, ...).")]
LabelColumnOpt = Annotated[Optional[str], typer.Option(help="Your data: the label column (default: label).")]
ProblemOpt = Annotated[Optional[str], typer.Option(help="Your data: classification or regression (default: inferred from the labels).")]
ModelOpt = Annotated[Optional[str], typer.Option(help="Hugging Face model name or local path (default: the packaged all-MiniLM-L6-v2).")]
SpaceOpt = Annotated[str, typer.Option(help="Search space: a name from search_spaces/ or a YAML path.")]
ProxyOpt = Annotated[str, typer.Option(help="Proxy whose scores the search maximises (see `heterosearch ls`).")]
SeedOpt = Annotated[int, typer.Option(help="Seed for data order, proxies, sampler and adapter init.")]
DataOpt = Annotated[Optional[str], typer.Option("--data-dir", help="Folder in GLUE TSV layout (DIR/MRPC/train.tsv) (default: the packaged MRPC, then the hub).")]
OutOpt = Annotated[Optional[str], typer.Option("--out", "-o", help="Run folder (default: runs/TASK-SPACE-BUDGET-PROXY-sSEED).")]
ObjectiveOpt = Annotated[str, typer.Option(help="What Optuna maximises: proxy (additive, exact knapsack), lookahead (a few training steps per trial) or train (18 steps of the recipe per trial, validation loss at rungs, successive-halving pruning; about 1 min per --trials on MiniLM, 2 CPUs: use --trials 8-16).")]
TrialsOpt = Annotated[int, typer.Option(help="Optuna trials (finished trials of a resumed study count).")]
EpochsOpt = Annotated[Optional[float], typer.Option("--train-epochs", help="Training epochs of every verified model (default: the task's: 3, RTE 10).")]
StepsOpt = Annotated[Optional[int], typer.Option("--max-train-steps", help="Cap on verification training steps (quick checks).")]
BatchesOpt = Annotated[int, typer.Option("--score-batches", help="Training minibatches the proxies see.")]
StorageOpt = Annotated[Optional[str], typer.Option(help="Study storage: a postgresql:// URL lets `heterosearch worker` join (default: RUN/study.journal).")]
# The training recipe (``recipe.py``); on commands that reuse a run, None = the run's own value.
LrOpt = Annotated[Optional[float], typer.Option(help="Base learning rate (default: the run's, else the recipe's 1e-3; see --lr-scaling).")]
LrScalingOverrideOpt = Annotated[Optional[str], typer.Option("--lr-scaling", help="rank: LoRA's rate falls as (2 / r) ** 0.25 once the budget buys uniform LoRA on all sites a rank r > 2; none: the base rate at every budget (default: the run's, else rank).")]
WarmupOpt = Annotated[Optional[float], typer.Option(help="Linear warm-up as a fraction of the training steps (default: the run's, else 0.06).")]
BatchSizeOpt = Annotated[Optional[int], typer.Option(help="Training batch size (default: the run's, else 32).")]
MaxLengthOpt = Annotated[Optional[int], typer.Option(help="Tokens per example, longer ones truncated (default: the run's, else 128).")]
LoraDropoutOpt = Annotated[Optional[float], typer.Option(help="Dropout on LoRA's input, as PEFT's lora_dropout (default: the run's, else 0).")]
DeviceOverrideOpt = Annotated[Optional[str], typer.Option(help="Where models train and evaluate: auto, cpu, cuda, cuda:N, mps (default: the run's).")]
PrecisionOverrideOpt = Annotated[Optional[str], typer.Option(help="fp32, bf16 (autocast) or fp16 (CUDA) (default: the run's).")]
TrainStepsOpt = Annotated[Optional[int], typer.Option(help="--objective train: recipe steps per completed trial (default 18), with one successive-halving rung at a third of them.")]
TrialSeedsOpt = Annotated[Optional[int], typer.Option(help="--objective train: trainings per trial (seeds seed, seed+1, ...), the value their mean; with 2 or more the winner must beat uniform LoRA on all sites (its warm start) seed by seed by more than the noise (one-sided 95 % bound), else uniform LoRA on all sites is kept. Default 1.")]
ValExamplesOpt = Annotated[Optional[int], typer.Option(help="--objective train: validation examples each evaluation uses, a seeded subset (default: 128 with a rung, the whole validation split with --rung-steps 0); 0: the whole split.")]
RungStepsOpt = Annotated[Optional[int], typer.Option(help="--objective train: the step of the successive-halving rung (default: a third of --train-steps); 0: no pruning, every trial trains to the end (a selection among the warm starts and Optuna's points, by validation value).")]

"""The ``heterosearch`` command: one thin command per pipeline stage, plus ``run``, ``ls``, ``validate``.

Heavy libraries are imported inside the commands, so ``--help`` is instant. Bad input
(``UserError``) becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from heterosearch.errors import UserError

app = typer.Typer(
    name="heterosearch",
    help="Search where LoRA's trainable parameters go under a hard parameter budget, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _budget(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    from heterosearch.space.budget import parse_budget

    try:
        return parse_budget(value)
    except UserError as exc:
        raise typer.BadParameter(str(exc)) from None


def user_errors(fn: F) -> F:
    """Turn UserError into `error: <one line>` and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: finished work is kept in the run folder; rerun with --resume to continue", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


BudgetOpt = Annotated[Optional[str], typer.Option("--budget", "-b", help="Adapter-parameter budget: 500000, 500k, 0.5M, 1.2e6.")]
TaskOpt = Annotated[str, typer.Option(help="GLUE task: mrpc, rte, stsb, sst2, cola.")]
ModelOpt = Annotated[Optional[str], typer.Option(help="Hugging Face model name or local path [default: packaged all-MiniLM-L6-v2].")]
SpaceOpt = Annotated[str, typer.Option(help="Search space: a name from search_spaces/ or a YAML path.")]
ProxyOpt = Annotated[str, typer.Option(help="Proxy whose scores the search maximises (see `heterosearch ls`).")]
SeedOpt = Annotated[int, typer.Option(help="Seed for data order, proxies, sampler and adapter init.")]
DataOpt = Annotated[Optional[str], typer.Option("--data-dir", help="Folder in GLUE TSV layout (DIR/MRPC/train.tsv) [default: packaged MRPC, then the hub].")]
OutOpt = Annotated[Optional[str], typer.Option("--out", "-o", help="Run folder [default: runs/<task>-<space>-<budget>-<proxy>-s<seed>].")]
TrialsOpt = Annotated[int, typer.Option(help="Optuna trials (finished trials of a resumed study count).")]
EpochsOpt = Annotated[float, typer.Option("--train-epochs", help="Verification training epochs.")]
StepsOpt = Annotated[Optional[int], typer.Option("--max-train-steps", help="Cap on verification training steps (quick checks).")]
BatchesOpt = Annotated[int, typer.Option("--score-batches", help="Training minibatches the proxies see.")]


def _print_summary(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from heterosearch.report.markdown import _metric_names

    console = Console()
    console.print(f"[bold]allocation[/bold] ({results['params']:,} adapter parameters, budget {results['budget']:,}; "
                  f"task head {results.get('head_params') or 0:,} reported separately):")
    ranks = results["allocation"]["lora"]
    by_layer: dict[int, list[str]] = {}
    for s in results["sites"]:
        r = ranks.get(s["key"], 0)
        if r:
            by_layer.setdefault(s["layer"], []).append(f"{s['role']}={r}")
    for layer, parts in sorted(by_layer.items()):
        console.print(f"  L{layer}: {' '.join(parts)}")
    v = results.get("verify")
    if v:
        names = _metric_names(v["winner"])
        table = Table(title=f"dev ({results['task']}, seed {results['seed']})")
        table.add_column("method")
        table.add_column("adapter params", justify="right")
        for m in names:
            table.add_column(m, justify="right")
        for label in ("winner", "baseline"):
            e = v[label]
            table.add_row(f"{label}: {e['name']}", f"{e['params']:,}", *(f"{100 * e[m]:.1f}" for m in names))
        console.print(table)


@app.command()
@user_errors
def run(
    budget: BudgetOpt = None,
    task: TaskOpt = "mrpc",
    model: ModelOpt = None,
    space: SpaceOpt = "lora",
    proxy: ProxyOpt = "spectral",
    trials: TrialsOpt = 300,
    train_epochs: EpochsOpt = 1.0,
    max_train_steps: StepsOpt = None,
    seed: SeedOpt = 0,
    data_dir: DataOpt = None,
    out: OutOpt = None,
    score_batches: BatchesOpt = 8,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out (finished work is kept).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the run in --out.")] = False,
) -> None:
    """Score, search, export and verify in one go.

    Example: heterosearch run --budget 0.5M --task mrpc
    """
    from heterosearch.pipeline import RunConfig, run_all

    b = _budget(budget)
    if b is None:
        raise UserError("missing --budget (e.g. --budget 0.5M)")
    cfg = RunConfig(budget=b, task=task, model=model, space=space, proxy=proxy, trials=trials, train_epochs=train_epochs,
                    max_train_steps=max_train_steps, seed=seed, data_dir=data_dir, out=out, score_batches=score_batches)
    results = run_all(cfg, resume=resume, overwrite=overwrite)
    _print_summary(results)
    typer.echo(f"wrote {cfg.out}/results.json, report.md, allocation.json, adapter_config.json")


@app.command()
@user_errors
def score(
    task: TaskOpt = "mrpc",
    model: ModelOpt = None,
    space: SpaceOpt = "lora",
    seed: SeedOpt = 0,
    data_dir: DataOpt = None,
    out: OutOpt = None,
    score_batches: BatchesOpt = 8,
    overwrite: Annotated[bool, typer.Option(help="Replace the run in --out.")] = False,
) -> None:
    """Score every (site, rank) candidate with every proxy into RUN/scores.json.

    Example: heterosearch score --task mrpc --out runs/demo
    """
    from heterosearch.pipeline import Run, RunConfig, stage_score

    cfg = RunConfig(task=task, model=model, space=space, seed=seed, data_dir=data_dir, out=out, score_batches=score_batches)
    r = Run.open(cfg, resume=True, overwrite=overwrite)
    stage_score(r)
    typer.echo(f"wrote {r.out}/scores.json")


@app.command()
@user_errors
def search(
    run_dir: Annotated[Path, typer.Argument(help="Run folder made by `score` or `run`.")],
    budget: BudgetOpt = None,
    proxy: Annotated[Optional[str], typer.Option(help="Proxy to maximise [default: the run's].")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Optuna trials [default: the run's].")] = None,
) -> None:
    """Search the allocation under the budget (Optuna + exact optimum) into RUN/search.json.

    Example: heterosearch search runs/demo --budget 0.5M --trials 200
    """
    from heterosearch.pipeline import Run, stage_score, stage_search

    r = Run.reopen(run_dir, budget=_budget(budget), proxy=proxy, trials=trials)
    r.require_budget()
    winner, _ = stage_search(r, stage_score(r))
    typer.echo(f"winner: {winner.params(r.site_map):,} adapter parameters; wrote {r.out}/search.json")


@app.command()
@user_errors
def export(run_dir: Annotated[Path, typer.Argument(help="Run folder with a search.json.")]) -> None:
    """Write RUN/allocation.json and the PEFT RUN/adapter_config.json for the searched winner.

    Example: heterosearch export runs/demo
    """
    from heterosearch.pipeline import Run, load_winner, stage_export

    r = Run.reopen(run_dir)
    winner, _ = load_winner(r)
    data = stage_export(r, winner)
    typer.echo(f"wrote {r.out}/allocation.json and adapter_config.json ({data['params']:,} adapter parameters; PEFT load checked)")


@app.command()
@user_errors
def train(
    run_dir: Annotated[Path, typer.Argument(help="Run folder with a search.json.")],
    train_epochs: Annotated[Optional[float], typer.Option("--train-epochs")] = None,
    max_train_steps: StepsOpt = None,
) -> None:
    """Short-train the winner and the uniform baseline at the same budget; write results and report.

    Example: heterosearch train runs/demo --train-epochs 1
    """
    from heterosearch.pipeline import Run, load_winner, stage_score, stage_verify, write_results

    r = Run.reopen(run_dir, train_epochs=train_epochs, max_train_steps=max_train_steps)
    winner, search_summary = load_winner(r)
    verified = stage_verify(r, winner)
    results = write_results(r, winner, search_summary, verified, stage_score(r))
    _print_summary(results)


@app.command("ls")
@user_errors
def ls() -> None:
    """List search spaces, adapter kinds, proxies and tasks.

    Example: heterosearch ls
    """
    from heterosearch.proxies import PROXIES
    from heterosearch.space import available_spaces, load_space
    from heterosearch.tasks import TASKS

    typer.echo("search spaces:")
    for name, path in available_spaces().items():
        sp = load_space(path)
        typer.echo(f"  {name:<10} v{sp.version}  kinds: {', '.join(sp.kinds)}  - {sp.description}")
    typer.echo("adapter kinds:\n  lora       per-site LoRA, one rank per site (prefix hs_lora_)")
    typer.echo("proxies:")
    for name, cls in PROXIES.items():
        typer.echo(f"  {name:<10} {cls.summary}")
    typer.echo("tasks:")
    for name, spec in TASKS.items():
        typer.echo(f"  {name:<10} metrics: {', '.join(spec.metrics)}")


@app.command()
@user_errors
def validate(files: Annotated[list[Path], typer.Argument(help="Search-space YAML files.")]) -> None:
    """Check search-space files: unknown keys, wrong types and bad values are named.

    Example: heterosearch validate search_spaces/*.yaml
    """
    from heterosearch.space import load_space

    for f in files:
        sp = load_space(f)
        typer.echo(f"ok {f}: {sp.name} v{sp.version}, kinds {', '.join(sp.kinds)}")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``heterosearch`` command: one thin command per pipeline stage, plus ``run``, ``ls``, ``validate``.

Each command checks its options (``options.py``), does the work, and prints (``console.py``).
Heavy libraries are imported inside the commands, so ``--help`` is instant. Bad input
(``UserError``) becomes one line on stderr and exit code 2, never a traceback.

Commands and what they call (and write):
- stages of a run (``heterosearch.pipeline``): ``score`` -> ``stage_score`` (scores.json), ``search`` ->
  ``stage_search`` (search.json), ``export`` -> ``stage_export`` (allocation.json), ``train`` ->
  ``stage_verify`` (verify.json: winner vs uniform baseline, one seed; results.json, report.md);
  ``run`` -> ``run_all``, all four in order;
- evidence on a run (``heterosearch.evidence``): ``verify``, ``rank-report``, ``frontier`` and ``report``,
  defined in ``cli_evidence.py`` and added to this ``app`` after the stage commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from heterosearch import cli_evidence, recipe
from heterosearch.console import print_catalog, print_run_summary
from heterosearch.errors import UserError
from heterosearch.options import (
    MAX_TRIALS,
    BatchesOpt,
    BatchSizeOpt,
    BudgetOpt,
    DataOpt,
    DeviceOverrideOpt,
    EpochsOpt,
    LabelColumnOpt,
    LoraDropoutOpt,
    LrOpt,
    LrScalingOverrideOpt,
    MaxLengthOpt,
    ModelOpt,
    ObjectiveOpt,
    OneLineErrors,
    OutOpt,
    PrecisionOverrideOpt,
    ProblemOpt,
    ProxyOpt,
    RungStepsOpt,
    SeedOpt,
    SpaceOpt,
    StepsOpt,
    StorageOpt,
    TaskOpt,
    TextColumnsOpt,
    TrainStepsOpt,
    TrialSeedsOpt,
    ValExamplesOpt,
    WarmupOpt,
    check_common,
    check_float,
    check_int,
    check_recipe,
    check_seed,
    parse_budget_option,
    user_errors,
)

app = typer.Typer(
    cls=OneLineErrors,  # click's usage errors become one line too (options.py)
    name="heterosearch",
    help="Search where LoRA's trainable parameters go under a hard parameter budget, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _show_version(value: bool) -> None:
    if value:
        from heterosearch import __version__

        typer.echo(f"heterosearch {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Search where LoRA's trainable parameters go under a hard parameter budget, and prove it."""


DeviceOpt = Annotated[str, typer.Option(help="Where models train and evaluate: auto, cpu, cuda, cuda:N, mps.")]
PrecisionOpt = Annotated[str, typer.Option(help="fp32, bf16 (autocast; CPUs with bf16 support, GPUs) or fp16 (CUDA).")]
ScoringOpt = Annotated[str, typer.Option(help="Scoring pass: exact (G per site), streaming (sketches; large models) or auto.")]
MicroOpt = Annotated[Optional[int], typer.Option(help="Examples per scoring forward/backward (gradients accumulated).")]
CkptOpt = Annotated[bool, typer.Option(help="Gradient checkpointing while scoring (HF models that support it).")]


@app.command()
@user_errors
def run(
    budget: BudgetOpt = None,
    task: TaskOpt = "mrpc",
    model: ModelOpt = None,
    space: SpaceOpt = "lora",
    proxy: ProxyOpt = "spectral",
    objective: ObjectiveOpt = "proxy",
    trials: Annotated[Optional[int], typer.Option(help="Optuna trials (finished trials of a resumed study count; "
                                                  "default 300, with --objective train 12).")] = None,
    train_steps: TrainStepsOpt = None,
    rung_steps: RungStepsOpt = None,
    val_examples: ValExamplesOpt = None,
    trial_seeds: TrialSeedsOpt = None,
    train_epochs: EpochsOpt = None,
    max_train_steps: StepsOpt = None,
    seed: SeedOpt = 0,
    data_dir: DataOpt = None,
    out: OutOpt = None,
    score_batches: BatchesOpt = 8,
    storage: StorageOpt = None,
    lr: Annotated[float, typer.Option(help="Base learning rate of every trained model (the recipe's, chosen on val; see --lr-scaling).")] = recipe.LR,
    lr_scaling: Annotated[str, typer.Option(help="rank: LoRA's rate falls as (2 / r) ** 0.25 once the budget buys uniform LoRA on all sites a rank r > 2 (recipe.py); none: --lr at every budget.")] = "rank",
    warmup: Annotated[float, typer.Option(help="Linear warm-up, as a fraction of the training steps.")] = recipe.WARMUP,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = recipe.BATCH_SIZE,
    max_length: Annotated[int, typer.Option(help="Tokens per example (longer ones are truncated).")] = recipe.MAX_LENGTH,
    lora_dropout: Annotated[float, typer.Option(help="Dropout on LoRA's input in training (PEFT's lora_dropout).")] = 0.0,
    val_fraction: Annotated[float, typer.Option(help="Share of the training file carved off as the validation split.")] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed of the validation split (the same for every training seed).")] = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    scoring: ScoringOpt = "auto",
    score_micro_batch: MicroOpt = None,
    score_checkpointing: CkptOpt = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out (finished work is kept).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the run in --out.")] = False,
    text_columns: TextColumnsOpt = None, label_column: LabelColumnOpt = None, problem: ProblemOpt = None,
) -> None:
    """Score, search, export and verify in one go.

    Example: heterosearch run --budget 0.5M --task mrpc
    """
    from heterosearch.pipeline import RunConfig, run_all

    b = parse_budget_option(budget)
    if b is None:
        raise UserError("missing --budget (e.g. --budget 0.5M)")
    from heterosearch.pipeline.config import default_trials

    trials = default_trials(objective) if trials is None else trials
    check_common(trials=trials, score_batches=score_batches, max_train_steps=max_train_steps, seed=seed,
                  train_epochs=train_epochs, batch_size=batch_size, max_length=max_length, split_seed=split_seed)
    check_recipe(lr=lr, warmup=warmup, lora_dropout=lora_dropout, lr_scaling=lr_scaling)
    cfg = RunConfig(budget=b, task=task, model=model, space=space, proxy=proxy, objective=objective, trials=trials, train_steps=train_steps,
                    rung_steps=rung_steps, val_examples=val_examples, trial_seeds=trial_seeds,
                    train_epochs=train_epochs, max_train_steps=max_train_steps, seed=seed, data_dir=data_dir, out=out, score_batches=score_batches,
                    storage=storage, lr=lr, lr_scaling=lr_scaling, warmup=warmup, batch_size=batch_size, max_length=max_length, lora_dropout=lora_dropout,
                    val_fraction=val_fraction, split_seed=split_seed, device=device, precision=precision,
                    text_columns=text_columns, label_column=label_column, problem=problem,
                    scoring=scoring, score_micro_batch=score_micro_batch, score_checkpointing=score_checkpointing)
    results = run_all(cfg, resume=resume, overwrite=overwrite)
    print_run_summary(results)
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
    scoring: ScoringOpt = "auto",
    score_micro_batch: MicroOpt = None,
    score_checkpointing: CkptOpt = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the run in --out.")] = False,
    text_columns: TextColumnsOpt = None, label_column: LabelColumnOpt = None, problem: ProblemOpt = None,
) -> None:
    """Score every (site, rank) candidate with every proxy into RUN/scores.json.

    Example: heterosearch score --task mrpc --out runs/demo
    """
    check_common(seed=seed, score_batches=score_batches)
    from heterosearch.pipeline import Run, RunConfig, stage_score

    cfg = RunConfig(task=task, model=model, space=space, seed=seed, data_dir=data_dir, out=out, score_batches=score_batches,
                    text_columns=text_columns, label_column=label_column, problem=problem,
                    scoring=scoring, score_micro_batch=score_micro_batch, score_checkpointing=score_checkpointing)
    r = Run.open(cfg, resume=True, overwrite=overwrite)
    stage_score(r)
    typer.echo(f"wrote {r.out}/scores.json")


@app.command()
@user_errors
def search(
    run_dir: Annotated[Path, typer.Argument(help="Run folder made by `score` or `run`.")],
    budget: BudgetOpt = None,
    proxy: Annotated[Optional[str], typer.Option(help="Proxy to maximise (default: the run's).")] = None,
    objective: Annotated[Optional[str], typer.Option(help="proxy, lookahead or train (default: the run's).")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Optuna trials (default: the run's).")] = None,
    train_steps: TrainStepsOpt = None,
    rung_steps: RungStepsOpt = None,
    val_examples: ValExamplesOpt = None,
    trial_seeds: TrialSeedsOpt = None,
    storage: StorageOpt = None,
) -> None:
    """Search the allocation under the budget (Optuna + exact optimum) into RUN/search.json.

    Example: heterosearch search runs/demo --budget 0.5M --trials 200
    """
    check_common(trials=trials)
    from heterosearch.pipeline import Run, stage_score, stage_search

    r = Run.reopen(run_dir, budget=parse_budget_option(budget), proxy=proxy, objective=objective, trials=trials,
                   train_steps=train_steps, rung_steps=rung_steps, val_examples=val_examples, trial_seeds=trial_seeds,
                   storage=storage)
    r.require_budget()
    winner, _ = stage_search(r, stage_score(r))
    r.save_config()
    typer.echo(f"winner: {winner.params(r.site_map):,} adapter parameters; wrote {r.out}/search.json")


@app.command()
@user_errors
def export(run_dir: Annotated[Path, typer.Argument(help="Run folder with a search.json.")]) -> None:
    """Write RUN/allocation.json and the PEFT RUN/adapter_config.json for the searched winner.

    Example: heterosearch export runs/demo
    """
    from heterosearch.pipeline import Run, check_searched, load_winner, stage_export

    r = Run.reopen(run_dir)
    winner, search_summary = load_winner(r)
    check_searched(r, search_summary)
    data = stage_export(r, winner)
    r.save_config()
    typer.echo(f"wrote {r.out}/allocation.json and adapter_config.json ({data['params']:,} adapter parameters; PEFT load checked)")


@app.command()
@user_errors
def train(
    run_dir: Annotated[Path, typer.Argument(help="Run folder with a search.json.")],
    train_epochs: Annotated[Optional[float], typer.Option("--train-epochs")] = None,
    max_train_steps: StepsOpt = None,
    lr: LrOpt = None, lr_scaling: LrScalingOverrideOpt = None, warmup: WarmupOpt = None, batch_size: BatchSizeOpt = None,  # the recipe (None = the run's)
    max_length: MaxLengthOpt = None, lora_dropout: LoraDropoutOpt = None,
    device: DeviceOverrideOpt = None, precision: PrecisionOverrideOpt = None,
) -> None:
    """Short-train the winner and the uniform baseline at the same budget; write results and report.

    Example: heterosearch train runs/demo --train-epochs 1
    """
    check_common(train_epochs=train_epochs, max_train_steps=max_train_steps)
    given = check_recipe(lr=lr, lr_scaling=lr_scaling, warmup=warmup, batch_size=batch_size, max_length=max_length, lora_dropout=lora_dropout,
                         device=device, precision=precision)
    from heterosearch.pipeline import Run, check_exported, load_winner, stage_score, stage_verify, write_results

    r = Run.reopen(run_dir, train_epochs=train_epochs, max_train_steps=max_train_steps, **given)
    winner, search_summary = load_winner(r)
    check_exported(r, winner)
    verified = stage_verify(r, winner)
    results = write_results(r, winner, search_summary, verified, stage_score(r))
    r.save_config()
    print_run_summary(results)


@app.command()
@user_errors
def worker(
    folder: Annotated[Optional[Path], typer.Argument(help="Run or frontier folder: use its storage (default for --jobs).")] = None,
    storage: Annotated[Optional[str], typer.Option(help="The storage: postgresql://USER:PASSWORD@HOST:PORT/DB (or a journal file).")] = None,
    jobs: Annotated[bool, typer.Option("--jobs", help="Take training jobs of verify/rank-report/frontier instead of search trials.")] = False,
    study: Annotated[Optional[str], typer.Option(help="Study (or job queue) name (default: the only study; with --jobs: every queue).")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Stop when the study has this many finished trials (default: the study's).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampler seed of this worker (default: random; give each worker its own).")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the study to appear (with --jobs: for a job to take).")] = 0.0,
    heartbeat: Annotated[int, typer.Option(help="Seconds between heartbeats; a trial silent for 3x this is failed and retried.")] = 10,
) -> None:
    """Join a running search, or take training jobs of verify/rank-report/frontier (--jobs), from another process.

    One worker per GPU: CUDA_VISIBLE_DEVICES=1 heterosearch worker runs/demo --jobs --wait 600 (README: Workers).
    Example: heterosearch worker --storage postgresql://hs:secret@db:5432/hs --study mrpc-lora-500000-spectral-s0
    """
    check_int("--trials", trials, 1, MAX_TRIALS)
    check_seed("--seed", seed)
    check_float("--wait", wait, 0.0, 10**7, low_open=False)
    check_int("--heartbeat", heartbeat, 1, 86_400)
    from heterosearch.evidence.jobs import storage_of, work

    where = storage if storage is not None else storage_of(folder)
    if jobs:
        done = work(where, study=study, wait=wait, heartbeat=heartbeat)
        typer.echo(f"worker: ran {done.ran} training jobs ({done.failed} failed) from {', '.join(done.queues) or 'no queue'}")
        return
    from heterosearch.optimize.worker import run_worker

    res = run_worker(where, study_name=study, n_trials=trials, seed=seed, wait=wait, heartbeat=heartbeat)
    typer.echo(f"worker: ran {res.ran} trials; study {res.study_name!r} has {res.complete}/{res.target} finished trials")


@app.command("ls")
@user_errors
def ls() -> None:
    """List search spaces, adapter kinds, proxies and tasks.

    Example: heterosearch ls
    """
    print_catalog()


@app.command()
@user_errors
def validate(files: Annotated[list[Path], typer.Argument(help="Search-space YAML files.")]) -> None:
    """Check search-space files: unknown keys, wrong types and bad values are named.

    Example: heterosearch validate heterosearch/search_spaces/*.yaml
    """
    from heterosearch.space import load_space

    for f in files:
        sp = load_space(f)
        typer.echo(f"ok {f}: {sp.name} v{sp.version}, kinds {', '.join(sp.kinds)}")


cli_evidence.register(app)  # verify, rank-report, frontier, report: after the stage commands in --help


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The evidence commands on a run: ``verify``, ``rank-report``, ``frontier`` and ``report``.

They sit on top of the pipeline's stages (``cli.py``) and call ``heterosearch.evidence``:
``verify`` -> ``verify_run`` (verify_seeds.json: every method over seeds), ``rank-report`` ->
``rank_report`` (rank_report.json), ``frontier`` -> ``frontier`` (frontier.json); ``report``
re-renders report.md from the folder's files. ``register`` adds them to the one ``app`` of
``cli.py``, after its stage commands, so ``heterosearch --help`` lists them in that order.
As in ``cli.py``, heavy libraries are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from heterosearch.console import print_frontier_summary, print_rank_summary, print_verify_summary
from heterosearch.errors import UserError
from heterosearch.options import (
    MAX_SEEDS,
    BatchesOpt,
    BatchSizeOpt,
    BudgetOpt,
    DataOpt,
    DeviceOverrideOpt,
    LabelColumnOpt,
    LoraDropoutOpt,
    LrOpt,
    LrScalingOverrideOpt,
    MaxLengthOpt,
    ModelOpt,
    ObjectiveOpt,
    PrecisionOverrideOpt,
    ProblemOpt,
    ProxyOpt,
    RungStepsOpt,
    SeedOpt,
    SpaceOpt,
    StepsOpt,
    TaskOpt,
    TextColumnsOpt,
    TrainStepsOpt,
    TrialSeedsOpt,
    ValExamplesOpt,
    WarmupOpt,
    check_common,
    check_int,
    check_recipe,
    check_seed,
    parse_budget_option,
    user_errors,
)

ReuseOpt = Annotated[Optional[str], typer.Option(help="Comma list of other run folders: take their finished trainings of the same plan, seed, recipe, data and model instead of retraining them.")]


def _folders(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def register(app: typer.Typer) -> None:
    """Add the evidence commands to ``app``; ``--help`` lists commands in the order they were added."""
    app.command()(verify)
    app.command("rank-report")(rank_report_cmd)
    app.command("frontier")(frontier_cmd)
    app.command("report")(report_cmd)


@user_errors
def verify(
    run_dir: Annotated[Path, typer.Argument(help="Run folder made by `run` (needs search.json).")],
    seeds: Annotated[int, typer.Option(help="Training seeds per method (the run's seed and the next ones).")] = 3,
    methods: Annotated[Optional[str], typer.Option(help="Comma list from winner,uniform_qv,uniform_all,random,heterolora,adalora (default: all).")] = None,
    train_epochs: Annotated[Optional[float], typer.Option("--train-epochs", help="Training epochs (default: the run's).")] = None,
    max_train_steps: StepsOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Discard RUN/verify_seeds.json and retrain every pair.")] = False,
    lr: LrOpt = None, lr_scaling: LrScalingOverrideOpt = None, warmup: WarmupOpt = None, batch_size: BatchSizeOpt = None,  # the recipe (None = the run's)
    max_length: MaxLengthOpt = None, lora_dropout: LoraDropoutOpt = None,
    device: DeviceOverrideOpt = None, precision: PrecisionOverrideOpt = None,
    reuse_from: ReuseOpt = None,
) -> None:
    """Train the winner and strong baselines at the same budget over seeds; paired statistics into RUN/verify_seeds.json.

    Finished (method, seed) pairs are kept: rerun with more --seeds to add seeds.
    Example: heterosearch verify runs/demo --seeds 5
    """
    check_int("--seeds", seeds, 1, MAX_SEEDS)
    check_common(train_epochs=train_epochs, max_train_steps=max_train_steps)
    given = check_recipe(lr=lr, lr_scaling=lr_scaling, warmup=warmup, batch_size=batch_size, max_length=max_length, lora_dropout=lora_dropout,
                         device=device, precision=precision)
    from heterosearch.evidence import verify_run
    from heterosearch.report.render import render_run_report

    state = verify_run(run_dir, seeds=seeds, methods=methods, train_epochs=train_epochs,
                       max_train_steps=max_train_steps, overwrite=overwrite, recipe=given,
                       reuse_from=_folders(reuse_from))
    print_verify_summary(state)
    report = render_run_report(run_dir)
    typer.echo(f"wrote {Path(run_dir) / 'verify_seeds.json'} and {report}")


@user_errors
def rank_report_cmd(
    budget: BudgetOpt = None,
    task: TaskOpt = "mrpc",
    space: SpaceOpt = "lora",
    samples: Annotated[int, typer.Option(help="Random allocations to sample at the budget.")] = 20,
    steps: Annotated[Optional[int], typer.Option(help="Cap on training steps per sample (a cheaper fidelity than `verify`); 0 = the full recipe.")] = 30,
    design: Annotated[str, typer.Option(help="random: per-site ranks from the space; structural: allocations that differ in roles and layers.")] = "random",
    train_epochs: Annotated[Optional[float], typer.Option("--train-epochs", help="Training epochs per sample (default: the recipe's).")] = None,
    seeds: Annotated[str, typer.Option(help="The two training seeds (their agreement is the noise ceiling).")] = "0,1",
    model: ModelOpt = None,
    data_dir: DataOpt = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: runs/rank-TASK-SPACE-BUDGET-nSAMPLES-kSTEPS).")] = None,
    score_batches: BatchesOpt = 8,
    seed: Annotated[int, typer.Option(help="Seed for sampling the allocations and for scoring.")] = 0,
    lr: LrOpt = None, lr_scaling: LrScalingOverrideOpt = None, warmup: WarmupOpt = None, batch_size: BatchSizeOpt = None,  # the recipe (None = the run's)
    max_length: MaxLengthOpt = None, lora_dropout: LoraDropoutOpt = None,
    device: DeviceOverrideOpt = None, precision: PrecisionOverrideOpt = None,
    text_columns: TextColumnsOpt = None, label_column: LabelColumnOpt = None, problem: ProblemOpt = None,
) -> None:
    """Rank correlation of every proxy with short-trained accuracy over sampled allocations, into OUT/rank_report.json.

    Example: heterosearch rank-report --task mrpc --space lora --samples 20 --budget 0.5M --steps 30
    """
    from heterosearch.evidence import rank_report
    from heterosearch.report.render import render_run_report

    b = parse_budget_option(budget)
    if b is None:
        raise UserError("missing --budget (e.g. --budget 0.5M)")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds takes two integers like 0,1, got {seeds!r}"[:200]) from None
    for s in seed_list:
        check_seed("--seeds", s)
    check_int("--samples", samples, 4, 100_000)
    check_int("--steps", steps, 0, 10**9)
    check_common(train_epochs=train_epochs, score_batches=score_batches, seed=seed)
    given = check_recipe(lr=lr, lr_scaling=lr_scaling, warmup=warmup, batch_size=batch_size, max_length=max_length, lora_dropout=lora_dropout,
                         device=device, precision=precision)
    rep = rank_report(task=task, space=space, samples=samples, budget=b, steps=steps or None, seeds=seed_list, out=out,
                      model=model, data_dir=data_dir, score_batches=score_batches, seed=seed, design=design,
                      train_epochs=train_epochs, recipe=given,
                      task_options={"text_columns": text_columns, "label_column": label_column, "problem": problem})
    print_rank_summary(rep)
    report = render_run_report(rep["out"])
    typer.echo(f"wrote {Path(rep['out']) / 'rank_report.json'} and {report}")


@user_errors
def frontier_cmd(
    budgets: Annotated[str, typer.Option(help="Comma list of budgets, e.g. 41.5k,83k,0.5M.")],
    task: TaskOpt = "mrpc",
    seeds: Annotated[str, typer.Option(help="Training seeds per budget: one count (5) or one per budget (5,3,3).")] = "3",
    methods: Annotated[Optional[str], typer.Option(help="Comma list from winner,uniform_qv,uniform_all,random,heterolora,adalora.")] = None,
    space: SpaceOpt = "lora",
    proxy: ProxyOpt = "spectral",
    objective: ObjectiveOpt = "proxy",
    train_steps: TrainStepsOpt = None,
    rung_steps: RungStepsOpt = None,
    val_examples: ValExamplesOpt = None,
    trial_seeds: TrialSeedsOpt = None,
    model: ModelOpt = None,
    data_dir: DataOpt = None,
    trials: Annotated[Optional[int], typer.Option(help="Optuna trials per budget (default 300, with --objective train 12).")] = None,
    train_epochs: Annotated[Optional[float], typer.Option("--train-epochs", help="Training epochs (default: the recipe's).")] = None,
    max_train_steps: StepsOpt = None,
    seed: SeedOpt = 0,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: runs/frontier-TASK-SPACE-PROXY).")] = None,
    lr: LrOpt = None, lr_scaling: LrScalingOverrideOpt = None, warmup: WarmupOpt = None, batch_size: BatchSizeOpt = None,  # the recipe (None = the run's)
    max_length: MaxLengthOpt = None, lora_dropout: LoraDropoutOpt = None,
    device: DeviceOverrideOpt = None, precision: PrecisionOverrideOpt = None,
    text_columns: TextColumnsOpt = None, label_column: LabelColumnOpt = None, problem: ProblemOpt = None,
    reuse_from: Annotated[Optional[str], typer.Option(help="Another frontier folder: take its finished trainings of the same plan, seed, recipe, data and model (OTHER/bBUDGET) instead of retraining them.")] = None,
) -> None:
    """Search at each budget and train the winner and the baselines over seeds: metric against budget.

    Rerun the same command to resume. Example: heterosearch frontier --task mrpc --budgets 41.5k,83k,0.5M --seeds 5,3,3
    Another objective against the same baselines: ... --objective train --reuse-from runs/frontier-mrpc-lora-spectral
    """
    from heterosearch.evidence.frontier import frontier
    from heterosearch.pipeline.config import default_trials
    from heterosearch.report.render import render_run_report

    parsed = [parse_budget_option(b.strip()) for b in budgets.split(",") if b.strip()]
    try:
        counts = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds takes a count (5) or one count per budget (5,3,3), got {seeds!r}"[:200]) from None
    for n in counts:
        check_int("--seeds", n, 1, MAX_SEEDS)
    trials = default_trials(objective) if trials is None else trials
    check_common(trials=trials, train_epochs=train_epochs, max_train_steps=max_train_steps, seed=seed)
    given = check_recipe(lr=lr, lr_scaling=lr_scaling, warmup=warmup, batch_size=batch_size, max_length=max_length, lora_dropout=lora_dropout,
                         device=device, precision=precision)
    from heterosearch.tasks import task_slug

    suffix = "" if objective == "proxy" else f"-{objective}"
    folder = out or f"runs/frontier-{task_slug(task)}-{Path(space).stem}-{proxy}{suffix}"
    doc = frontier(task=task, budgets=[b for b in parsed if b is not None], seeds=counts, out=folder, methods=methods,
                   space=space, proxy=proxy, objective=objective, train_steps=train_steps, rung_steps=rung_steps,
                   val_examples=val_examples, trial_seeds=trial_seeds, model=model, data_dir=data_dir,
                   trials=trials, train_epochs=train_epochs, max_train_steps=max_train_steps, seed=seed, recipe=given,
                   reuse_from=reuse_from,
                   task_options={"text_columns": text_columns, "label_column": label_column, "problem": problem})
    print_frontier_summary(doc)
    report = render_run_report(folder)
    typer.echo(f"wrote {Path(folder) / 'frontier.json'} and {report}")


@user_errors
def report_cmd(run_dir: Annotated[Path, typer.Argument(help="Run folder (run, verify and/or rank-report outputs).")]) -> None:
    """Render RUN/report.md with its figures (RUN/plots/*.png) from the folder's JSON files only.

    Example: heterosearch report runs/demo
    """
    from heterosearch.report.render import render_run_report

    path = render_run_report(run_dir)
    typer.echo(f"wrote {path}")

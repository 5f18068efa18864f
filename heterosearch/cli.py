"""The ``heterosearch`` command: one thin command per pipeline stage, plus ``run``, ``ls``, ``validate``.

Heavy libraries are imported inside the commands, so ``--help`` is instant. Bad input
(``UserError``) becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from heterosearch import recipe
from heterosearch.errors import UserError
from heterosearch.options import OneLineErrors, check_float, check_int, check_seed, user_errors

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


MAX_SEEDS = 1000  # seeds per method: far beyond what a paired comparison needs
MAX_TRIALS = 10**6


def _check_common(
    trials: Optional[int] = None, score_batches: Optional[int] = None, max_train_steps: Optional[int] = None,
    seed: Optional[int] = None, split_seed: Optional[int] = None, train_epochs: Optional[float] = None,
    batch_size: Optional[int] = None, max_length: Optional[int] = None,
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


def _budget(value: Optional[str]) -> Optional[int]:
    """Parse --budget; a bad value is a UserError, so it gets the one-line `error:` treatment.

    (typer.BadParameter would print a multi-line, terminal-width boxed usage panel instead.)
    """
    if value is None:
        return None
    from heterosearch.space.budget import parse_budget

    return parse_budget(value)


BudgetOpt = Annotated[Optional[str], typer.Option("--budget", "-b", help="Adapter-parameter budget: 500000, 500k, 0.5M, 1.2e6.")]
TaskOpt = Annotated[str, typer.Option(help="GLUE task: mrpc, rte, stsb, sst2, cola.")]
ModelOpt = Annotated[Optional[str], typer.Option(help="Hugging Face model name or local path (default: the packaged all-MiniLM-L6-v2).")]
SpaceOpt = Annotated[str, typer.Option(help="Search space: a name from search_spaces/ or a YAML path.")]
ProxyOpt = Annotated[str, typer.Option(help="Proxy whose scores the search maximises (see `heterosearch ls`).")]
SeedOpt = Annotated[int, typer.Option(help="Seed for data order, proxies, sampler and adapter init.")]
DataOpt = Annotated[Optional[str], typer.Option("--data-dir", help="Folder in GLUE TSV layout (DIR/MRPC/train.tsv) (default: the packaged MRPC, then the hub).")]
OutOpt = Annotated[Optional[str], typer.Option("--out", "-o", help="Run folder (default: runs/TASK-SPACE-BUDGET-PROXY-sSEED).")]
TrialsOpt = Annotated[int, typer.Option(help="Optuna trials (finished trials of a resumed study count).")]
EpochsOpt = Annotated[float, typer.Option("--train-epochs", help="Verification training epochs.")]
StepsOpt = Annotated[Optional[int], typer.Option("--max-train-steps", help="Cap on verification training steps (quick checks).")]
BatchesOpt = Annotated[int, typer.Option("--score-batches", help="Training minibatches the proxies see.")]
StorageOpt = Annotated[Optional[str], typer.Option(help="Study storage: a postgresql:// URL lets `heterosearch worker` join (default: RUN/study.journal).")]


def _print_summary(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from heterosearch.report.markdown import _metric_names

    # Not a terminal (a file, a pipe, a test): no hard wrapping at 80 columns in mid-sentence.
    console = Console() if sys.stdout.isatty() else Console(width=200, soft_wrap=True)
    console.print(f"[bold]allocation[/bold] ({results['params']:,} adapter parameters, budget {results['budget']:,}; "
                  f"task head {results.get('head_params') or 0:,} reported separately):")
    ranks = results["allocation"]["lora"]
    by_layer: dict[int, list[str]] = {}
    for s in results["sites"]:
        r = ranks.get(s["key"], 0)
        if r:
            by_layer.setdefault(s["layer"], []).append(f"{s['role']}={r}")
    for layer, parts in sorted(by_layer.items()):
        console.print(f"  L{layer}: lora {' '.join(parts)}")
    from heterosearch.report.markdown import element_lines

    for line in element_lines(results["allocation"]):
        console.print(f"  {line}")
    v = results.get("verify")
    if v:
        names = _metric_names(v["winner"])
        sp = results.get("splits", {})
        steps = v["winner"].get("steps")
        table = Table(title=f"{results['task']}, seed {results['seed']}, {steps} training steps: val = {sp.get('val_examples', '?')} "
                            f"examples carved from train (selection), test = GLUE dev, {sp.get('test_examples', '?')} examples (report)")
        table.add_column("method")
        table.add_column("adapter params", justify="right")
        for m in names:
            table.add_column(f"val {m}", justify="right")
        for m in names:
            table.add_column(f"test {m}", justify="right")
        for label in ("winner", "baseline"):
            e = v[label]
            splits = e.get("splits", {})
            cells = [f"{100 * splits.get(s, {}).get(m, float('nan')):.1f}" for s in ("val", "test") for m in names]
            table.add_row(f"{label}: {e['name']}", f"{e['params']:,}", *cells)
        if v.get("both_trivial"):  # no comparison: two models that learnt nothing tie by construction
            main = names[0]
            console.print(f"[yellow]No comparison: after {steps} training steps both the winner and the baseline predict "
                          f"a single class on the test split ({main} {100 * v['winner'].get(main, 0):.1f} and "
                          f"{100 * v['baseline'].get(main, 0):.1f}; for regression: barely correlate with the labels). "
                          "Train longer (--train-epochs) or use `heterosearch verify RUN --seeds 5`.[/yellow]")
            return
        console.print(table)
        if any(v[k].get("trivial", {}).get("test") for k in ("winner", "baseline")):
            which = [k for k in ("winner", "baseline") if v[k].get("trivial", {}).get("test")]
            console.print(f"[yellow]The {which[0]} predicts a single class on the test split.[/yellow]")
        console.print("One seed: a difference of a few points is within seed noise; "
                      "`heterosearch verify RUN --seeds 5` gives paired intervals.")


@app.command()
@user_errors
def run(
    budget: BudgetOpt = None,
    task: TaskOpt = "mrpc",
    model: ModelOpt = None,
    space: SpaceOpt = "lora",
    proxy: ProxyOpt = "spectral",
    trials: TrialsOpt = 300,
    train_epochs: EpochsOpt = recipe.EPOCHS,
    max_train_steps: StepsOpt = None,
    seed: SeedOpt = 0,
    data_dir: DataOpt = None,
    out: OutOpt = None,
    score_batches: BatchesOpt = 8,
    storage: StorageOpt = None,
    lr: Annotated[float, typer.Option(help="Learning rate of every trained model (the recipe's, chosen on val).")] = recipe.LR,
    warmup: Annotated[float, typer.Option(help="Linear warm-up, as a fraction of the training steps.")] = recipe.WARMUP,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = recipe.BATCH_SIZE,
    max_length: Annotated[int, typer.Option(help="Tokens per example (longer ones are truncated).")] = recipe.MAX_LENGTH,
    val_fraction: Annotated[float, typer.Option(help="Share of the training file carved off as the validation split.")] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed of the validation split (the same for every training seed).")] = 0,
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
    _check_common(trials=trials, score_batches=score_batches, max_train_steps=max_train_steps, seed=seed,
                  train_epochs=train_epochs, batch_size=batch_size, max_length=max_length, split_seed=split_seed)
    cfg = RunConfig(budget=b, task=task, model=model, space=space, proxy=proxy, trials=trials, train_epochs=train_epochs,
                    max_train_steps=max_train_steps, seed=seed, data_dir=data_dir, out=out, score_batches=score_batches,
                    storage=storage, lr=lr, warmup=warmup, batch_size=batch_size, max_length=max_length,
                    val_fraction=val_fraction, split_seed=split_seed)
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
    _check_common(seed=seed, score_batches=score_batches)
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
    proxy: Annotated[Optional[str], typer.Option(help="Proxy to maximise (default: the run's).")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Optuna trials (default: the run's).")] = None,
    storage: StorageOpt = None,
) -> None:
    """Search the allocation under the budget (Optuna + exact optimum) into RUN/search.json.

    Example: heterosearch search runs/demo --budget 0.5M --trials 200
    """
    _check_common(trials=trials)
    from heterosearch.pipeline import Run, stage_score, stage_search

    r = Run.reopen(run_dir, budget=_budget(budget), proxy=proxy, trials=trials, storage=storage)
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
) -> None:
    """Short-train the winner and the uniform baseline at the same budget; write results and report.

    Example: heterosearch train runs/demo --train-epochs 1
    """
    _check_common(train_epochs=train_epochs, max_train_steps=max_train_steps)
    from heterosearch.pipeline import Run, check_exported, load_winner, stage_score, stage_verify, write_results

    r = Run.reopen(run_dir, train_epochs=train_epochs, max_train_steps=max_train_steps)
    winner, search_summary = load_winner(r)
    check_exported(r, winner)
    verified = stage_verify(r, winner)
    results = write_results(r, winner, search_summary, verified, stage_score(r))
    r.save_config()
    _print_summary(results)


@app.command()
@user_errors
def worker(
    storage: Annotated[str, typer.Option(help="The search's storage: postgresql://USER:PASSWORD@HOST:PORT/DB (or a journal file).")],
    study: Annotated[Optional[str], typer.Option(help="Study name (printed by `run --storage`) (default: the only study).")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Stop when the study has this many finished trials (default: the study's).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampler seed of this worker (default: random; give each worker its own).")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the study to appear (start workers before `run` has scored).")] = 0.0,
    heartbeat: Annotated[int, typer.Option(help="Seconds between heartbeats; a trial silent for 3x this is failed and retried.")] = 10,
) -> None:
    """Join a running search from another process or machine (needs no model or data).

    Example: heterosearch worker --storage postgresql://hs:secret@db:5432/hs --study mrpc-lora-500000-spectral-s0
    """
    check_int("--trials", trials, 1, MAX_TRIALS)
    check_seed("--seed", seed)
    check_float("--wait", wait, 0.0, 10**7, low_open=False)
    check_int("--heartbeat", heartbeat, 1, 86_400)
    from heterosearch.search.worker import run_worker

    res = run_worker(storage, study_name=study, n_trials=trials, seed=seed, wait=wait, heartbeat=heartbeat)
    typer.echo(f"worker: ran {res.ran} trials; study {res.study_name!r} has {res.complete}/{res.target} finished trials")


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
    from heterosearch.adapters.kinds import ADAPTER_KINDS

    typer.echo("adapter kinds:")
    for name, kind in ADAPTER_KINDS.items():
        typer.echo(f"  {name:<10} {kind.summary} (prefix {kind.prefix})")
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

    Example: heterosearch validate heterosearch/search_spaces/*.yaml
    """
    from heterosearch.space import load_space

    for f in files:
        sp = load_space(f)
        typer.echo(f"ok {f}: {sp.name} v{sp.version}, kinds {', '.join(sp.kinds)}")


@app.command()
@user_errors
def verify(
    run_dir: Annotated[Path, typer.Argument(help="Run folder made by `run` (needs search.json).")],
    seeds: Annotated[int, typer.Option(help="Training seeds per method (the run's seed and the next ones).")] = 3,
    methods: Annotated[Optional[str], typer.Option(help="Comma list from winner,uniform_qv,uniform_all,random,heterolora,adalora (default: all).")] = None,
    train_epochs: Annotated[Optional[float], typer.Option("--train-epochs", help="Training epochs (default: the run's).")] = None,
    max_train_steps: StepsOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Discard RUN/verify_seeds.json and retrain every pair.")] = False,
) -> None:
    """Train the winner and strong baselines at the same budget over seeds; paired statistics into RUN/verify_seeds.json.

    Finished (method, seed) pairs are kept: rerun with more --seeds to add seeds.
    Example: heterosearch verify runs/demo --seeds 5
    """
    check_int("--seeds", seeds, 1, MAX_SEEDS)
    _check_common(train_epochs=train_epochs, max_train_steps=max_train_steps)
    from heterosearch.report.render import render_run_report
    from heterosearch.verify import verify_run

    state = verify_run(run_dir, seeds=seeds, methods=methods, train_epochs=train_epochs,
                       max_train_steps=max_train_steps, overwrite=overwrite)
    metric = state["metric"]
    block = state["summary"].get("test", {}).get(metric, {})
    for m, d in block.get("methods", {}).items():
        pair = block.get("paired", {}).get(m)
        extra = "" if not pair else (f"  winner - {m}: {100 * pair['mean_diff']:+.1f} points"
                                     + (f" (t-test p {pair['t_test_p']:.3f})" if pair.get("t_test_p") is not None else f" ({pair.get('test', '')})"))
        std = "" if d["std"] is None else f" ± {100 * d['std']:.1f}"
        typer.echo(f"{m:<12} test {metric} {100 * d['mean']:.1f}{std} (n={d['n']}){extra}")
    report = render_run_report(run_dir)
    typer.echo(f"wrote {Path(run_dir) / 'verify_seeds.json'} and {report}")


@app.command("rank-report")
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
) -> None:
    """Rank correlation of every proxy with short-trained accuracy over sampled allocations, into OUT/rank_report.json.

    Example: heterosearch rank-report --task mrpc --space lora --samples 20 --budget 0.5M --steps 30
    """
    from heterosearch.report.render import render_run_report
    from heterosearch.verify import rank_report
    from heterosearch.verify.ranking import NOISY_BELOW

    b = _budget(budget)
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
    _check_common(train_epochs=train_epochs, score_batches=score_batches, seed=seed)
    rep = rank_report(task=task, space=space, samples=samples, budget=b, steps=steps or None, seeds=seed_list, out=out,
                      model=model, data_dir=data_dir, score_batches=score_batches, seed=seed, design=design,
                      train_epochs=train_epochs)
    for p, st in rep["proxies"].items():
        typer.echo(f"{p:<10} rho {st['spearman']['value'] or 0:+.2f}  tau {st['kendall']['value'] or 0:+.2f}  "
                   f"top-{rep['k']} precision {st['top_k_precision']['value'] or 0:.2f}")
    nc = rep["noise_ceiling"]
    typer.echo(f"{'ceiling':<10} rho {nc['spearman']['value'] or 0:+.2f}  tau {nc['kendall']['value'] or 0:+.2f}  (seed vs seed)")
    for label, part in ((rep["metric"], rep), ("validation loss", rep.get("by_val_loss"))):
        rel = (part or {}).get("reliability")
        if rel:
            warn = "  (mostly seed noise: raise --steps)" if rel["reliability"] < NOISY_BELOW else ""
            typer.echo(f"reliability of the seed-mean {label}: {rel['reliability']:.2f}{warn}")
    report = render_run_report(rep["out"])
    typer.echo(f"wrote {Path(rep['out']) / 'rank_report.json'} and {report}")


@app.command("frontier")
@user_errors
def frontier_cmd(
    budgets: Annotated[str, typer.Option(help="Comma list of budgets, e.g. 41.5k,83k,0.5M.")],
    task: TaskOpt = "mrpc",
    seeds: Annotated[str, typer.Option(help="Training seeds per budget: one count (5) or one per budget (5,3,3).")] = "3",
    methods: Annotated[Optional[str], typer.Option(help="Comma list from winner,uniform_qv,uniform_all,random,heterolora,adalora.")] = None,
    space: SpaceOpt = "lora",
    proxy: ProxyOpt = "spectral",
    model: ModelOpt = None,
    data_dir: DataOpt = None,
    trials: TrialsOpt = 300,
    train_epochs: Annotated[Optional[float], typer.Option("--train-epochs", help="Training epochs (default: the recipe's).")] = None,
    max_train_steps: StepsOpt = None,
    seed: SeedOpt = 0,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: runs/frontier-TASK-SPACE-PROXY).")] = None,
) -> None:
    """Search at each budget and train the winner and the baselines over seeds: metric against budget.

    Rerun the same command to resume. Example: heterosearch frontier --task mrpc --budgets 41.5k,83k,0.5M --seeds 5,3,3
    """
    from heterosearch.report.render import render_run_report
    from heterosearch.verify.frontier import frontier

    parsed = [_budget(b.strip()) for b in budgets.split(",") if b.strip()]
    try:
        counts = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds takes a count (5) or one count per budget (5,3,3), got {seeds!r}"[:200]) from None
    for n in counts:
        check_int("--seeds", n, 1, MAX_SEEDS)
    _check_common(trials=trials, train_epochs=train_epochs, max_train_steps=max_train_steps, seed=seed)
    folder = out or f"runs/frontier-{task}-{Path(space).stem}-{proxy}"
    doc = frontier(task=task, budgets=[b for b in parsed if b is not None], seeds=counts, out=folder, methods=methods,
                   space=space, proxy=proxy, model=model, data_dir=data_dir, trials=trials, train_epochs=train_epochs,
                   max_train_steps=max_train_steps, seed=seed)
    metric = doc.get("metric")
    for b in sorted(doc.get("paired", {}), key=int):
        for m, p in doc["paired"][b].items():
            if p.get("mean_diff") is None:
                continue
            ci = p.get("ci95")
            ci_txt = f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else ""
            typer.echo(f"budget {int(b):>9,}: winner - {m:<11} test {metric} {100 * p['mean_diff']:+.1f}{ci_txt} (n={p['n']})")
    report = render_run_report(folder)
    typer.echo(f"wrote {Path(folder) / 'frontier.json'} and {report}")


@app.command("report")
@user_errors
def report_cmd(run_dir: Annotated[Path, typer.Argument(help="Run folder (run, verify and/or rank-report outputs).")]) -> None:
    """Render RUN/report.md with its figures (RUN/plots/*.png) from the folder's JSON files only.

    Example: heterosearch report runs/demo
    """
    from heterosearch.report.render import render_run_report

    path = render_run_report(run_dir)
    typer.echo(f"wrote {path}")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

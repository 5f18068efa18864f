"""What the CLI prints after a command: the run's summary table and the evidence commands' lines.

Kept apart from the commands (``cli.py``) so each command reads as: check the options, do the
work, print. Output goes through ``typer.echo`` and rich, as before: tests read it.
"""

from __future__ import annotations

import sys
from typing import Any

import typer


def print_run_summary(results: dict[str, Any]) -> None:
    """The winner's allocation and, after training, the winner vs baseline table (``run`` and ``train``)."""
    from rich.console import Console
    from rich.table import Table

    from heterosearch.report.markdown import _metric_names
    from heterosearch.tasks._metrics import comparison_line, format_metric

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
        val_from = "from the validation file" if sp.get("val_file") else "carved from train"
        lr = (v.get("train_config") or {}).get("lr")
        at = f" at peak lr {lr:.3g}" if isinstance(lr, (int, float)) else ""  # falls with the budget's rank (recipe.py)
        table = Table(title=f"{results['task']}, seed {results['seed']}, {steps} training steps{at}: val = {sp.get('val_examples', '?')} "
                            f"examples {val_from} (selection), test = {sp.get('test_from', 'GLUE dev')}, "
                            f"{sp.get('test_examples', '?')} examples (report)")
        table.add_column("method")
        table.add_column("adapter params", justify="right")
        for m in names:
            table.add_column(f"val {m}", justify="right")
        for m in names:
            table.add_column(f"test {m}", justify="right")
        for label in ("winner", "baseline"):
            e = v[label]
            splits = e.get("splits", {})
            cells = [format_metric(m, splits.get(s, {}).get(m)) for s in ("val", "test") for m in names]
            table.add_row(f"{label}: {e['name']}", f"{e['params']:,}", *cells)
        if v.get("both_trivial"):  # no comparison: two models that learnt nothing tie by construction
            main = names[0]
            console.print(f"[yellow]No comparison: after {steps} training steps both the winner and the baseline predict "
                          f"a single class on the test split ({main} {100 * v['winner'].get(main, 0):.1f} and "
                          f"{100 * v['baseline'].get(main, 0):.1f}; for regression: barely correlate with the labels). "
                          "Train longer (--train-epochs) or use `heterosearch verify RUN --seeds 5`.[/yellow]")
            return
        console.print(table)
        if v.get("comparison"):
            console.print(comparison_line(v["comparison"]))
        if any(v[k].get("trivial", {}).get("test") for k in ("winner", "baseline")):
            which = [k for k in ("winner", "baseline") if v[k].get("trivial", {}).get("test")]
            console.print(f"[yellow]The {which[0]} predicts a single class on the test split.[/yellow]")
        console.print("One seed: a difference of a few points is within seed noise; "
                      "`heterosearch verify RUN --seeds 5` gives paired intervals.")


def print_verify_summary(state: dict[str, Any]) -> None:
    """Per method: the test metric's mean ± sd over seeds, and the winner's paired difference to it (``verify``)."""
    from heterosearch.tasks._metrics import LOWER_IS_BETTER, format_metric

    metric = state["metric"]
    lower = metric in LOWER_IS_BETTER  # a loss: differences in its own units, negative = the winner is better
    block = state["summary"].get("test", {}).get(metric, {})
    for m, d in block.get("methods", {}).items():
        pair = block.get("paired", {}).get(m)
        diff = "" if not pair else (f"{pair['mean_diff']:+.3f} (lower is better)" if lower else f"{100 * pair['mean_diff']:+.1f} points")
        extra = "" if not pair else (f"  winner - {m}: {diff}"
                                     + (f" (t-test p {pair['t_test_p']:.3f})" if pair.get("t_test_p") is not None else f" ({pair.get('test', '')})"))
        std = "" if d["std"] is None else f" ± {format_metric(metric, d['std'])}"
        typer.echo(f"{m:<12} test {metric} {format_metric(metric, d['mean'])}{std} (n={d['n']}){extra}")
    if state.get("selection"):
        from heterosearch.evidence.selection import describe_selection

        typer.echo(describe_selection(state["selection"]))


def print_rank_summary(rep: dict[str, Any]) -> None:
    """Per proxy: rho, tau and top-k precision; the seed-vs-seed ceiling; the seed mean's reliability (``rank-report``)."""
    from heterosearch.evidence.ranking import NOISY_BELOW

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


def print_frontier_summary(doc: dict[str, Any]) -> None:
    """Per budget and method: winner - method on the test split, with its 95 % interval (``frontier``)."""
    metric = doc.get("metric")
    for b in sorted(doc.get("paired", {}), key=int):
        for m, p in doc["paired"][b].items():
            if p.get("mean_diff") is None:
                continue
            ci = p.get("ci95")
            ci_txt = f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else ""
            typer.echo(f"budget {int(b):>9,}: winner - {m:<11} test {metric} {100 * p['mean_diff']:+.1f}{ci_txt} (n={p['n']})")
    from heterosearch.evidence.selection import describe_selection

    for b, sel in sorted((doc.get("selection") or {}).items(), key=lambda kv: int(kv[0])):
        if sel:
            typer.echo(f"budget {int(b):>9,}: {describe_selection(sel)}")


def print_catalog() -> None:
    """The search spaces, adapter kinds, proxies and tasks this installation knows (``ls``)."""
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

"""The full run report: RUN/report.md with its figures in RUN/plots/, rendered only from JSON files.

Reads whichever of these the folder has: ``results.json`` (the run; its section is
``markdown.render_report``), ``search.json`` (search history), ``scores.json`` (site
shapes, when ``results.json`` is absent), ``verify_seeds.json`` (the ``verify`` command; the ``train``
stage's ``verify.json`` reaches the report through ``results.json``), ``rank_report.json``
(``heterosearch rank-report``) and ``frontier.json`` (``heterosearch frontier``). Never loads a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.evidence.selection import RULE as SELECTION_RULE
from heterosearch.evidence.selection import describe_selection
from heterosearch.export.schema import read_run_file
from heterosearch.tasks._metrics import LOWER_IS_BETTER, REPORTED, format_metric

PLOTS_DIR = "plots"


def _load(path: Path) -> Any:
    """The file checked against its schema (export/schema.py, by file name), or None when the folder lacks it."""
    return read_run_file(path, path.name) if path.is_file() else None


def _pct(x: Any, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def _p(x: Any) -> str:
    return "-" if x is None else (f"{x:.3f}" if x >= 0.001 else f"{x:.1e}")


def _num(x: Any, digits: int = 2) -> str:
    return "-" if x is None else f"{x:+.{digits}f}" if digits else f"{x}"


def _ci(stat: Mapping[str, Any]) -> str:
    v = stat.get("value")
    if v is None:
        return "n/a"
    if stat.get("low") is None:
        return f"{v:+.2f}"
    return f"{v:+.2f} [{stat['low']:+.2f}, {stat['high']:+.2f}]"


def _params_cell(entries: list[Mapping[str, Any]]) -> str:
    counts = sorted({e["params"] for e in entries})
    if not counts:
        return "-"
    return f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,} - {counts[-1]:,}"


def verify_section(v: Mapping[str, Any], plot: str | None) -> list[str]:
    """Markdown for verify_seeds.json: per split, mean ± std per method and the paired comparison."""
    metric = v["metric"]
    runs = v.get("runs", {})
    by_method: dict[str, list[Mapping[str, Any]]] = {}
    for e in runs.values():
        by_method.setdefault(e["method"], []).append(e)
    order = [m for m in v.get("methods_order", list(by_method)) if m in by_method]
    winner_params = v.get("winner_params")
    out = [
        f"## Multi-seed verification ({len(v.get('seeds', []))} seeds, same data order, schedule and seed per method)",
        "",
        f"Budget {v['budget']:,}; winner {winner_params:,} adapter parameters. Each method's exact count is "
        "shown (random: range over its per-seed draws; AdaLoRA: the effective count of its final ranks, "
        "A row + B column + E entry per kept rank). Paired difference = winner - method, per seed.",
        "",
    ]
    summary = v.get("summary", {})
    for split in ("val", "test", "dev"):  # "dev": reports written before the held-out protocol
        if split not in summary:
            continue
        metrics = [m for m in REPORTED if m in summary[split]]
        main = metric if metric in summary[split] else metrics[0]
        lower = main in LOWER_IS_BETTER  # a loss: the difference is in its own units, and negative is a win
        unit = "; lower is better" if lower else ", points"
        out += [
            f"### {split} split" + {"val": " (carved from train: selection)", "test": " (the GLUE dev file: report only)"}.get(split, "")
            if str(v.get("test_split", "the GLUE dev")).startswith("the GLUE dev") else
            f"### {split} split" + {"val": " (selection)", "test": " (report only)"}.get(split, ""),
            "",
            "| method | adapter params | vs winner | " + " | ".join(f"{m} mean ± std" for m in metrics)
            + f" | n | winner - method ({main}{unit}) | wins/losses/ties | t-test p | Wilcoxon p |",
            "|---|---|---|" + "---|" * len(metrics) + "---|---|---|---|---|",
        ]
        for m in order:
            if m not in summary[split][main]["methods"]:
                continue
            entries = by_method[m]
            gap = [e.get("gap") for e in entries if e.get("gap") is not None]
            gap_cell = "-" if not gap else (f"{100 * gap[0]:+.1f} %" if len(set(round(g, 6) for g in gap)) == 1
                                           else f"{100 * min(gap):+.1f} .. {100 * max(gap):+.1f} %")
            cells = []
            for met in metrics:
                d = summary[split][met]["methods"].get(m, {})
                mean = format_metric(met, d.get("mean"))
                cells.append(f"{mean} ± {format_metric(met, d.get('std'))}" if d.get("std") is not None else mean)
            n = summary[split][main]["methods"][m]["n"]
            pair = summary[split][main]["paired"].get(m)
            if pair:
                k, digits = (1, 3) if lower else (100, 1)
                diff = f"{k * pair['mean_diff']:+.{digits}f}" + (f" ± {k * pair['std_diff']:.{digits}f}" if pair.get("std_diff") is not None else "")
                wlt = f"{pair['wins']}/{pair['losses']}/{pair['ties']}"
                none = "n too small" if pair["n"] < 3 else "undefined"
                tp = _p(pair["t_test_p"]) if pair["t_test_p"] is not None else none
                wp = _p(pair["wilcoxon_p"]) if pair["wilcoxon_p"] is not None else none
            else:
                diff, wlt, tp, wp = "(reference)", "", "", ""
            name = entries[0].get("name", m) if m != "random" else "random allocations (one draw per seed)"
            out.append(f"| **{m}**: {name} | {_params_cell(entries)} | {gap_cell} | " + " | ".join(cells)
                       + f" | {n} | {diff} | {wlt} | {tp} | {wp} |")
        out.append("")
    ada = by_method.get("adalora")
    if ada:
        e = ada[0]
        equiv = _params_cell([{"params": x["params_lora_equivalent"]} for x in ada])
        sched = ", ".join(f"{k} {v}" for k, v in (e.get("adalora_schedule") or {}).items())
        out += [
            f"AdaLoRA keeps full-size tensors and masks pruned ranks: {e['params_allocated']:,} adapter tensor "
            f"elements are allocated and trained; the effective final budget is {_params_cell(ada)} "
            f"(the same ranks by the LoRA formula: {equiv}); target_r {e['target_r']}, init_r {e['init_r']}; "
            f"{sched}.",
            "",
        ]
    if v.get("selection"):
        line = describe_selection(v["selection"])
        out += [line[0].upper() + line[1:] + f". Rule: {SELECTION_RULE}.", ""]
    if v.get("unavailable"):
        out += ["Not run: " + "; ".join(f"{m} ({why})" for m, why in v["unavailable"].items()), ""]
    out += [f"Test split: {v.get('test_split', '-')}.", ""]
    n_seeds = len(v.get("seeds", []))
    if n_seeds < 3:
        out += [f"With {n_seeds} seed(s) no test is run (n too small); MRPC test (GLUE dev) moves by several points between seeds.", ""]
    if plot:
        out += [f"![seed spread per method]({plot})", ""]
    return out


def frontier_section(f: Mapping[str, Any], plot: str | None) -> list[str]:
    """Markdown for frontier.json: per budget, every method's test metric and winner - method with its interval."""
    metric = f.get("metric") or "-"
    seeds = f.get("seeds", {})
    out = [
        f"## Accuracy against budget ({f['task']}, {f['space']} space, {f['proxy']} proxy; {f.get('status', '-')})",
        "",
        "Per budget: one search, then every method trained with the same recipe and seeds. Test = the GLUE dev "
        "file (report only); val = carved from train (selection). Paired difference = winner - method over the "
        "seeds both have, with a t-interval (95 %) and the seeds a paired t-test needs to resolve a 1-point "
        "difference at the observed spread (80 % power).",
        "",
        f"| budget | seeds | method | adapter params | val {metric} | test {metric} | one-class runs | "
        f"winner - method (test, {'lower is better' if metric in LOWER_IS_BETTER else 'points'}) | 95 % interval | "
        "seeds for 1 pt | p (t-test) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in sorted(f.get("points", {}), key=int):
        for m in f.get("methods", []):
            p = f["points"][b].get(m)
            if not p:
                continue
            par = p["params"]
            pcell = f"{par['min']:,}" if par["min"] == par["max"] else f"{par['min']:,} - {par['max']:,}"

            def ms(split: str, p: Mapping[str, Any] = p) -> str:
                d = p.get(split)
                if not d or d.get("mean") is None:
                    return "-"
                return format_metric(metric, d["mean"]) + (f" ± {format_metric(metric, d['std'])}" if d.get("std") is not None else "")

            pair = f.get("paired", {}).get(b, {}).get(m)
            if pair and pair.get("mean_diff") is not None:
                k, dg = (1, 3) if metric in LOWER_IS_BETTER else (100, 1)  # a loss in its own units
                diff = f"{k * pair['mean_diff']:+.{dg}f}" + (f" ± {k * pair['std_diff']:.{dg}f}" if pair.get("std_diff") is not None else "")
                ci = pair.get("ci95")
                ci_cell = f"[{k * ci[0]:+.{dg}f}, {k * ci[1]:+.{dg}f}]" if ci else "n < 2"
                need = pair.get("seeds_for_1pt")
                need_cell = "-" if need is None else f"{need}"
                pcell2 = _p(pair.get("t_test_p"))
            else:
                diff, ci_cell, need_cell, pcell2 = ("(reference)" if m == "winner" else "-"), "", "", ""
            out.append(f"| {int(b):,} | {seeds.get(b, '-')} | **{m}**: {p['name']} | {pcell} | {ms('val')} | {ms('test')} | "
                       f"{p.get('trivial_test', 0)}/{p.get('n', 0)} | {diff} | {ci_cell} | {need_cell} | {pcell2} |")
    out.append("")
    rates = []
    for b in sorted(f.get("points", {}), key=int):
        by_rate: dict[str, list[str]] = {}
        for m, p in f["points"][b].items():
            if p.get("lr"):
                by_rate.setdefault(", ".join(f"{x:.3g}" for x in p["lr"]), []).append(m)
        if by_rate:
            rates.append(f"{int(b):,}: " + "; ".join(f"{r} ({', '.join(ms)})" for r, ms in by_rate.items()))
    if rates:
        out += ["Peak learning rate per budget (recipe.py: LoRA's falls once uniform LoRA on all sites has rank > 2; "
                "AdaLoRA has its own): " + " | ".join(rates) + ".", ""]
    picks = [f"{int(b):,}: {describe_selection(sel).removeprefix('validated pick: ')}" for b, sel in sorted((f.get("selection") or {}).items(),
                                                                          key=lambda kv: int(kv[0])) if sel]
    if picks:
        out += ["Validated pick per budget (`evidence/selection.py`: " + SELECTION_RULE + "): " + " | ".join(picks) + ".", ""]
    searches = [_search_line(b, s) for b, s in sorted(f.get("search", {}).items(), key=lambda kv: int(kv[0]))]
    if searches:
        out += ["Search per budget (the winner's source; a non-additive objective's value for its winner and for "
                "the knapsack's pick, on the validation split): " + " | ".join(searches) + ".", ""]
    if plot:
        out += [f"![{metric} against adapter parameters]({plot})", ""]
    return out


def _search_line(budget: str, s: Mapping[str, Any]) -> str:
    line = f"{int(budget):,}: {s['objective']}"
    if s.get("train_steps"):
        rung = s.get("rung_steps")
        seeds = f", {s['trial_seeds']} seeds" if (s.get("trial_seeds") or 1) > 1 else ""
        line += (f" ({s['train_steps']} steps per trial{seeds}"
                 + (", no pruning" if rung == 0 else f", rung at {rung}" if rung else "") + ")")
    line += f", winner from {s.get('winner_source') or '-'}"
    if s.get("trials") is not None:
        line += f", {s['trials']} trials" + (f" ({s['pruned']} pruned)" if s.get("pruned") is not None else "")
    if s.get("best") is not None and s.get("knapsack") is not None:
        line += f", {s['best']:.4f} against the knapsack pick's {s['knapsack']:.4f} ({s['best'] - s['knapsack']:+.4f})"
    tie = s.get("tie_rule")
    if tie:
        bound = tie.get("lower_bound")
        line += (f", tie rule: trial {tie['best_trial']} against uniform_all, gain {tie['mean_gain']:+.4f} (bound "
                 + ("-" if bound is None else f"{bound:+.4f}") + "): "
                 + ("uniform_all kept" if tie.get("kept_reference") else "the best trial kept"))
    if s.get("seconds") is not None:
        line += f", {s['seconds'] / 60:.0f} min" if s["seconds"] >= 60 else f", {s['seconds']:.0f} s"
    return line


def rank_section(r: Mapping[str, Any], plot: str | None, loss_plot: str | None = None) -> list[str]:
    """Markdown for rank_report.json: rank statistics per proxy with CIs, noise ceiling, baselines."""
    n = sum(1 for c in r["candidates"] if "mean" in c)
    sign = -1.0 if r.get("metric_sign") == "-" else 1.0  # "-": the candidates hold minus a loss
    split = "validation" if "by_val_loss" in r or r.get("split") == "val" else "dev"
    out = [
        f"## Proxy ranking quality ({n} allocations at budget {r['budget']:,} ± {100 * r['tolerance']:.0f} %, "
        f"{r['steps']} training steps, seeds {', '.join(map(str, r['seeds']))})",
        "",
        f"Each proxy scores an allocation by the sum of its sites' scores at the chosen ranks; the sign is fixed "
        f"in advance (higher = better). Correlations are against the mean {split} "
        f"{r['metric'] if sign > 0 else 'minus ' + r['metric'] + ' (a lower loss is better)'} of the two seeds; "
        f"top-k precision uses k = {r.get('k', '-')}; brackets are paired bootstrap 95 % intervals "
        "(BCa; percentile where BCa is undefined).",
        "",
    ]
    if r.get("status") != "complete":
        return out + ["(partial: statistics are computed when every sample has been trained)", ""]
    out += _rank_table(r)
    loss = r.get("by_val_loss") or r.get("by_dev_loss")
    if loss:
        out += [f"The same statistics against minus the mean {split} loss of the two seeds (higher = better). The loss "
                f"can still separate models when a short training leaves every one at the same {r['metric']} "
                "(for example the majority class):", ""]
        out += _rank_table(loss)
    u = r.get("uniform")
    if u and "mean" in u:
        out += [f"Reference: {u['name']} ({u['params']:,} parameters) reaches {format_metric(r['metric'], sign * u['mean'])} {split} {r['metric']} "
                f"at the same fidelity; {100 * u['fraction_of_samples_above']:.0f} % of the sampled allocations beat it.", ""]
    if plot:
        out += [f"![proxy score against accuracy]({plot})", ""]
    if loss_plot:
        out += [f"![proxy score against the loss]({loss_plot})", ""]
    return out


def _rank_table(r: Mapping[str, Any]) -> list[str]:
    """One table: every proxy, the noise ceiling and the baselines, with their CIs."""
    out = ["| score | Spearman rho | Kendall tau-b | top-k precision | CI method (rho / tau / top-k) |", "|---|---|---|---|---|"]

    def row(label: str, st: Mapping[str, Any]) -> str:
        methods = [st[k].get("method", "-") for k in ("spearman", "kendall", "top_k_precision")]
        how = methods[0] if len(set(methods)) == 1 else " / ".join(methods)
        return f"| {label} | {_ci(st['spearman'])} | {_ci(st['kendall'])} | {_ci(st['top_k_precision'])} | {how} |"

    for p, st in r["proxies"].items():
        out.append(row(f"**{p}** ({st.get('sign', '+')})", st))
    out.append(row("noise ceiling (seed vs seed)", r["noise_ceiling"]))
    out.append(row("baseline: parameter count", r["baselines"]["params"]))
    out.append(row("baseline: random score (one draw)", r["baselines"]["random"]))
    exp = r["baselines"].get("random_expected", {})
    out.append(f"| baseline: random (expected) | {exp.get('spearman', 0):+.2f} | {exp.get('kendall', 0):+.2f} | "
               f"{exp.get('top_k_precision', 0):+.2f} | exact |")
    out.append("")
    rel = r.get("reliability")
    if rel:
        line = (f"Reliability of the {rel['seeds']}-seed mean: **{rel['reliability']:.2f}** (sd across allocations "
                f"{rel['sd_of_seed_means']:.4g}, seed sd {rel['seed_sd']:.4g}); no score can correlate above about "
                f"{rel['max_correlation']:.2f} with it.")
        from heterosearch.evidence.ranking import NOISY_BELOW

        if rel["reliability"] < NOISY_BELOW:
            line += (" **Most of the measured differences are seed noise: at this fidelity the table cannot tell "
                     "proxies apart.** Train longer (--steps), or sample allocations that differ more.")
        out += [line, ""]
    return out


def _training_seconds(command: str, doc: dict) -> float:
    """Seconds spent training, summed over the runs recorded in a verify or rank-report file."""
    if command == "rank-report":
        return doc["timings"].get("train_samples", 0.0)  # summed over every candidate's runs, reused ones too
    return sum(v for k, v in doc.get("timings", {}).items() if k != "last_invocation")


def render_run_report(run_dir: Path | str) -> Path:
    """Write RUN/report.md (and RUN/plots/*.png) from the folder's JSON files; return the report path."""
    from heterosearch.report import plots
    from heterosearch.report.markdown import render_report

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder")
    results = _load(run_dir / "results.json")
    search = _load(run_dir / "search.json")
    verify = _load(run_dir / "verify_seeds.json")
    ranking = _load(run_dir / "rank_report.json")
    front = _load(run_dir / "frontier.json")
    scores = None if results else _load(run_dir / "scores.json")
    if not any((results, search, verify, ranking, front)):
        raise UserError(f"{run_dir} has none of results.json, search.json, verify_seeds.json, rank_report.json, "
                        "frontier.json: nothing to report")
    plot_dir = run_dir / PLOTS_DIR
    head, tail = f"# heterosearch report: {run_dir.name}\n", ""
    if results:  # the run's own report; the evidence sections go before its wall-time/versions tail
        base = render_report(run_dir).rstrip() + "\n"
        cut = min((i for i in (base.find("\n## Wall time"), base.find("\n## Versions")) if i >= 0), default=len(base))
        head, tail = base[:cut], base[cut:]
    lines: list[str] = [head.rstrip(), ""]

    figures: list[str] = []
    allocation = results["allocation"] if results else (search or {}).get("winner")
    sites = results.get("sites") if results else (scores or {}).get("sites")
    if allocation and sites:
        plots.allocation_heatmap(allocation, sites, plot_dir / "allocation.png",
                                 title=f"winner: rank per site ({results['params']:,} parameters)" if results else "winner: rank per site")
        figures.append(f"![allocation: layers x roles]({PLOTS_DIR}/allocation.png)")
    if search and search.get("history"):
        plots.search_history(search, plot_dir / "search_history.png")
        figures.append(f"![search history]({PLOTS_DIR}/search_history.png)")
    if figures:
        lines += ["## Figures", "", *[f + "\n" for f in figures]]
    if verify and verify.get("summary"):
        plot = None
        split = next((s for s in ("test", "dev") if s in verify["summary"]), next(iter(verify["summary"]), None))
        if split and verify["metric"] in verify["summary"][split]:
            plots.seed_spread(verify, plot_dir / "seed_spread.png", split=split)
            plot = f"{PLOTS_DIR}/seed_spread.png"
        lines += verify_section(verify, plot)
    if front:  # refreshed from the budget folders, so a partial frontier reports every finished training
        from heterosearch.evidence.frontier_summary import FRONTIER_FILE, summarize_frontier
        from heterosearch.export.files import write_json

        front.update(summarize_frontier(run_dir, [int(b) for b in front.get("budgets", [])]))
        write_json(run_dir / FRONTIER_FILE, front)
    if front and front.get("points"):
        plots.frontier_plot(front, plot_dir / "frontier.png")
        lines += frontier_section(front, f"{PLOTS_DIR}/frontier.png")
    if ranking:
        plot = loss_plot = None
        if ranking.get("status") == "complete" and ranking["candidates"]:
            plots.proxy_vs_accuracy(ranking, plot_dir / "proxy_vs_accuracy.png")
            plot = f"{PLOTS_DIR}/proxy_vs_accuracy.png"
            if ranking.get("by_val_loss") or ranking.get("by_dev_loss"):
                plots.proxy_vs_accuracy(ranking, plot_dir / "proxy_vs_dev_loss.png", target="neg_loss")
                loss_plot = f"{PLOTS_DIR}/proxy_vs_dev_loss.png"
        lines += rank_section(ranking, plot, loss_plot)
    walls = []
    for name, doc in (("verify", verify), ("rank-report", ranking)):
        t = (doc or {}).get("timings", {})
        if "last_invocation" in t:
            # Both commands resume, so the last invocation can be a fraction of the work; the
            # recorded per-training seconds add up over every invocation that contributed.
            trained = _training_seconds(name, doc)
            walls.append(f"{name} {t['last_invocation']:.0f} s (last invocation); "
                         f"{trained:.0f} s of training summed over all invocations")
    if walls:
        lines += ["## Wall time of the evidence commands", "", "; ".join(walls), ""]
    text = "\n".join(lines).rstrip() + "\n" + tail
    from heterosearch.export.files import write_text

    path = run_dir / "report.md"
    write_text(path, text)
    return path

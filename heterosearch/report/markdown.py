"""report.md, rendered only from the run folder's results files (never from a model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heterosearch.space.allocation import Allocation
from heterosearch.space.kinds import SECTIONS
from heterosearch.tasks._metrics import comparison_line, format_metric


def _metric_names(entry: dict[str, Any]) -> list[str]:
    from heterosearch.tasks._metrics import REPORTED

    return [k for k in REPORTED if k in entry]


def allocation_table(results: dict[str, Any]) -> str:
    """Layers x roles grid of ranks (0 = off)."""
    sites = results.get("sites", [])
    ranks = results["allocation"].get("lora", {})
    roles: list[str] = []
    for s in sites:
        if s["role"] not in roles:
            roles.append(s["role"])
    layers = sorted({s["layer"] for s in sites})
    lines = ["| layer | " + " | ".join(roles) + " |", "|---|" + "---|" * len(roles)]
    for layer in layers:
        cells = [str(ranks.get(f"L{layer}.{r}", 0)) for r in roles]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def element_lines(allocation: dict[str, Any]) -> list[str]:
    """The lines each kind writes for its elements (its ``report_lines``), kinds in apply order.

    Per-site LoRA writes none (``allocation_table`` shows it); banks, pools and shortcuts one
    line per bank / pool / connection type.
    """
    lines: list[str] = []
    for kind, elements in Allocation.from_dict(allocation).typed().items():
        lines += SECTIONS.get(kind).element.report_lines(elements)
    return lines


def render_report(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    from heterosearch.export.schema import read_run_file

    r = read_run_file(run_dir / "results.json", "results.json")
    s = r["search"]
    out = [
        f"# heterosearch run: {r['task']} at a budget of {r['budget']:,} adapter parameters",
        "",
        f"- model: `{r['model']}`; space: `{r['space']['name']}` v{r['space']['version']}; "
        f"proxy: `{r['proxy']}`; seed: {r['seed']}",
        f"- winner: **{r['params']:,}** adapter parameters (budget {r['budget']:,}; the task head is not charged)",
        f"- search: {s['trials']} Optuna trials ({s['feasible_trials']} feasible"
        + (f", {s['repaired_trials']} of them after a greedy budget repair" if s.get("repaired_trials") else "")
        + f") in {s['seconds']:.1f} s; "
        f"best feasible {s.get('objective_name', 'proxy')} objective {s['best_objective']:.4f} "
        + (f"= {100 * s['ratio']:.1f} % of the exact optimum {s['exact_objective']:.4f}"
           if s.get("objective_name", "proxy") == "proxy" else  # a ratio of negative losses would mislead
           f"({s['best_objective'] - s['exact_objective']:+.4f} over the knapsack pick's {s['exact_objective']:.4f})")
        + f"; exported: the {s['winner_source']} solution",
        f"- scoring state: {r['scoring']['scoring_state']}",
        "",
        "## Allocation (LoRA rank per site, 0 = off)",
        "",
        allocation_table(r),
        "",
    ]
    others = element_lines(r["allocation"])
    if others:
        out += ["Other elements (shared tensors counted once):", "", *[f"- {line}" for line in others], ""]
    v = r.get("verify")
    if v:
        names = _metric_names(v["winner"])
        sp = r.get("splits") or {}
        split_names = [x for x in ("val", "test") if x in v["winner"].get("splits", {})] or ["dev"]
        roles = sp.get("roles") or {}
        out += [
            "## Verification (same seed, data order and schedule)",
            "",
            f"val: {sp.get('val_examples', '?')} examples carved from the training file (seeded, stratified), for "
            f"selection; test: the GLUE dev file ({sp.get('test_examples', '?')} examples), for this report only."
            if sp.get("test_from", "GLUE dev") == "GLUE dev" else
            f"val ({sp.get('val_examples', '?')} examples): {roles.get('val', '-')}; test, the report split "
            f"({sp.get('test_examples', '?')} examples): {roles.get('test', '-')}.",
            "",
            "| method | adapter params | " + " | ".join(f"{x} {m}" for x in split_names for m in names) + " | steps | train s |",
            "|---|---|" + "---|" * (len(names) * len(split_names)) + "---|---|",
        ]
        for label in ("winner", "baseline"):
            e = v[label]
            splits = e.get("splits", {})
            out.append(
                f"| {label}: {e['name']} | {e['params']:,} | "
                + " | ".join(format_metric(m, splits.get(x, e).get(m)) for x in split_names for m in names)
                + f" | {e['steps']} | {e['seconds']:.0f} |"
            )
        out.append("")
        if v.get("comparison"):
            out += [comparison_line(v["comparison"]) + ".", ""]
        if v.get("both_trivial"):
            out += ["**Both models predict a single class on the test split** (for regression: barely correlate with "
                    "the labels), so this table compares nothing: train longer or run `heterosearch verify`.", ""]
        out += ["One seed: test scores move by several points between seeds (measured.md); "
                "use `heterosearch verify --seeds N` for paired intervals.", ""]
    t = r.get("timings", {})
    if t:
        out += ["## Wall time (s)", "", " | ".join(f"{k} {v:.1f}" for k, v in t.items()), ""]
    out += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in r["versions"].items()), ""]
    return "\n".join(out)

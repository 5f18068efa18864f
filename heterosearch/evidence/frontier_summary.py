"""The frontier's points: per budget and method, the metric over seeds and the paired differences.

Read from each budget folder's ``verify_seeds.json`` (``OUT/b<budget>/``), so the report can
refresh a partial frontier without training anything; ``frontier.py`` is the command that
trains them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from heterosearch.evidence.selection import select
from heterosearch.evidence.statistics import summarize
from heterosearch.export.schema import read_run_file
from heterosearch.pipeline.files import SEARCH_FILE, VERIFY_SEEDS_FILE

FRONTIER_FILE = "frontier.json"


def budget_folder(out: Path, budget: int) -> Path:
    return out / f"b{budget}"


def summarize_frontier(out: Path, budgets: Sequence[int]) -> dict[str, Any]:
    """Points and paired differences per budget, and the validated pick (``selection.py``; None where
    uniform_all was not verified), from each budget folder's verify_seeds.json."""
    points: dict[str, Any] = {}
    paired: dict[str, Any] = {}
    searches: dict[str, Any] = {}
    selections: dict[str, Any] = {}
    metric = None
    splits = None
    for b in budgets:
        found = search_point(budget_folder(out, b))
        if found:
            searches[str(b)] = found
        vpath = budget_folder(out, b) / VERIFY_SEEDS_FILE
        if not vpath.is_file():
            continue
        v = read_run_file(vpath, VERIFY_SEEDS_FILE)
        metric = v["metric"]
        splits = v.get("split_roles", splits)
        summary = v.get("summary") or {}
        if not summary and v.get("runs"):  # a verify interrupted before its statistics: compute them from its runs
            summary = summarize(v["runs"], v.get("methods_order") or sorted({e["method"] for e in v["runs"].values()}))
        by_method: dict[str, list[Mapping[str, Any]]] = {}
        for e in v.get("runs", {}).values():
            by_method.setdefault(e["method"], []).append(e)
        points[str(b)] = {}
        for m, entries in by_method.items():
            counts = sorted(e["params"] for e in entries)
            point: dict[str, Any] = {
                "name": entries[0].get("name", m) if m != "random" else "random allocations (one draw per seed)",
                "params": {"min": counts[0], "max": counts[-1], "mean": sum(counts) / len(counts)},
                "trivial_test": sum(bool((e.get("trivial") or {}).get("test")) for e in entries),
                "n": len(entries),
                # the peak rate each training used (AdaLoRA records its own; LoRA's falls with the budget's rank)
                "lr": sorted({float(r) for r in (e.get("lr", (v.get("train_config") or {}).get("lr")) for e in entries)
                              if isinstance(r, (int, float))}),  # an unrecorded rate is left out, not shown as 0
            }
            for split in ("val", "test"):
                block = (summary.get(split) or {}).get(metric, {}).get("methods", {}).get(m)
                if block:
                    point[split] = {k: block[k] for k in ("mean", "std", "n", "values")}
            points[str(b)][m] = point
        selections[str(b)] = select(summary, metric)
        test = (summary.get("test") or {}).get(metric, {}).get("paired", {})
        paired[str(b)] = {
            m: {k: p.get(k) for k in ("n", "diffs", "mean_diff", "std_diff", "ci95", "seeds_for_1pt", "wins", "losses",
                                       "ties", "t_test_p", "wilcoxon_p")}
            for m, p in test.items()
        }
    return {"metric": metric, "splits": splits, "points": points, "paired": paired, "search": searches,
            "selection": selections}


def search_point(folder: Path) -> dict[str, Any] | None:
    """What a budget's search did (from its search.json): objective, where the winner came from, and for a
    non-additive objective its value against the knapsack pick's on the validation split (None: no search yet)."""
    path = folder / SEARCH_FILE
    if not path.is_file():
        return None
    s = read_run_file(path, SEARCH_FILE)
    name = s.get("objective_name", "proxy")
    out: dict[str, Any] = {"objective": name, "winner_source": s.get("winner_source"), "trials": s.get("trials"),
                           "seconds": s.get("seconds")}
    section = s.get(name) if name != "proxy" else None
    if isinstance(section, dict):  # lookahead / train: the knapsack pick is the trial warm:exact
        out.update(best=s.get("best_objective"), knapsack=s.get("exact_objective"), margin=section.get("margin_over_exact"),
                   pruned=section.get("pruned_trials"), train_steps=section.get("train_steps"),
                   rung_steps=section.get("rung_steps"), trial_seeds=section.get("seeds"), tie_rule=section.get("tie_rule"))
    return out

"""The points a non-additive search starts from (``study.enqueue_trial``), in this order:

1. ``exact``: the knapsack optimum of the additive proxy objective;
2. ``uniform_qv``: uniform LoRA on the space's baseline roles (q, v), the largest rank of the
   space's rank choices that fits (the rule of ``evidence/baselines.py`` restricted to ranks
   the search can express);
3. ``uniform_all``: the same on every role of the space;
4. ``shortlist-2`` ...: the diverse near-optima of ``optimize/shortlist.py``.

A point equal (in its active decisions) to an earlier one is dropped, and so is a baseline
that does not fit (rank 0). So the winner's margin over the knapsack's pick, measured on the
objective Optuna searches, is always available: the exact pick is trial 0's point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heterosearch.optimize.objective import PARAM_PREFIX
from heterosearch.optimize.shortlist import active_decisions


def uniform_choice(problem: Any, sites: Sequence[Any], roles: Sequence[str], budget: int, ranks: Sequence[int]
                   ) -> tuple[dict[str, Any] | None, int]:
    """(choice, rank) of uniform LoRA on ``roles`` at the largest rank in ``ranks`` that fits (None, 0 if none)."""
    from heterosearch.space.allocation import largest_uniform_rank, uniform_allocation

    rank = largest_uniform_rank(sites, roles, budget, ranks)
    if rank < 1:
        return None, 0
    lora = uniform_allocation(sites, roles, rank).lora
    return problem.baseline_choice({PARAM_PREFIX + k: r for k, r in lora.items()}), rank


def warm_starts(problem: Any, exact_choice: dict[str, Any], picks: Sequence[Any], sites: Sequence[Any],
                baseline_roles: Sequence[str], all_roles: Sequence[str], ranks: Sequence[int]
                ) -> list[tuple[str, dict[str, Any]]]:
    """(name, choice) pairs, distinct, each within ``problem.budget``."""
    candidates: list[tuple[str, dict[str, Any] | None]] = [("exact", exact_choice)]
    candidates.append(("uniform_qv", uniform_choice(problem, sites, baseline_roles, problem.budget, ranks)[0]))
    candidates.append(("uniform_all", uniform_choice(problem, sites, all_roles, problem.budget, ranks)[0]))
    candidates += [(f"shortlist-{i}", p.choice) for i, p in enumerate(picks, start=1) if i > 1]
    out: list[tuple[str, dict[str, Any]]] = []
    seen: list[dict[str, Any]] = []
    for name, choice in candidates:
        if choice is None or problem.evaluate(choice)[1] > problem.budget:
            continue
        decisions = active_decisions(problem, choice)
        if decisions in seen:
            continue
        seen.append(decisions)
        out.append((name, choice))
    return out

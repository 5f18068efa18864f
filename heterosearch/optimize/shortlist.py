"""A diverse shortlist of near-optimal allocations of the additive (proxy) problem.

Why: the exact knapsack optimum is optimal only for the additive proxy objective; a
non-additive objective (``lookahead``) may prefer a neighbour. Warm-starting Optuna with
several *structurally different* near-optima lets it compare them on the objective that
sees interactions, instead of only the one point the proxy picked.

How (diversity): pick 1 is the exact optimum. Pick i+1 is the exact optimum of the same
problem with every option that earlier picks chose made less attractive: its value v becomes
v - penalty * |v| once per earlier pick that chose it ("off" options are never penalised).
A pick whose active decisions equal an earlier pick's is rejected and the penalty doubled
(up to ``MAX_TRIES`` times). So every pick is distinct, within the budget (it is a knapsack
optimum under the true costs), and near-optimal: its true proxy value is at least the
penalised optimum, i.e. within about ``penalty * i`` of the optimum. Each pick records its
true value, its ratio to the optimum and ``distance``: the number of decisions (site ranks,
shortcuts, role modes and alternatives) in which it differs from the closest earlier pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_TRIES = 4


@dataclass
class Pick:
    choice: dict[str, Any]
    value: float  # the true (unpenalised) proxy objective
    cost: int
    ratio: float  # value / the exact optimum's value
    distance: int  # decisions that differ from the closest earlier pick (0 for the first)
    penalty: float  # the penalty that produced it

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "params": self.cost, "ratio": self.ratio, "distance": self.distance,
                "penalty": self.penalty}


def active_decisions(problem: Any, choice: dict[str, Any]) -> dict[str, Any]:
    """Key -> label of the decisions in effect under ``choice`` (role mode included), "off" made explicit."""
    out: dict[str, Any] = {}
    for rb in problem.roles:
        out[rb.mode_key] = choice.get(rb.mode_key, "lora")
    for g, _ in problem._active(choice):
        out[g.key] = choice.get(g.key, g.labels[0])
    return out


def distance(problem: Any, a: dict[str, Any], b: dict[str, Any]) -> int:
    """How many decisions differ between two choices (a decision active in only one counts once)."""
    da, db = active_decisions(problem, a), active_decisions(problem, b)
    return sum(da.get(k) != db.get(k) for k in set(da) | set(db))


def shortlist(problem: Any, k: int = 4, penalty: float = 0.1, exact: Any = None) -> list[Pick]:
    """Up to ``k`` distinct near-optimal choices within ``problem.budget``, the exact optimum first."""
    from heterosearch.optimize.problem import Problem

    if k < 1:
        return []
    first = exact if exact is not None else problem.solve()
    best = first.value
    picks = [Pick(dict(first.choice), first.value, first.cost, 1.0, 0, 0.0)]
    seen = [active_decisions(problem, first.choice)]
    for _ in range(k - 1):
        p = penalty
        for _try in range(MAX_TRIES):
            shifted = Problem.from_dict(problem.to_dict())
            for g in shifted.all_groups():
                for j in range(1, len(g.labels)):  # index 0 is "off": never penalised
                    times = sum(1 for s in seen if s.get(g.key) == g.labels[j])
                    g.values[j] -= p * abs(g.values[j]) * times
            choice = shifted.solve().choice
            decisions = active_decisions(problem, choice)
            if decisions not in seen:
                value, cost = problem.evaluate(choice)
                near = min(distance(problem, choice, q.choice) for q in picks)
                picks.append(Pick(choice, value, cost, value / best if best > 0 else 1.0, near, p))
                seen.append(decisions)
                break
            p *= 2
        else:
            break  # no new distinct optimum within MAX_TRIES: the shortlist stays shorter
    return picks


"""The exact optimum of an additive objective under the budget (multiple-choice knapsack).

Init-time proxy scores are additive over sites (methods.md, "The B = 0 fact"), so
maximising sum_s v_s(r_s) subject to sum_s cost_s(r_s) <= budget is a multiple-choice
knapsack: each site picks exactly one rank (0 = off). Costs are integers; dividing them by
their greatest common divisor keeps the dynamic programme small (all-MiniLM: unit 384,
a 0.5 M budget is 1,302 units), and the answer stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class KnapsackResult:
    value: float
    choice: list[int]  # index into the rank choices, per site
    cost: int


def solve(values: np.ndarray, costs: np.ndarray, budget: int) -> KnapsackResult:
    """Exact optimum; ``values``/``costs``: (n_sites, n_choices), choice 0 must cost 0.

    A thin wrapper over ``Problem.solve`` (one group per row), kept for array callers.
    """
    from heterosearch.search.problem import Group, Problem

    values = np.asarray(values, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.int64)
    n_sites, n_choices = values.shape
    groups = [Group(f"g{i}", list(range(n_choices)), values[i].tolist(), [int(c) for c in costs[i]]) for i in range(n_sites)]
    result = Problem(budget=int(budget), groups=groups).solve()
    choice = [int(result.choice[f"g{i}"]) for i in range(n_sites)]
    return KnapsackResult(value=result.value, choice=choice, cost=result.cost)

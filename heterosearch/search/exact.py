"""The exact optimum of an additive objective under the budget (multiple-choice knapsack).

Init-time proxy scores are additive over sites (methods.md, "The B = 0 fact"), so
maximising sum_s v_s(r_s) subject to sum_s cost_s(r_s) <= budget is a multiple-choice
knapsack: each site picks exactly one rank (0 = off). Costs are integers; dividing them by
their greatest common divisor keeps the dynamic programme small (all-MiniLM: unit 384,
a 0.5 M budget is 1,302 units), and the answer stays exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class KnapsackResult:
    value: float
    choice: list[int]  # index into the rank choices, per site
    cost: int


def solve(values: np.ndarray, costs: np.ndarray, budget: int, max_cells: int = 50_000_000) -> KnapsackResult:
    """Exact optimum; ``values``/``costs``: (n_sites, n_choices), choice 0 must cost 0.

    DP over capacity in gcd units: best[c] = max value using the sites so far at cost <= c.
    O(n_sites * n_choices * capacity) time with numpy, O(n_sites * capacity) memory.
    """
    values = np.asarray(values, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.int64)
    n_sites, n_choices = values.shape
    positive = costs[costs > 0]
    unit = int(np.gcd.reduce(positive)) if positive.size else 1
    cap = budget // unit
    if n_sites * (cap + 1) > max_cells:
        raise ValueError(f"knapsack too large for an exact solve: {n_sites} sites x {cap + 1} capacity units")
    w = costs // unit
    best = np.zeros(cap + 1)
    picks = np.zeros((n_sites, cap + 1), dtype=np.int16)
    for i in range(n_sites):
        new = np.full(cap + 1, -math.inf)
        arg = np.zeros(cap + 1, dtype=np.int16)
        for j in range(n_choices):
            c = int(w[i, j])
            if c > cap:
                continue
            cand = np.full(cap + 1, -math.inf)
            cand[c:] = best[: cap + 1 - c] + values[i, j]
            better = cand > new
            new[better] = cand[better]
            arg[better] = j
        best, picks[i] = new, arg
    # Backtrack from the best reachable capacity.
    c = int(np.argmax(best))
    value = float(best[c])
    choice = [0] * n_sites
    for i in range(n_sites - 1, -1, -1):
        j = int(picks[i, c])
        choice[i] = j
        c -= int(w[i, j])
    total = int(sum(costs[i, choice[i]] for i in range(n_sites)))
    return KnapsackResult(value=value, choice=choice, cost=total)

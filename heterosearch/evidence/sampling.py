"""Sampling designs of ``rank-report``: which allocations at a budget the proxies are ranked on.

``random``: per-site ranks drawn from the space, repaired to within ``tol`` of the budget;
``structural``: allocations that differ in roles and layers, each near-uniform on its sites.
``proxy_sum`` scores an allocation from per-site curves (init-time scores are additive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from heterosearch.errors import UserError
from heterosearch.evidence.baselines import random_allocation
from heterosearch.space.allocation import Allocation


def proxy_sum(curves: dict[str, list[float]], allocation: Allocation) -> float:
    """A proxy's score of an allocation: the sum of its sites' curve values at the chosen ranks."""
    return float(sum(curves[k][r] for k, r in allocation.lora.items()))


def sample_allocations(sites: Sequence[Any], rank_choices: Sequence[int], budget: int, n: int, seed: int, tol: float = 0.02) -> list[Allocation]:
    """``n`` distinct random allocations within ``tol`` of ``budget`` (seeded)."""
    rng = np.random.default_rng([seed, 0x5A3B])
    out: list[Allocation] = []
    seen: set[tuple[tuple[str, int], ...]] = set()
    attempts = 0
    while len(out) < n and attempts < 50 * n:
        attempts += 1
        alloc = random_allocation(sites, rank_choices, budget, rng, tol=tol)
        key = tuple(sorted(alloc.lora.items()))
        if key not in seen:
            seen.add(key)
            out.append(alloc)
    return out


def sample_structural(sites: Sequence[Any], r_max: int, budget: int, n: int, seed: int, tol: float = 0.02) -> list[Allocation]:
    """``n`` allocations that differ in *structure*, each near-uniform on its own sites, within ``tol`` of ``budget``.

    Random per-site ranks all spread a budget over most sites and differ mostly in noise-level
    rank changes; structures differ in what training can reach. Each draw picks a non-empty set
    of roles and a block of layers (all, lower half, upper half, or a random contiguous block),
    then gives its sites the largest uniform rank that fits, raising sites one rank step in
    order until within ``tol`` (``uniform_baseline(mixed=True)``). Draws needing a rank above
    ``r_max`` (too few sites for the budget) or under ``tol`` are rejected; duplicates too.
    """
    from heterosearch.evidence.baselines import uniform_baseline

    rng = np.random.default_rng([seed, 0x57C7])
    roles = sorted({s.role for s in sites}, key=[s.role for s in sites].index)
    layers = sorted({s.layer for s in sites})
    half = len(layers) // 2
    out: list[Allocation] = []
    seen: set[tuple[tuple[str, int], ...]] = set()
    attempts = 0
    while len(out) < n and attempts < 200 * n:
        attempts += 1
        chosen_roles = [r for r in roles if rng.random() < 0.5] or [roles[int(rng.integers(len(roles)))]]
        block = int(rng.integers(4))
        if block == 0 or len(layers) < 2:
            keep = layers
        elif block == 1:
            keep = layers[:half]
        elif block == 2:
            keep = layers[half:]
        else:
            lo = int(rng.integers(len(layers)))
            hi = int(rng.integers(lo, len(layers))) + 1
            keep = layers[lo:hi]
        members = [s for s in sites if s.role in chosen_roles and s.layer in keep]
        try:
            plan = uniform_baseline(members, chosen_roles, budget, "structural", budget, mixed=True)
        except UserError:
            continue
        ranks = plan.allocation.lora.values()
        if max(ranks) > r_max or abs(plan.params - budget) > tol * budget:
            continue
        key = tuple(sorted(plan.allocation.lora.items()))
        if key not in seen:
            seen.add(key)
            out.append(plan.allocation)
    return out


DESIGNS = ("random", "structural")

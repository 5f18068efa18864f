"""The baselines a searched allocation is verified against, each built at the winner's budget.

Every baseline is a plain ``Allocation`` (except AdaLoRA, which allocates its ranks while
training: see ``adalora.py``) whose exact parameter count is recorded next to the count it
was matched to. "At the same budget" means:

- ``uniform_qv`` / ``uniform_all``: uniform LoRA on the space's baseline roles (q, v) / on
  every site of the space, at the largest integer rank whose cost fits the run's budget
  (the same rule as ``pipeline.budget.baseline_allocation``);
- ``random``: per-site ranks drawn uniformly from the space's rank choices, scaled to the
  winner's parameter count and repaired one rank step at a time until within ``tol`` (2 %)
  of it, seeded;
- ``heterolora``: HeteroLoRA's static rule (methods.md section 2): the top 25 % of sites by
  the run's ``grad_norm`` score at rank 1, all at one fixed rank, the largest integer rank
  whose cost fits the winner's parameter count (ties broken at random, seeded).

Torch-free: sites only need ``key``, ``role``, ``layer``, ``d_in`` and ``d_out``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from heterosearch.errors import UserError
from heterosearch.space.allocation import Allocation, SiteLike, largest_uniform_rank, uniform_allocation
from heterosearch.space.budget import lora_params

#: Every method ``verify`` knows, in report order; ``winner`` is the searched allocation.
METHODS: tuple[str, ...] = ("winner", "uniform_qv", "uniform_all", "random", "heterolora", "adalora")
#: Relative distance to the winner's parameter count that counts as "the same budget".
TOLERANCE = 0.02
HETEROLORA_FRACTION = 0.25


@dataclass
class Planned:
    """One method's allocation at the budget, its exact count and the count it was matched to."""

    method: str
    name: str
    allocation: Allocation | None  # None: allocated during training (AdaLoRA)
    params: int  # exact adapter parameters (AdaLoRA: the nominal final budget)
    target: int  # the count it was matched to
    rule: str  # how "the same budget" was applied
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def counted(cls, sites: Sequence[SiteLike], *, method: str, name: str, allocation: Allocation, target: int,
                rule: str, details: dict[str, Any]) -> Planned:
        """A plan whose ``params`` is ``allocation``'s exact count on ``sites``."""
        return cls(method, name, allocation, allocation.params(_site_map(sites)), target, rule, details)

    @property
    def gap(self) -> float:
        """(params - target) / target."""
        return (self.params - self.target) / self.target if self.target else 0.0

    @property
    def within_tolerance(self) -> bool:
        return abs(self.gap) <= TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "name": self.name,
            "allocation": self.allocation.to_dict() if self.allocation is not None else None,
            "params": self.params,
            "target": self.target,
            "gap": self.gap,
            "within_2pct": self.within_tolerance,
            "rule": self.rule,
            **self.details,
        }


def _site_map(sites: Sequence[SiteLike]) -> dict[str, SiteLike]:
    return {s.key: s for s in sites}


def uniform_baseline(sites: Sequence[SiteLike], roles: Sequence[str], budget: int, method: str, target: int,
                     mixed: bool = False) -> Planned:
    """Uniform LoRA on ``roles`` at the largest integer rank whose cost fits ``budget``.

    ``mixed``: when that lands more than ``TOLERANCE`` under the budget, raise sites one at a
    time to rank r + 1, in site order (layer 0 first; q, k, v, o, ffn_in, ffn_out within a
    layer), skipping a site whose step would pass the budget, until within the tolerance.
    So "uniform on all sites" stays a budget-matched baseline at budgets between multiples
    of its per-rank cost, and its ranks differ by at most one.
    """
    from heterosearch.models.roles import resolve_roles

    # q, v -> qkv on a fused model; a role with no site is an error, never a zero-parameter baseline.
    roles = resolve_roles(roles, sites, method, among="the sites the space adapts")
    rank = largest_uniform_rank(sites, roles, budget)
    if rank < 1:
        raise UserError(f"{method}: uniform LoRA r=1 on {','.join(roles)} already exceeds the budget {budget:,}")
    alloc = uniform_allocation(sites, roles, rank)
    smap = _site_map(sites)
    cost = alloc.params(smap)
    raised = 0
    if mixed and cost < budget * (1 - TOLERANCE):
        ranks = dict(alloc.lora)
        for s in sites:
            if s.key not in ranks:
                continue
            step = lora_params(s.d_in, s.d_out, 1)
            if cost + step <= budget:
                ranks[s.key] += 1
                cost += step
                raised += 1
            if cost >= budget * (1 - TOLERANCE):
                break
        alloc = Allocation(lora=ranks)
    name = f"uniform LoRA r={rank} on {','.join(roles)}" + (f" ({raised} sites at r={rank + 1})" if raised else "")
    return Planned.counted(
        sites,
        method=method,
        name=name,
        allocation=alloc,
        target=target,
        rule="largest integer rank within the budget" + (", then +1 rank on sites in order to within 2 %" if mixed else ""),
        details={"rank": rank, "roles": list(roles), "raised_sites": raised},
    )


def random_allocation(
    sites: Sequence[SiteLike],
    rank_choices: Sequence[int],
    target: int,
    rng: np.random.Generator,
    tol: float = TOLERANCE,
    max_steps: int = 20_000,
) -> Allocation:
    """Per-site ranks drawn uniformly from ``rank_choices``, then moved to within ``tol`` of ``target``.

    The draw is scaled by target / cost (each rank snapped to the nearest choice), then
    repaired one rank step at a time: a step that lands in the window is taken at once,
    otherwise a random site steps down (over the window) or up (under it). If the window
    cannot be reached (coarse choices, tiny model), the closest allocation seen is returned.
    """
    choices = np.array(sorted({0, *(int(r) for r in rank_choices)}), dtype=np.int64)
    if len(choices) < 2 or not sites:
        raise UserError("a random allocation needs at least one site and one rank > 0")
    per_rank = np.array([s.d_in + s.d_out for s in sites], dtype=np.int64)
    n = len(sites)
    idx = rng.integers(0, len(choices), size=n)
    if not idx.any():
        idx[rng.integers(0, n)] = 1
    cost = int((choices[idx] * per_rank).sum())
    factor = target / cost
    scaled = choices[idx] * factor
    idx = np.abs(scaled[:, None] - choices[None, :]).argmin(axis=1)
    if not idx.any():
        idx[int(np.argmax(scaled))] = 1
    lo, hi = target * (1 - tol), target * (1 + tol)
    last = len(choices) - 1

    def total(ix: np.ndarray) -> int:
        return int((choices[ix] * per_rank).sum())

    best, best_dist = idx.copy(), abs(total(idx) - target)
    for _ in range(max_steps):
        cost = total(idx)
        dist = abs(cost - target)
        if dist < best_dist and idx.any():
            best, best_dist = idx.copy(), dist
        if lo <= cost <= hi and idx.any():
            return _to_allocation(sites, choices[idx])
        up = np.where(idx < last, (choices[np.minimum(idx + 1, last)] - choices[idx]) * per_rank, 0)
        down = np.where(idx > 0, (choices[np.maximum(idx - 1, 0)] - choices[idx]) * per_rank, 0)
        landing = [(i, +1) for i in range(n) if idx[i] < last and lo <= cost + up[i] <= hi]
        landing += [(i, -1) for i in range(n) if idx[i] > 0 and lo <= cost + down[i] <= hi and idx.sum() > 1]
        if landing:
            i, step = landing[rng.integers(0, len(landing))]
        elif cost > hi:
            movable = np.flatnonzero(idx > 0)
            i, step = int(rng.choice(movable)), -1
        else:
            fitting = [i for i in range(n) if idx[i] < last and cost + up[i] <= hi]
            movable = fitting or [i for i in range(n) if idx[i] < last]
            if not movable:
                break
            i, step = int(rng.choice(movable)), +1
        idx[i] += step
    cost = total(idx)
    if abs(cost - target) < best_dist and idx.any():
        best = idx
    return _to_allocation(sites, choices[best])


def _to_allocation(sites: Sequence[SiteLike], ranks: np.ndarray) -> Allocation:
    return Allocation(lora={s.key: int(r) for s, r in zip(sites, ranks) if r > 0})


def random_baseline(sites: Sequence[SiteLike], rank_choices: Sequence[int], target: int, seed: int) -> Planned:
    rng = np.random.default_rng([seed, 0x7A11])
    alloc = random_allocation(sites, rank_choices, target, rng)
    return Planned.counted(
        sites,
        method="random",
        name=f"random allocation (draw seed {seed})",
        allocation=alloc,
        target=target,
        rule=f"ranks drawn from the space's choices, scaled and repaired to within {100 * TOLERANCE:.0f} % of the winner",
        details={"draw_seed": seed, "sites_on": len(alloc.lora)},
    )


def heterolora_static(
    sites: Sequence[SiteLike],
    grad_norm: Mapping[str, Sequence[float]],
    target: int,
    fraction: float = HETEROLORA_FRACTION,
    seed: int = 0,
) -> Planned:
    """HeteroLoRA's static rule: the top ``fraction`` of sites by grad-norm (rank-1 score), one fixed rank.

    The rank is the largest integer whose cost fits ``target``; ties in the score are broken
    at random (seeded), as in the authors' code.
    """
    missing = [s.key for s in sites if s.key not in grad_norm]
    if missing:
        raise UserError(f"heterolora: scores.json has no grad_norm score for {len(missing)} site(s), e.g. {missing[0]}")
    n_keep = max(1, int(round(fraction * len(sites))))
    tiebreak = np.random.default_rng([seed, 0x4E7E]).random(len(sites))
    order = sorted(range(len(sites)), key=lambda i: (-float(grad_norm[sites[i].key][1]), tiebreak[i]))
    chosen = [sites[i] for i in order[:n_keep]]
    per_rank = sum(lora_params(s.d_in, s.d_out, 1) for s in chosen)
    rank = target // per_rank
    if rank < 1:
        raise UserError(f"heterolora: the top {n_keep} sites at rank 1 cost {per_rank:,}, above the winner's {target:,}")
    alloc = Allocation(lora={s.key: int(rank) for s in chosen})
    return Planned.counted(
        sites,
        method="heterolora",
        name=f"HeteroLoRA static: top {n_keep} of {len(sites)} sites by grad_norm, r={rank}",
        allocation=alloc,
        target=target,
        rule="largest integer rank whose cost fits the winner's parameter count",
        details={"rank": int(rank), "sites_chosen": [s.key for s in chosen], "fraction": fraction},
    )


def adalora_cost_per_rank(sites: Sequence[SiteLike]) -> int:
    """Parameters of one AdaLoRA rank-triplet summed over sites: a row of A, a column of B, one E."""
    return sum(s.d_in + s.d_out + 1 for s in sites)


def adalora_target_r(sites: Sequence[SiteLike], target: int) -> int:
    """The integer ``target_r`` whose nominal final budget (``target_r`` x per-rank cost) is closest to ``target``."""
    per_rank = adalora_cost_per_rank(sites)
    low = max(1, target // per_rank)
    return min((low, low + 1), key=lambda r: (abs(r * per_rank - target), r))


def adalora_plan(sites: Sequence[SiteLike], target: int) -> Planned:
    target_r = adalora_target_r(sites, target)
    per_rank = adalora_cost_per_rank(sites)
    init_r = int(np.ceil(1.5 * target_r))  # PEFT's defaults keep init_r / target_r = 12 / 8
    return Planned(
        method="adalora",
        name=f"AdaLoRA (PEFT) target_r={target_r}, init_r={init_r} on all {len(sites)} sites",
        allocation=None,
        params=target_r * per_rank,
        target=target,
        rule="target_r x sites x (d_in + d_out + 1) closest to the winner; the final count is measured after training",
        details={"target_r": target_r, "init_r": init_r, "sites": [s.key for s in sites]},
    )


def plan_baselines(
    sites: Sequence[SiteLike],
    baseline_roles: Sequence[str],
    rank_choices: Sequence[int],
    budget: int,
    winner: Allocation,
    grad_norm: Mapping[str, Sequence[float]] | None,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    target: int | None = None,
) -> dict[str, Planned | str]:
    """Each requested method's plan (the ``random`` one for draw ``seed``), or why it cannot run.

    ``target`` is the winner's exact parameter count (computed from ``sites`` if not given;
    pass it when the winner has elements beyond per-site LoRA that need every site to count).
    """
    target = winner.params(_site_map(sites)) if target is None else target
    roles_all = sorted({s.role for s in sites}, key=[s.role for s in sites].index)
    out: dict[str, Planned | str] = {}
    for method in methods:
        try:
            if method == "winner":
                out[method] = Planned("winner", "searched allocation", winner, target, target, "the run's winner")
            elif method == "uniform_qv":
                out[method] = uniform_baseline(sites, baseline_roles, budget, method, target)
            elif method == "uniform_all":
                out[method] = uniform_baseline(sites, roles_all, budget, method, target, mixed=True)
            elif method == "random":
                out[method] = random_baseline(sites, rank_choices, target, seed)
            elif method == "heterolora":
                if grad_norm is None:
                    raise UserError("heterolora needs the grad_norm proxy in scores.json (rerun `heterosearch score` with it)")
                out[method] = heterolora_static(sites, grad_norm, target, seed=seed)
            elif method == "adalora":
                out[method] = adalora_plan(sites, target)
            else:
                raise UserError(f"unknown verify method {method!r} (known: {', '.join(METHODS)})")
        except UserError as exc:
            if method not in METHODS:
                raise
            out[method] = str(exc)
    return out

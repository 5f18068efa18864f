"""Budget feasibility: which budgets a space can meet on a model's sites, and the uniform baseline at a budget.

Checked when a run opens, before anything is created or replaced, so a budget no allocation
(or no baseline) can meet is answered with one line naming the budget that would work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heterosearch.errors import UserError
from heterosearch.space import SearchSpace, format_params, lora_params
from heterosearch.space.allocation import Allocation, largest_uniform_rank, uniform_allocation


def check_budget(sites: Sequence[Any], space: SearchSpace, budget: int) -> None:
    """Refuse a budget above full fine-tuning of the space's sites, or below its cheapest allocation or baseline."""
    full = sum(s.d_in * s.d_out for s in sites)
    if budget > full:
        raise UserError(
            f"budget {format_params(budget)} is above the cost of fine-tuning every weight the space "
            f"{space.name!r} adapts on this model ({format_params(full)} parameters); pass --budget {full} or less"
        )
    lora = space.lora
    r_min = min(r for r in lora.ranks if r > 0)
    cheapest = min(lora_params(s.d_in, s.d_out, r_min) for s in sites)
    if budget < cheapest:
        raise UserError(
            f"budget {format_params(budget)} is below the cheapest allocation of space "
            f"{space.name!r} on this model ({format_params(cheapest)} parameters: one site at rank {r_min}); "
            f"pass --budget {cheapest} or more"
        )
    from heterosearch.models.roles import expand_roles

    roles = space.baseline.roles
    site_roles, missing = expand_roles(roles, sites)  # q, v -> qkv on a fused model
    base = [s for s in sites if s.role in site_roles]
    if missing or not base:
        raise UserError(
            f"space {space.name!r} compares against uniform LoRA on {','.join(roles)}, but it adapts "
            f"only {','.join(space.lora.roles)}: add those roles to the space, or set its baseline roles to some it adapts"
        )
    base_min = sum(lora_params(s.d_in, s.d_out, 1) for s in base)
    if budget < base_min:
        raise UserError(
            f"budget {format_params(budget)} is below the cheapest baseline "
            f"(uniform LoRA r=1 on {','.join(roles)}: {format_params(base_min)} parameters); "
            f"pass --budget {base_min} or more"
        )


def baseline_allocation(sites: Sequence[Any], roles: Sequence[str], budget: int | None) -> tuple[Allocation, str]:
    """Uniform LoRA on the baseline roles at the largest integer rank within the budget."""
    if not any(s.role in roles for s in sites):  # never a zero-parameter "uniform LoRA r=0" baseline
        raise UserError(f"the baseline (uniform LoRA on {','.join(roles)}) has no site on this model")
    rank = largest_uniform_rank(sites, roles, budget)
    return uniform_allocation(sites, roles, rank), f"uniform LoRA r={rank} on {','.join(roles)}"

"""Roles a space or baseline asks for -> the site roles a model has (fused projections included).

A model that fuses q, k and v into one projection (GPT-2 c_attn, Phi-3 qkv_proj, GPT-NeoX and
Falcon query_key_value) has one ``qkv`` site per block and no ``q``, ``k``, ``v`` sites; one
that fuses gate and up (Phi-3 gate_up_proj) has ``ffn_gate_up`` and no ``ffn_gate``/``ffn_in``.
Adapting the fused weight as one site is what PEFT does with that module name, so a space that
asks for q, k or v gets the ``qkv`` site instead, and says so (``fused_notes``). Splitting the
fused weight into per-role LoRA pairs would need a custom layer that PEFT cannot export.

A requested role that matches neither a site nor a fused site is an error, never a silently
empty set of sites (which made "uniform LoRA r=0 on q,v" a zero-parameter baseline).
Torch-free: sites only need ``role`` and ``name``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from heterosearch.errors import UserError
from heterosearch.space.fields import FUSED  # fused role -> the roles it stands for (torch-free, for space checks)


def _roles_in_order(sites: Iterable[Any]) -> list[str]:
    from heterosearch.models.sites import ROLES

    have = {s.role for s in sites}
    return [r for r in ROLES if r in have]


def expand_roles(requested: Sequence[str], sites: Sequence[Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(site roles covering ``requested``, in request order without repeats; requested roles matching nothing)."""
    have = {s.role for s in sites}
    out: list[str] = []
    missing: list[str] = []
    for role in requested:
        found = role if role in have else next((f for f, parts in FUSED.items() if role in parts and f in have), None)
        if found is None:
            missing.append(role)
        elif found not in out:
            out.append(found)
    return tuple(out), tuple(missing)


def resolve_roles(requested: Sequence[str], sites: Sequence[Any], what: str, among: str = "the model's sites") -> tuple[str, ...]:
    """The site roles for ``requested``; a role that matches no site (nor a fused one) is a one-line UserError."""
    resolved, missing = expand_roles(requested, sites)
    if missing:
        role = missing[0]
        fused_hint = next((f" (this model has {', '.join(parts)} as separate sites)" for f, parts in FUSED.items()
                           if f == role and any(s.role in parts for s in sites)), "")
        raise UserError(
            f"{what}: role {role!r} matches none of {among} (roles there: {', '.join(_roles_in_order(sites)) or 'none'})"
            f"{fused_hint}; remove it, or map it to module names with a search space's roles: mapping"
        )
    return resolved


def fused_notes(requested: Sequence[str], sites: Sequence[Any]) -> list[str]:
    """One line per fused site role that stands in for requested roles, naming its module."""
    notes = []
    for fused, parts in FUSED.items():
        asked = [r for r in dict.fromkeys(requested) if r in parts]
        site = next((s for s in sites if s.role == fused), None)
        if asked and site is not None and not any(s.role in parts for s in sites):
            module = site.name.rsplit(".", 1)[-1]
            notes.append(f"this model fuses {', '.join(parts)} into one projection per block ({module}): "
                         f"the space's {', '.join(asked)} adapt it as one site per block, role {fused!r}")
    return notes

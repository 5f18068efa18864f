"""Shortcuts as search candidates: one independent group per candidate, ``shortcut.L3.residual_1``.

Candidates in canonical order (``config.candidates``, the order scores.json lists them in),
filtered by the space's ``types``; options are the space's ranks, 0 = off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heterosearch.adapters.shortcut.config import ShortcutElement, ShortcutSpace, candidate_key, candidates
from heterosearch.errors import UserError
from heterosearch.space.options import Option, OptionGroup

SHORTCUT = "shortcut."  # Optuna parameter prefix


def groups(section: ShortcutSpace, sites: Sequence[Any]) -> list[OptionGroup]:
    n_layers = max(s.layer for s in sites) + 1
    out = []
    for layer, ctype in candidates(n_layers):
        if ctype not in section.types:
            continue
        key = candidate_key(layer, ctype)
        options = tuple(Option(r, (ShortcutElement(layer, ctype, r),) if r else ()) for r in section.ranks)
        out.append(OptionGroup(SHORTCUT + key, "shortcut", "free", None, key, options))
    return out


def values(scores: Any, proxy: str, group: OptionGroup) -> dict[Any, float] | None:
    """The candidate's curve at each rank (index = rank)."""
    curves = scores.kinds.get(proxy, {}).get("shortcut")
    if curves is None:
        raise UserError(f"scores have no shortcut values for proxy {proxy!r}; rerun scoring")
    curve = curves[group.target]
    return {r: curve[r] for r in group.labels}

"""VeRA's candidates: one independent group per site of the space's roles, ``vera.<site>``: off (0) or on (rank)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heterosearch.adapters.vera.config import VeraElement, VeraSpace
from heterosearch.space.options import Option, OptionGroup


def groups(section: VeraSpace, sites: Sequence[Any]) -> list[OptionGroup]:
    return [
        OptionGroup(f"vera.{s.key}", "vera", "free", None, s.key,
                    (Option(0), Option(section.rank, (VeraElement(s.key, section.rank),))))
        for s in sites if s.role in section.roles
    ]


def values(scores: Any, proxy: str, group: OptionGroup) -> dict[Any, float] | None:
    """The site's scored value when on, 0 when off (None: not scored)."""
    scored = scores.kinds.get(proxy, {}).get("vera", {})
    if group.target not in scored:
        return None
    return {0: 0.0, group.labels[1]: scored[group.target]}

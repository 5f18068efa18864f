"""Per-site LoRA's candidates: one group per site, its ranks (0 = off); values from the per-site curves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heterosearch.adapters.lora.config import LoraElement, LoraSpace
from heterosearch.space.options import Option, OptionGroup

RANK = "rank."  # Optuna parameter prefix: rank.L3.v


def groups(section: LoraSpace, sites: Sequence[Any]) -> list[OptionGroup]:
    """``rank.<site>`` for every site, in site order, with the space's ranks and 0."""
    ranks = sorted({0, *section.ranks})
    return [
        OptionGroup(RANK + s.key, "lora", "site", s.role, s.key,
                    tuple(Option(r, (LoraElement(s.key, r),) if r else ()) for r in ranks))
        for s in sites
    ]


def values(scores: Any, proxy: str, group: OptionGroup) -> dict[Any, float] | None:
    """The site's curve read at every rank (``Scores.table``)."""
    return dict(zip(group.labels, scores.table(proxy, group.labels, [group.target])[0].tolist(), strict=True))

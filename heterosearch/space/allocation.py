"""An allocation: one point of a search space (which site gets which adapter, at what size).

Torch-free. Parameter counts come from ``budget.py`` and are checked against the
instantiated model by the tests (``adapters.count_adapter_params``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from heterosearch.errors import UserError
from heterosearch.space.budget import lora_params


class SiteLike(Protocol):
    """What the budget needs to know of a site (``models.Site`` satisfies this)."""

    key: str
    role: str
    layer: int
    d_in: int
    d_out: int


@dataclass
class Allocation:
    """Site key (``"L3.v"``) -> LoRA rank; sites absent or at rank 0 carry no adapter."""

    lora: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lora = {k: int(r) for k, r in self.lora.items() if int(r) > 0}

    def params(self, sites: Mapping[str, SiteLike]) -> int:
        """Adapter parameters of this allocation (shared tensors once; head excluded)."""
        total = 0
        for key, rank in self.lora.items():
            if key not in sites:
                raise UserError(f"allocation names site {key!r}, which the model does not have")
            site = sites[key]
            total += lora_params(site.d_in, site.d_out, rank)
        return total

    def is_empty(self) -> bool:
        return not self.lora

    def to_dict(self) -> dict[str, Any]:
        return {"lora": dict(self.lora)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Allocation:
        unknown = set(data) - {"lora"}
        if unknown:
            raise UserError(f"allocation has unknown sections {sorted(unknown)} (known: lora)")
        lora = data.get("lora", {})
        if not isinstance(lora, Mapping) or any(
            isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in lora.values()
        ):
            raise UserError("allocation 'lora' must map site keys such as 'L3.v' to ranks >= 0")
        return cls(lora=dict(lora))

    def describe(self, sites: Iterable[SiteLike]) -> str:
        """One compact line per layer: ``L0: q=8 v=4 ffn_in=2``."""
        rows: dict[int, list[str]] = {}
        for site in sites:
            rank = self.lora.get(site.key, 0)
            if rank:
                rows.setdefault(site.layer, []).append(f"{site.role}={rank}")
        return "\n".join(f"L{layer}: {' '.join(parts)}" for layer, parts in sorted(rows.items())) or "(empty)"


def uniform_allocation(sites: Iterable[SiteLike], roles: Iterable[str], rank: int) -> Allocation:
    roles = set(roles)
    return Allocation(lora={s.key: rank for s in sites if s.role in roles})


def largest_uniform_rank(sites: Iterable[SiteLike], roles: Iterable[str], budget: int, ranks: Iterable[int] | None = None) -> int:
    """The largest rank (from ``ranks`` if given, else any integer) whose uniform allocation fits."""
    roles = set(roles)
    per_rank = sum(lora_params(s.d_in, s.d_out, 1) for s in sites if s.role in roles)
    if per_rank == 0:
        return 0
    if ranks is None:
        return budget // per_rank
    fitting = [r for r in ranks if r > 0 and r * per_rank <= budget]
    return max(fitting, default=0)

"""An allocation: one point of a search space (which site gets which adapter, at what size).

Torch-free. Parameter counts come from ``budget.py`` and are checked against the
instantiated model by the tests (``adapters.count_adapter_params``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from heterosearch.errors import UserError
from heterosearch.space.budget import bank_params, lora_params, mos_params, shortcut_params

OTHER_KINDS = ("shortcut", "bank", "mos")


class SiteLike(Protocol):
    """What the budget needs to know of a site (``models.Site`` satisfies this)."""

    key: str
    role: str
    layer: int
    d_in: int
    d_out: int


@dataclass
class Allocation:
    """Site key (``"L3.v"``) -> LoRA rank (absent or 0: no adapter), plus elements of other kinds.

    ``elements[kind]`` is a list of element dicts in that kind's own format (``shortcut``:
    layer, ctype, rank; ``bank``: role, layers, rank, variant; ``mos``: role, r_e, shards, r_p,
    ranks), as written by ``<Kind>Element.to_dict()``.
    """

    lora: dict[str, int] = field(default_factory=dict)
    elements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lora = {k: int(r) for k, r in self.lora.items() if int(r) > 0}
        self.elements = {k: list(v) for k, v in self.elements.items() if v}

    def params(self, sites: Mapping[str, SiteLike]) -> int:
        """Adapter parameters of this allocation (shared tensors once; head excluded)."""
        total = 0
        for key, rank in self.lora.items():
            if key not in sites:
                raise UserError(f"allocation names site {key!r}, which the model does not have")
            site = sites[key]
            total += lora_params(site.d_in, site.d_out, rank)
        for kind, items in self.elements.items():
            total += sum(element_params(kind, e, sites) for e in items)
        return total

    def is_empty(self) -> bool:
        return not self.lora and not self.elements

    def kinds(self) -> list[str]:
        return (["lora"] if self.lora else []) + sorted(self.elements)

    def to_dict(self) -> dict[str, Any]:
        return {"lora": dict(self.lora), **{k: list(v) for k, v in sorted(self.elements.items())}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Allocation:
        unknown = set(data) - {"lora", *OTHER_KINDS}
        if unknown:
            raise UserError(f"allocation has unknown sections {sorted(unknown)} (known: lora, {', '.join(OTHER_KINDS)})")
        lora = data.get("lora", {})
        if not isinstance(lora, Mapping) or any(
            isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in lora.values()
        ):
            raise UserError("allocation 'lora' must map site keys such as 'L3.v' to ranks >= 0")
        elements = {}
        for kind in OTHER_KINDS:
            items = data.get(kind, [])
            if not isinstance(items, list) or not all(isinstance(e, Mapping) for e in items):
                raise UserError(f"allocation {kind!r} must be a list of element objects")
            elements[kind] = [dict(e) for e in items]
        return cls(lora=dict(lora), elements=elements)

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
    """The largest rank (from ``ranks`` if given, else any integer) whose uniform allocation fits.

    Never above the smallest min(d_in, d_out) of those sites: a higher rank adds parameters
    but no expressiveness (and an absurd budget must not allocate absurd tensors).
    """
    roles = set(roles)
    members = [s for s in sites if s.role in roles]
    per_rank = sum(lora_params(s.d_in, s.d_out, 1) for s in members)
    if per_rank == 0:
        return 0
    full_rank = min(min(s.d_in, s.d_out) for s in members)
    if ranks is None:
        return min(budget // per_rank, full_rank)
    fitting = [r for r in ranks if r > 0 and r * per_rank <= budget]
    return max(fitting, default=0)


def _role_site(sites: Mapping[str, SiteLike], role: str, layer: int) -> SiteLike:
    key = f"L{layer}.{role}"
    if key not in sites:
        raise UserError(f"allocation names site {key!r}, which the model does not have")
    return sites[key]


def element_params(kind: str, element: Mapping[str, Any], sites: Mapping[str, SiteLike]) -> int:
    """Exact parameters of one element of a non-LoRA kind (formulas in ``budget.py``)."""
    if kind == "shortcut":
        hidden = next((s.d_out for s in sites.values() if s.role == "o"), None)
        if hidden is None:
            raise UserError("shortcuts need the attention output projection ('o' sites) to know the hidden size")
        return shortcut_params(hidden, int(element["rank"]))
    if kind == "bank":
        layers = list(element["layers"])
        site = _role_site(sites, element["role"], layers[0])
        return bank_params(element["variant"], int(element["rank"]), site.d_in, site.d_out, len(layers))
    if kind == "mos":
        layers = [int(k) for k in element["ranks"]]
        site = _role_site(sites, element["role"], layers[0])
        return mos_params(int(element["r_e"]), len(layers), site.d_in, site.d_out)
    raise UserError(f"unknown adapter kind {kind!r} (known: lora, {', '.join(OTHER_KINDS)})")

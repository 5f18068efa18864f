"""An allocation: one point of a search space (which site gets which adapter, at what size).

Torch-free. Every kind's element counts its own parameters (``adapters/<kind>/config.py``);
``kinds.count_params`` sums them, and the tests check that sum against the instantiated model
(``adapters.count_adapter_params``) for every registered kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from heterosearch.errors import UserError
from heterosearch.space.budget import lora_params
from heterosearch.space.kinds import SECTIONS, SiteLike, count_params, in_apply_order, parse_elements

# The file format keeps per-site LoRA as a {site key: rank} mapping (PEFT's rank_pattern); every
# other kind is a list of element dicts. In typed form a LoRA entry is {"site": key, "rank": r}.
LORA_SECTION = "lora"

__all__ = ["Allocation", "SiteLike", "element_params", "largest_uniform_rank", "uniform_allocation"]


@dataclass
class Allocation:
    """Site key (``"L3.v"``) -> LoRA rank (absent or 0: no adapter), plus elements of other kinds.

    ``elements[kind]`` is a list of element dicts in that kind's own format, as written by
    ``<Kind>Element.to_dict()`` (e.g. ``bank``: role, layers, rank, variant).
    """

    lora: dict[str, int] = field(default_factory=dict)
    elements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lora = {k: int(r) for k, r in self.lora.items() if int(r) > 0}
        self.elements = {k: list(v) for k, v in self.elements.items() if v}

    def element_dicts(self) -> dict[str, list[dict[str, Any]]]:
        """Every kind's element dicts, in apply order (LoRA's as ``{"site", "rank"}``)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for spec in in_apply_order():
            if spec.name == LORA_SECTION:
                items = [{"site": k, "rank": r} for k, r in self.lora.items()]
            else:
                items = self.elements.get(spec.name, [])
            if items:
                out[spec.name] = items
        unknown = set(self.elements) - set(SECTIONS.names())
        if unknown:
            raise UserError(f"allocation has elements of unknown kinds {sorted(unknown)}")
        return out

    def typed(self) -> dict[str, list[Any]]:
        """Every kind's elements as its element dataclass, in apply order."""
        return {kind: parse_elements(kind, items) for kind, items in self.element_dicts().items()}

    def params(self, sites: Mapping[str, SiteLike]) -> int:
        """Adapter parameters of this allocation (shared tensors once; head excluded)."""
        return sum(count_params(elements, sites) for elements in self.typed().values())

    def is_empty(self) -> bool:
        return not self.lora and not self.elements

    def kinds(self) -> list[str]:
        return ([LORA_SECTION] if self.lora else []) + sorted(self.elements)

    def to_dict(self) -> dict[str, Any]:
        return {LORA_SECTION: dict(self.lora), **{k: list(v) for k, v in sorted(self.elements.items())}}

    @classmethod
    def from_elements(cls, elements: Mapping[str, Iterable[Any]]) -> Allocation:
        """From typed elements by kind (each with ``to_dict()``), in the given order."""
        lora: dict[str, int] = {}
        others: dict[str, list[dict[str, Any]]] = {}
        for kind, items in elements.items():
            dicts = [e.to_dict() for e in items]
            if kind == LORA_SECTION:
                lora.update({d["site"]: d["rank"] for d in dicts})
            else:
                others.setdefault(kind, []).extend(dicts)
        return cls(lora=lora, elements=others)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Allocation:
        others = [k for k in SECTIONS.names() if k != LORA_SECTION]
        unknown = set(data) - {LORA_SECTION, *others}
        if unknown:
            raise UserError(f"allocation has unknown sections {sorted(unknown)} (known: lora, {', '.join(others)})")
        lora = data.get(LORA_SECTION, {})
        if not isinstance(lora, Mapping) or any(
            isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in lora.values()
        ):
            raise UserError("allocation 'lora' must map site keys such as 'L3.v' to ranks >= 0")
        elements = {}
        for kind in others:
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


def element_params(kind: str, element: Mapping[str, Any], sites: Mapping[str, SiteLike]) -> int:
    """Exact parameters of one element dict of ``kind`` (its element class counts; one path for all kinds)."""
    return count_params(parse_elements(kind, [element]), sites)

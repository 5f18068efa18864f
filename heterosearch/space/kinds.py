"""The section registry: what space/ knows of an adapter kind (torch-free; kinds fill it in).

space/ must not import torch or ``heterosearch.adapters``, yet it parses a space file's
``kinds:`` sections and counts an allocation's parameters. Each kind package registers here,
through ``adapters.kinds.register_kind``, the torch-free half of itself: its YAML section class,
its element class (which carries the exact parameter formula) and its apply order. The
packages are imported by ``heterosearch/__init__.py`` (``adapters`` discovers them), so the
registry is full whenever any heterosearch module is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from heterosearch.errors import UserError
from heterosearch.registry import Registry


class SiteLike(Protocol):
    """What the budget needs to know of a site (``models.Site`` satisfies this)."""

    key: str
    role: str
    layer: int
    d_in: int
    d_out: int


class Element(Protocol):
    """One chosen element of an allocation (frozen dataclass, JSON round-trippable)."""

    @property
    def key(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...

    def params(self, sites: Mapping[str, SiteLike]) -> int:
        """Exact trainable parameters on the model with these sites (by key); shared tensors once."""
        ...


@dataclass(frozen=True)
class KindSection:
    """The torch-free facts of one kind."""

    name: str
    # Lower applies first: banks and pools wrap the frozen sites (10, 20), per-site LoRA wraps
    # whatever is there (30), shortcuts hook whole blocks (40). Also the order of report lines.
    apply_order: int
    section: type  # YAML section dataclass: from_dict(data, where, path), optional as_section()
    element: type  # Element dataclass: from_dict(dict), to_dict(), params(sites), report_lines(elements)


SECTIONS: Registry[KindSection] = Registry("adapter kind")


def in_apply_order() -> list[KindSection]:
    """Every registered kind, in apply order (ties by name)."""
    return sorted((k for _, k in SECTIONS.items()), key=lambda k: (k.apply_order, k.name))


def parse_elements(kind: str, items: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Typed elements of ``kind`` from their dicts; a bad dict is a UserError naming the kind."""
    element = SECTIONS.get(kind).element
    out = []
    for item in items:
        try:
            out.append(element.from_dict(item))
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"allocation {kind!r} element {dict(item)!r}: {exc}"[:400]) from None
    return out


def check_fields(name: str, data: Mapping[str, Any], fields: Iterable[str]) -> None:
    """An element dict has exactly ``fields``; an unknown or a missing one is a ValueError naming ``name``."""
    fields = set(fields)
    unknown = set(data) - fields
    if unknown:
        raise ValueError(f"{name} has unknown fields {sorted(unknown)} (known: {', '.join(sorted(fields))})")
    missing = fields - set(data)
    if missing:
        raise ValueError(f"{name} is missing fields {sorted(missing)}")


def count_params(elements: Iterable[Element], sites: Mapping[str, SiteLike]) -> int:
    """Exact adapter parameters of ``elements`` (any kinds): the one counting function.

    Each element counts its own tensors, shared ones once (a bank's A is in one element only);
    the contract tests check this sum against the instantiated model for every kind.
    """
    return sum(e.params(sites) for e in elements)


def role_site(sites: Mapping[str, SiteLike], role: str, layer: int) -> SiteLike:
    """The ``role`` site of ``layer``; absent: the allocation does not fit this model."""
    key = f"L{layer}.{role}"
    if key not in sites:
        raise UserError(f"allocation names site {key!r}, which the model does not have")
    return sites[key]

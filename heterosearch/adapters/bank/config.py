"""A bank element: one low-rank pair shared by the sites of one role across a set of layers.

ShareLoRA (arXiv 2406.10785) and Tied-LoRA (arXiv 2311.09578); methods.md section 3.
Torch-free: the element, its validation, which sites it covers and its exact parameter count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from heterosearch.adapters._members import role_members
from heterosearch.models.sites import ROLES, Site
from heterosearch.space.budget import bank_params

VARIANTS: tuple[str, ...] = ("share_a", "share_b", "share_ab", "tl5", "tl6")
"""share_a: A shared, B per layer; share_b: A per layer, B shared; share_ab: both shared;
tl5: A, B shared with per-layer u, v frozen at 1; tl6: as tl5 with u, v trained per layer."""


@dataclass(frozen=True)
class BankElement:
    """One bank: ``variant`` sharing at ``rank`` over the ``role`` sites of ``layers``."""

    role: str  # site role, e.g. "v" (models.sites.ROLES)
    layers: tuple[int, ...]  # member layers (>= 2, distinct); stored sorted
    rank: int  # rank r of the shared pair (>= 1)
    variant: str  # one of VARIANTS

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"BankElement.role must be one of {', '.join(ROLES)}; got {self.role!r}")
        layers = tuple(self.layers)
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers):
            raise ValueError(f"BankElement.layers must be non-negative ints; got {self.layers!r}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"BankElement.layers must be distinct; got {self.layers!r}")
        if len(layers) < 2:
            raise ValueError(f"BankElement.layers must name >= 2 layers (a bank shares across layers); got {layers!r}")
        object.__setattr__(self, "layers", tuple(sorted(layers)))
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"BankElement.rank must be an int >= 1; got {self.rank!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"BankElement.variant must be one of {', '.join(VARIANTS)}; got {self.variant!r}")

    @property
    def key(self) -> str:
        """Readable id, e.g. ``"bank.v.share_a"``."""
        return f"bank.{self.role}.{self.variant}"

    @property
    def store_name(self) -> str:
        """Name of the shared tensors in ``shared_store(model)``; unique per (role, variant, layers)."""
        return f"bank_{self.role}_{self.variant}_L{'_'.join(map(str, self.layers))}"

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "layers": list(self.layers), "rank": self.rank, "variant": self.variant}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BankElement:
        fields = {"role", "layers", "rank", "variant"}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"BankElement has unknown fields {sorted(unknown)} (known: {', '.join(sorted(fields))})")
        missing = fields - set(data)
        if missing:
            raise ValueError(f"BankElement is missing fields {sorted(missing)}")
        return cls(role=data["role"], layers=tuple(data["layers"]), rank=data["rank"], variant=data["variant"])


def member_sites(sites: Sequence[Site], element: BankElement) -> list[Site]:
    """The sites an element covers, in layer order; all must exist and share (d_in, d_out)."""
    return role_members(sites, element.role, element.layers, element.key)


def bank_count(sites: Sequence[Site], elements: Sequence[BankElement]) -> int:
    """Exact trainable parameters of ``elements`` on ``sites`` (shared tensors once)."""
    total = 0
    for element in elements:
        site = member_sites(sites, element)[0]
        total += bank_params(element.variant, element.rank, site.d_in, site.d_out, len(element.layers))
    return total

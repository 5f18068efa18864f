"""A bank element: one low-rank pair shared by the sites of one role across a set of layers.

ShareLoRA (arXiv 2406.10785) and Tied-LoRA (arXiv 2311.09578); methods.md section 3.
Torch-free: the element, its validation, which sites it covers, its exact parameter count
(``bank_params``) and the ``kinds.bank`` section of a space file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from heterosearch.adapters._members import role_members
from heterosearch.models.sites import ROLES, Site
from heterosearch.space.fields import Where
from heterosearch.space.kinds import SiteLike, check_fields, role_site

PREFIX = "hs_bank_"
MEMBERSHIPS: tuple[str, ...] = ("all", "lower", "upper")  # all layers, the lower half, the upper half

VARIANTS: tuple[str, ...] = ("share_a", "share_b", "share_ab", "tl5", "tl6")
"""share_a: A shared, B per layer; share_b: A per layer, B shared; share_ab: both shared;
tl5: A, B shared with per-layer u, v frozen at 1; tl6: as tl5 with u, v trained per layer."""


def bank_params(variant: str, rank: int, d_in: int, d_out: int, n_layers: int) -> int:
    """A bank shared by ``n_layers`` sites of one role (methods.md section 3); shared tensors once.

    share_a: r d_in + L r d_out; share_b: L r d_in + r d_out; share_ab and tl5 (u, v frozen):
    r (d_in + d_out); tl6: r (d_in + d_out) + L (r + d_out).
    """
    shared = rank * (d_in + d_out)
    if variant == "share_a":
        return rank * d_in + n_layers * rank * d_out
    if variant == "share_b":
        return n_layers * rank * d_in + rank * d_out
    if variant in ("share_ab", "tl5"):
        return shared
    if variant == "tl6":
        return shared + n_layers * (rank + d_out)
    raise ValueError(f"unknown bank variant {variant!r} (known: share_a, share_b, share_ab, tl5, tl6)")


def membership_layers(membership: str, n_layers: int) -> tuple[int, ...]:
    """all = every layer; lower / upper = the first / second half (the odd middle goes up)."""
    half = n_layers // 2
    if membership == "all":
        return tuple(range(n_layers))
    if membership == "lower":
        return tuple(range(half))
    if membership == "upper":
        return tuple(range(half, n_layers))
    raise ValueError(f"unknown bank membership {membership!r}")


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
        check_fields("BankElement", data, {"role", "layers", "rank", "variant"})
        return cls(role=data["role"], layers=tuple(data["layers"]), rank=data["rank"], variant=data["variant"])

    def params(self, sites: Mapping[str, SiteLike]) -> int:
        """The shared pair once, plus the per-layer tensors of its variant (``bank_params``)."""
        site = role_site(sites, self.role, self.layers[0])
        return bank_params(self.variant, self.rank, site.d_in, site.d_out, len(self.layers))

    @staticmethod
    def report_lines(elements: Sequence[BankElement]) -> list[str]:
        return [f"bank {b.role}: {b.variant} r={b.rank} shared by layers {','.join(map(str, b.layers))}" for b in elements]


def member_sites(sites: Sequence[Site], element: BankElement) -> list[Site]:
    """The sites an element covers, in layer order; all must exist and share (d_in, d_out)."""
    return role_members(sites, element.role, element.layers, element.key)


@dataclass(frozen=True)
class BankSpace:
    """Shared/tied banks: per role, a rank (0 = no bank), a variant and a layer membership."""

    roles: tuple[str, ...] = ("q", "v")
    variants: tuple[str, ...] = VARIANTS
    ranks: tuple[int, ...] = (0, 8, 16)
    membership: tuple[str, ...] = MEMBERSHIPS

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Where, path: str) -> BankSpace:
        where.check_keys(path, data, ("roles", "variants", "ranks", "membership"), required=("roles", "ranks"))
        ranks = where.int_list(f"{path}.ranks", data["ranks"])
        return cls(
            roles=where.roles(f"{path}.roles", data["roles"]),
            variants=where.choices(f"{path}.variants", data.get("variants", list(VARIANTS)), VARIANTS),
            ranks=(0, *[r for r in ranks if r]),
            membership=where.choices(f"{path}.membership", data.get("membership", list(MEMBERSHIPS)), MEMBERSHIPS),
        )

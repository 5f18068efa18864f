"""A VeRA element: one site adapted by VeRA at the space's fixed rank (Kopiczko et al. 2023, arXiv 2310.11454).

    delta(x) = b * (B (d * (A x)))      A: (r, d_in), B: (d_out, r) frozen, random, shared by shape
                                        d: (r,) init 0.1, b: (d_out,) init 0, trained per site

Torch-free: the element, its exact parameter count r + d_out (the frozen pair is a buffer and
costs nothing) and the ``kinds.vera`` section of a space file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from heterosearch.errors import UserError
from heterosearch.space.fields import Where
from heterosearch.space.kinds import SiteLike

PREFIX = "hs_vera_"


def vera_params(rank: int, d_out: int) -> int:
    """Trainable per site: d (r) and b (d_out); A and B are frozen buffers."""
    return rank + d_out


@dataclass(frozen=True)
class VeraElement:
    """VeRA at rank ``rank`` on the site ``site`` (a site key, e.g. ``"L3.v"``)."""

    site: str
    rank: int  # r >= 1, the rank of the frozen shared pair

    def __post_init__(self) -> None:
        if not isinstance(self.site, str) or not self.site:
            raise ValueError(f"VeraElement.site must be a site key such as 'L3.v'; got {self.site!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"VeraElement.rank must be an int >= 1; got {self.rank!r}")

    @property
    def key(self) -> str:
        return self.site

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "rank": self.rank}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VeraElement:
        fields = {"site", "rank"}
        if set(data) != fields:
            raise ValueError(f"VeraElement needs exactly the fields rank, site; got {sorted(data)}")
        return cls(site=data["site"], rank=data["rank"])

    def params(self, sites: Mapping[str, SiteLike]) -> int:
        if self.site not in sites:
            raise UserError(f"allocation names site {self.site!r}, which the model does not have")
        return vera_params(self.rank, sites[self.site].d_out)

    @staticmethod
    def report_lines(elements: Sequence[VeraElement]) -> list[str]:
        return [f"vera r={e.rank}: {e.site}" for e in elements]


@dataclass(frozen=True)
class VeraSpace:
    """VeRA on or off per site of ``roles``, at one fixed ``rank``."""

    roles: tuple[str, ...] = ("q", "v")
    rank: int = 16

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Where, path: str) -> VeraSpace:
        where.check_keys(path, data, ("roles", "rank"), required=("roles", "rank"))
        rank = data["rank"]
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise where.fail(f"{path}.rank", f"expected an integer >= 1, got {rank!r}")
        return cls(roles=where.roles(f"{path}.roles", data["roles"]), rank=rank)

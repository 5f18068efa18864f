"""A MoS element: one shard pool per role shared by L layers (Mixture of Shards, arXiv 2410.00938).

methods.md section 4. Torch-free: the element, its validation, its exact parameter count
(``mos_params``) and the ``kinds.mos`` section of a space file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from heterosearch.adapters._members import role_members
from heterosearch.models.sites import ROLES, Site
from heterosearch.space.fields import Where
from heterosearch.space.kinds import SiteLike, check_fields, role_site

PREFIX = "hs_mos_"


def mos_params(r_e: int, n_layers: int, d_in: int, d_out: int) -> int:
    """Mixture of Shards, one pool per role (methods.md section 4): r_e L (d_in + d_out).

    The cost of LoRA at rank r_e on each of the L layers, independent of the per-site rank r,
    the shards per vector l and the private rank r_p.
    """
    return r_e * n_layers * (d_in + d_out)


def mos_valid(r_e: int, rank: int, r_p: int, n_layers: int) -> bool:
    """MoS draws rank - r_p public ranks without replacement from a public pool of (r_e - r_p) L."""
    return r_p <= r_e and r_p <= rank and rank - r_p <= (r_e - r_p) * n_layers


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class MosElement:
    """A pool of equivalent rank ``r_e`` for ``role``; layer ``i`` uses rank ``ranks[i]`` built from shards."""

    role: str  # site role, e.g. "v" (models.sites.ROLES)
    r_e: int  # equivalent rank: the pool holds r_e L l shards per matrix (the only knob that costs)
    shards: int  # l, shards per vector: row j of A is l consecutive selected shards (d_in, d_out divisible by l)
    r_p: int  # private rank: r_p l shards per layer are private to it (0 <= r_p <= r_e)
    ranks: dict[int, int]  # layer -> per-site rank r (r_p <= r, free in parameters)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"MosElement.role must be one of {', '.join(ROLES)}; got {self.role!r}")
        for name in ("r_e", "shards"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"MosElement.{name} must be an int >= 1; got {value!r}")
        if not _is_int(self.r_p) or not 0 <= self.r_p <= self.r_e:
            raise ValueError(f"MosElement.r_p must be an int in [0, r_e={self.r_e}]; got {self.r_p!r}")
        if not isinstance(self.ranks, Mapping) or not self.ranks:
            raise ValueError(f"MosElement.ranks must be a non-empty mapping layer -> rank; got {self.ranks!r}")
        ranks: dict[int, int] = {}
        for layer, rank in self.ranks.items():
            layer = int(layer) if isinstance(layer, str) and layer.isdigit() else layer  # JSON keys are strings
            if not _is_int(layer) or layer < 0:
                raise ValueError(f"MosElement.ranks keys must be layer indices >= 0; got {layer!r}")
            if not _is_int(rank) or rank < max(1, self.r_p):
                raise ValueError(f"MosElement.ranks[{layer}] must be an int >= max(1, r_p={self.r_p}); got {rank!r}")
            ranks[layer] = rank
        n = len(ranks)
        public = (self.r_e - self.r_p) * n  # public pool, in rank units (times l shards)
        for layer, rank in ranks.items():
            if rank - self.r_p > public:
                raise ValueError(
                    f"MosElement.ranks[{layer}] = {rank} draws {rank - self.r_p} public ranks without replacement, "
                    f"but the public pool holds only (r_e - r_p) L = {public}"
                )
        object.__setattr__(self, "ranks", dict(sorted(ranks.items())))

    @property
    def layers(self) -> tuple[int, ...]:
        """Member layers, sorted."""
        return tuple(self.ranks)

    @property
    def key(self) -> str:
        """Readable id, e.g. ``"mos.v"``."""
        return f"mos.{self.role}"

    @property
    def store_name(self) -> str:
        """Name of the pool in ``shared_store(model)``."""
        return f"mos_{self.role}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "r_e": self.r_e,
            "shards": self.shards,
            "r_p": self.r_p,
            "ranks": {str(k): v for k, v in self.ranks.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MosElement:
        check_fields("MosElement", data, {"role", "r_e", "shards", "r_p", "ranks"})
        return cls(
            role=data["role"], r_e=data["r_e"], shards=data["shards"], r_p=data["r_p"], ranks=dict(data["ranks"])
        )

    def params(self, sites: Mapping[str, SiteLike]) -> int:
        """The two pools (``mos_params``); the per-layer selections are free."""
        site = role_site(sites, self.role, self.layers[0])
        return mos_params(self.r_e, len(self.layers), site.d_in, site.d_out)

    @staticmethod
    def report_lines(elements: Sequence[MosElement]) -> list[str]:
        lines = []
        for m in elements:
            ranks = sorted(set(m.ranks.values()))
            lines.append(f"mos {m.role}: pool r_e={m.r_e} (l={m.shards}, r_p={m.r_p}), site rank {','.join(map(str, ranks))} "
                         f"in layers {','.join(map(str, m.ranks))}")
        return lines


def member_sites(sites: Sequence[Site], element: MosElement) -> list[Site]:
    """The sites an element covers, in layer order; all must exist and share (d_in, d_out)."""
    return role_members(sites, element.role, element.layers, element.key)


@dataclass(frozen=True)
class MosSpace:
    """Mixture of Shards: per role a pool of equivalent rank r_e (0 = no pool) and a per-site rank."""

    roles: tuple[str, ...] = ("q", "v")
    equivalent_ranks: tuple[int, ...] = (0, 2, 4)
    site_ranks: tuple[int, ...] = (4, 8, 16)
    shards: int = 2
    private_rank: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Where, path: str) -> MosSpace:
        where.check_keys(path, data, ("roles", "equivalent_ranks", "site_ranks", "shards", "private_rank"),
                         required=("roles", "equivalent_ranks", "site_ranks"))
        r_e = where.int_list(f"{path}.equivalent_ranks", data["equivalent_ranks"])
        site = where.int_list(f"{path}.site_ranks", data["site_ranks"], minimum=1)
        shards = data.get("shards", 2)
        private = data.get("private_rank", 1)
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise where.fail(f"{path}.shards", f"expected an integer >= 1, got {shards!r}")
        if isinstance(private, bool) or not isinstance(private, int) or private < 0:
            raise where.fail(f"{path}.private_rank", f"expected an integer >= 0, got {private!r}")
        if private > min(site):
            raise where.fail(f"{path}.private_rank", f"must not exceed the smallest site rank {min(site)}, got {private}")
        return cls(roles=where.roles(f"{path}.roles", data["roles"]), equivalent_ranks=(0, *[r for r in r_e if r]),
                   site_ranks=site, shards=shards, private_rank=private)

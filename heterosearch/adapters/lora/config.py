"""A LoRA element: one rank at one site (Hu et al. 2021; methods.md section 1), and its YAML section.

Torch-free: the element, its exact parameter count r (d_in + d_out) (``space/budget.py``
``lora_params``, which space/ itself uses for uniform allocations) and the ``kinds.lora``
section of a space file. In an allocation file LoRA stays a ``{site key: rank}`` mapping
(``space/allocation.py``); typed, each entry is one ``LoraElement``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from heterosearch import recipe
from heterosearch.errors import UserError
from heterosearch.space.budget import lora_params
from heterosearch.space.fields import Where
from heterosearch.space.kinds import SiteLike, check_fields
from heterosearch.space.scale import LoraScale

PREFIX = "hs_lora_"


@dataclass(frozen=True)
class LoraElement:
    """LoRA of rank ``rank`` on the site ``site`` (a site key, e.g. ``"L3.v"``)."""

    site: str
    rank: int  # r >= 1

    def __post_init__(self) -> None:
        if not isinstance(self.site, str) or not self.site:
            raise ValueError(f"LoraElement.site must be a site key such as 'L3.v'; got {self.site!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"LoraElement.rank must be an int >= 1; got {self.rank!r}")

    @property
    def key(self) -> str:
        return self.site

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "rank": self.rank}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoraElement:
        check_fields("LoraElement", data, {"site", "rank"})
        return cls(site=data["site"], rank=data["rank"])

    def params(self, sites: Mapping[str, SiteLike]) -> int:
        """A is r x d_in, B is d_out x r."""
        if self.site not in sites:
            raise UserError(f"allocation names site {self.site!r}, which the model does not have")
        site = sites[self.site]
        return lora_params(site.d_in, site.d_out, self.rank)

    @staticmethod
    def report_lines(elements: Sequence[LoraElement]) -> list[str]:
        """None: the report shows LoRA as its layers x roles table."""
        return []


@dataclass(frozen=True)
class LoraSpace:
    """Per-site LoRA: every site of ``roles`` gets one rank from ``ranks`` (0 = no adapter)."""

    roles: tuple[str, ...] = ("q", "k", "v", "o", "ffn_in", "ffn_out")
    ranks: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
    # The scale rule s(r) (space/scale.py); the recipe's unless the space file sets
    # ``lora_alpha`` / ``use_rslora`` (PEFT's meaning) or ``alpha_ratio`` (alpha = k r).
    scaling: LoraScale = field(default_factory=lambda: LoraScale(recipe.SCALE_RULE, recipe.LORA_ALPHA))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Where, path: str) -> LoraSpace:
        where.check_keys(path, data, ("roles", "ranks", "alpha_ratio", "lora_alpha", "use_rslora"),
                         required=("roles", "ranks"))
        ranks = where.int_list(f"{path}.ranks", data["ranks"])
        if ranks == (0,):
            raise where.fail(f"{path}.ranks", "needs at least one rank > 0")
        if "alpha_ratio" in data and ("lora_alpha" in data or "use_rslora" in data):
            raise where.fail(f"{path}.alpha_ratio", "give either alpha_ratio or lora_alpha/use_rslora, not both")
        if "alpha_ratio" in data:
            scale = LoraScale("ratio", where.number(f"{path}.alpha_ratio", data["alpha_ratio"], strict=True, maximum=1e4))
        else:
            rs = data.get("use_rslora", recipe.SCALE_RULE == "rslora")
            if not isinstance(rs, bool):
                raise where.fail(f"{path}.use_rslora", f"expected true or false, got {rs!r}")
            alpha = where.number(f"{path}.lora_alpha", data.get("lora_alpha", recipe.LORA_ALPHA), strict=True, maximum=1e4)
            scale = LoraScale("rslora" if rs else "standard", alpha)
        return cls(roles=where.roles(f"{path}.roles", data["roles"]), ranks=ranks, scaling=scale)

    def as_section(self) -> dict[str, Any]:
        """The YAML section that loads back to this space (``from_dict`` keys)."""
        out: dict[str, Any] = {"roles": list(self.roles), "ranks": list(self.ranks)}
        if self.scaling.rule == "ratio":
            out["alpha_ratio"] = self.scaling.alpha
        else:
            out.update(lora_alpha=self.scaling.alpha, use_rslora=self.scaling.rule == "rslora")
        return out

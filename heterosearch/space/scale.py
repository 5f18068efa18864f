"""The LoRA scale rule s(r): how the update s * B A of a rank-r adapter is scaled.

Three rules, named as PEFT names them, so an exported ``adapter_config.json`` reproduces it:

- ``rslora`` (Kalajdzievski 2023, PEFT ``use_rslora=True``): s = alpha / sqrt(r). With A
  drawn at scale 1/sqrt(d_in) and Adam moving every entry of B by about lr per step, the
  first updates of ``B A`` add r incoherent terms, so their size grows like sqrt(r); dividing
  by sqrt(r) makes the size of a step the same at every rank, and one learning rate serves
  allocations whose ranks differ from 1 to 50. heterosearch's default (``recipe.py``).
- ``standard`` (Hu et al. 2021, PEFT's default): s = alpha / r.
- ``ratio``: alpha = k r, so s = k at every rank (heterosearch before the rank-stabilised
  recipe; ``alpha_ratio`` in a space file). Steps then grow like sqrt(r): the learning rate
  that trains rank 2 leaves rank 12 at the majority class on MRPC (reports/recipe-sweep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

RULES = ("rslora", "standard", "ratio")


@dataclass(frozen=True)
class LoraScale:
    """``rule`` from RULES; ``alpha``: PEFT's ``lora_alpha`` (rslora, standard) or k (ratio)."""

    rule: str
    alpha: float

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown LoRA scale rule {self.rule!r}; known: {', '.join(RULES)}")
        if not (math.isfinite(self.alpha) and 0 < self.alpha <= 1e4):
            raise ValueError(f"LoRA alpha must be a finite number in (0, 1e4], got {self.alpha!r}")

    def at(self, rank: int) -> float:
        """s for a rank-``rank`` adapter (rank >= 1)."""
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        if self.rule == "rslora":
            return self.alpha / math.sqrt(rank)
        if self.rule == "standard":
            return self.alpha / rank
        return self.alpha

    def alpha_at(self, rank: int) -> float:
        """The per-module alpha with s = alpha / r (what ``allocation.json`` lists per element)."""
        return self.at(rank) * rank

    def peft_kwargs(self, ranks_by_module: dict[str, int], default_r: int) -> dict[str, Any]:
        """``LoraConfig`` fields that give every module this scale (keys already anchored regexes)."""
        if self.rule == "rslora":
            return {"lora_alpha": self.alpha, "use_rslora": True}
        if self.rule == "standard":
            return {"lora_alpha": self.alpha, "use_rslora": False}
        return {
            "lora_alpha": self.alpha * default_r,
            "alpha_pattern": {k: self.alpha * r for k, r in ranks_by_module.items()},
            "use_rslora": False,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "alpha": self.alpha}

    def describe(self) -> str:
        return {
            "rslora": f"s = {self.alpha:g} / sqrt(r) (rank-stabilised)",
            "standard": f"s = {self.alpha:g} / r",
            "ratio": f"s = {self.alpha:g} at every rank (alpha = {self.alpha:g} r)",
        }[self.rule]

    @classmethod
    def from_dict(cls, data: Any) -> LoraScale:
        """From ``to_dict`` output; raises ValueError on anything else."""
        if not isinstance(data, dict) or set(data) != {"rule", "alpha"}:
            raise ValueError(f"a LoRA scale is {{'rule': ..., 'alpha': ...}}, got {data!r}"[:200])
        alpha = data["alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ValueError(f"LoRA alpha must be a number, got {alpha!r}"[:200])
        return cls(str(data["rule"]), float(alpha))


def as_scale(scaling: float | LoraScale) -> LoraScale:
    """A bare number is the constant scale of the ``ratio`` rule (the pre-rslora API and files)."""
    return scaling if isinstance(scaling, LoraScale) else LoraScale("ratio", float(scaling))


def kind_scaling(scale: float | LoraScale | None, rank: int, default: float) -> float:
    """s of a non-LoRA kind's rank-``rank`` term (bank, MoS site, shortcut): the run's rule at that rank.

    Every kind's first update then has the size of rank-matched per-site LoRA (README "Scale and
    init of each kind"; tests/test_kind_scaling.py). ``scale=None`` (a direct call without a rule)
    keeps the kind's fixed ``default``.
    """
    return default if scale is None else as_scale(scale).at(rank)

"""Per-site LoRA (Hu et al. 2021; methods.md section 1): y = W x + s(r) * B A x.

Init rule (adapted model == base model at init): A (r, d_in) is Kaiming-uniform as in PEFT,
U(+-1/sqrt(d_in)); B (d_out, r) is zero, so at init the adapted model computes exactly what
the base model computes.

Scale rule: s(r) from the run's rule (``space/scale.py``): rslora s = alpha / sqrt(r) by
default (Kalajdzievski 2023, PEFT ``use_rslora``), so the first Adam step (only B moves, each
entry by about lr) changes y by about the same amount at every rank. This is the reference
every other kind is matched to: a bank, a MoS site and a shortcut of rank r use the same s(r)
(README "Scale and init of each kind"; tests/test_kind_scaling.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from heterosearch.adapters._linear import DeltaLinear, kaiming_A
from heterosearch.adapters._members import set_submodule
from heterosearch.adapters.lora.config import PREFIX, LoraElement
from heterosearch.models.sites import Site
from heterosearch.space.scale import LoraScale, as_scale

__all__ = ["PREFIX", "LoraLinear", "apply_lora", "set_lora_dropout"]


class LoraLinear(DeltaLinear):
    """Wraps a frozen ``nn.Linear`` (or GPT-2 ``Conv1D``) and adds a rank-r update."""

    def __init__(
        self,
        base_layer: nn.Module,
        d_in: int,
        d_out: int,
        rank: int,
        scaling: float,
        generator: torch.Generator | None = None,
    ) -> None:
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        super().__init__(base_layer, rank, scaling)
        weight = next(base_layer.parameters())
        self.hs_lora_A = kaiming_A(rank, d_in, weight, generator)  # PEFT's init
        self.hs_lora_B = nn.Parameter(torch.zeros(d_out, rank, dtype=weight.dtype, device=weight.device))
        # PEFT's lora_dropout: on the update's input only, active in train mode; Identity by default
        # (no random draws, so runs without dropout are unchanged). Set by ``set_lora_dropout``.
        self.lora_dropout: nn.Module = nn.Identity()

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        # x: (..., d_in) -> (..., r) -> (..., d_out)
        x = self.lora_dropout(x)
        return (x @ self.hs_lora_A.t()) @ self.hs_lora_B.t() * self.scaling


def apply_lora(
    model: nn.Module,
    sites: Sequence[Site],
    elements: Sequence[LoraElement],
    generator: torch.Generator | None,
    scale: LoraScale | float | None = None,
) -> None:
    """Wrap every site of ``elements`` in a ``LoraLinear`` (in place), s = scale.at(rank).

    Draw order from ``generator``: site by site in the order of ``sites`` (not of ``elements``),
    so the same allocation and seed give the same initial adapters.
    """
    if scale is None:
        raise ValueError("per-site LoRA needs the scale rule s(r) (space/scale.py)")
    rule = as_scale(scale)
    ranks = {e.site: e.rank for e in elements}
    unknown = set(ranks) - {s.key for s in sites}
    if unknown:
        raise ValueError(f"allocation names sites the model does not have: {sorted(unknown)}")
    for site in sites:
        rank = ranks.get(site.key, 0)
        if rank <= 0:
            continue
        base = model.get_submodule(site.name)
        set_submodule(model, site.name, LoraLinear(base, site.d_in, site.d_out, rank, rule.at(rank), generator))


def set_lora_dropout(model: nn.Module, p: float) -> int:
    """Dropout with probability ``p`` on the input of every ``LoraLinear`` in ``model`` (0 = none); returns how many."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {p}")
    n = 0
    for module in model.modules():
        if isinstance(module, LoraLinear):
            module.lora_dropout = nn.Dropout(p) if p > 0 else nn.Identity()
            n += 1
    return n

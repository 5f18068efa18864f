"""Per-site LoRA (Hu et al. 2021; methods.md section 1): y = W x + s * B A x.

A: (r, d_in), Kaiming-uniform as in PEFT; B: (d_out, r), zeros, so that at init the
adapted model computes exactly what the base model computes. s = alpha / r.
"""

from __future__ import annotations

import math

import torch
from torch import nn

PREFIX = "hs_lora_"


class LoraLinear(nn.Module):
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
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base_layer = base_layer
        self.rank = rank
        self.scaling = float(scaling)
        weight = next(base_layer.parameters())
        self.hs_lora_A = nn.Parameter(torch.empty(rank, d_in, dtype=weight.dtype, device=weight.device))
        self.hs_lora_B = nn.Parameter(torch.zeros(d_out, rank, dtype=weight.dtype, device=weight.device))
        # PEFT's init: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(d_in), 1/sqrt(d_in)).
        if weight.device.type != "meta":
            nn.init.kaiming_uniform_(self.hs_lora_A, a=math.sqrt(5), generator=generator)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        # x: (..., d_in) -> (..., r) -> (..., d_out)
        return (x @ self.hs_lora_A.t()) @ self.hs_lora_B.t() * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.delta(x)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scaling={self.scaling:g}"

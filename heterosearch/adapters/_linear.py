"""What the kinds that wrap a linear site share (torch): the wrapper's forward and PEFT's init of A.

Per-site LoRA, banks and MoS pools all wrap a frozen ``nn.Linear`` / GPT-2 ``Conv1D`` as
``base_layer(x) + delta(x)`` with ``delta`` linear in x and bias-free; ``merge.py`` folds any
such wrapper into its weight, whatever its sharing scheme.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class DeltaLinear(nn.Module):
    """``base_layer(x) + delta(x)`` at rank ``rank`` and scale ``scaling``; subclasses define ``delta``."""

    def __init__(self, base_layer: nn.Module, rank: int, scaling: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.rank = rank
        self.scaling = float(scaling)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.delta(x)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scaling={self.scaling:g}"


def kaiming_A(rank: int, d_in: int, like: torch.Tensor, generator: torch.Generator | None) -> nn.Parameter:  # noqa: N802
    """A (r, d_in) as PEFT's LoRA: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(d_in), 1/sqrt(d_in)); no draw on meta."""
    a = torch.empty(rank, d_in, dtype=like.dtype, device=like.device)
    if like.device.type != "meta":
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
    return nn.Parameter(a)

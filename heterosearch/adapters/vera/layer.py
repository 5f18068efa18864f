"""VeRA (Kopiczko et al. 2023, arXiv 2310.11454): delta(x) = b * (B (d * (A x))).

A (r, d_in) and B (d_out, r) are frozen random buffers, Kaiming-uniform as in PEFT's VeRA, one
pair per (d_in, d_out, r) shared by every site of that shape; they live once in
``shared_store(model)`` and each wrapper keeps an unregistered reference. d (r) starts at 0.1
and b (d_out) at 0, so the adapted model equals the base model at init.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from heterosearch.adapters._members import set_submodule
from heterosearch.adapters.kinds import shared_store
from heterosearch.adapters.vera.config import VeraElement
from heterosearch.models.sites import Site

D_INIT = 0.1  # PEFT's VeraConfig.d_initial


class VeraShared(nn.Module):
    """The frozen pair of one shape (buffers: saved, never trained, never counted)."""

    def __init__(self, rank: int, d_in: int, d_out: int, like: torch.Tensor, generator: torch.Generator | None) -> None:
        super().__init__()
        a = torch.empty(rank, d_in, dtype=like.dtype, device=like.device)
        b = torch.empty(d_out, rank, dtype=like.dtype, device=like.device)
        if like.device.type != "meta":
            nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
            nn.init.kaiming_uniform_(b, a=math.sqrt(5), generator=generator)
        self.register_buffer("hs_vera_A", a)
        self.register_buffer("hs_vera_B", b)


class VeraLinear(nn.Module):
    """Wraps a frozen ``nn.Linear`` / GPT-2 ``Conv1D``: ``base_layer(x) + delta(x)``."""

    def __init__(self, base_layer: nn.Module, shared: VeraShared, rank: int, d_out: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.rank = rank
        self._shared = (shared,)  # a reference, not a second name for the frozen pair
        like = next(base_layer.parameters())
        self.hs_vera_d = nn.Parameter(torch.full((rank,), D_INIT, dtype=like.dtype, device=like.device))
        self.hs_vera_b = nn.Parameter(torch.zeros(d_out, dtype=like.dtype, device=like.device))

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        shared = self._shared[0]
        h = (x @ shared.hs_vera_A.t()) * self.hs_vera_d  # (..., d_in) -> (..., r)
        return (h @ shared.hs_vera_B.t()) * self.hs_vera_b  # (..., r) -> (..., d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.delta(x)

    def extra_repr(self) -> str:
        return f"rank={self.rank}"


def apply_vera(
    model: nn.Module, sites: Sequence[Site], elements: Sequence[VeraElement], generator: torch.Generator | None,
    scale: Any = None,
) -> None:
    """Wrap every site of ``elements`` (in place); ``scale`` (per-site LoRA's rule) is unused.

    Draw order from ``generator``: sites in the order of ``sites``; a shape's pair (A then B) is
    drawn when the first site of that shape is wrapped.
    """
    by_site = {e.site: e for e in elements}
    if len(by_site) != len(elements):
        raise ValueError("vera: a site is named twice")
    unknown = set(by_site) - {s.key for s in sites}
    if unknown:
        raise ValueError(f"allocation names sites the model does not have: {sorted(unknown)}")
    store = shared_store(model)
    for site in sites:
        element = by_site.get(site.key)
        if element is None:
            continue
        base = model.get_submodule(site.name)
        name = f"vera_{site.d_in}x{site.d_out}_r{element.rank}"
        if name not in store:
            store[name] = VeraShared(element.rank, site.d_in, site.d_out, next(base.parameters()), generator)
        set_submodule(model, site.name, VeraLinear(base, store[name], element.rank, site.d_out))

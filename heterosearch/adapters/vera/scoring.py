"""First-order value of VeRA on a site, from the base model's data gradient G = dL/dW0, (d_out, d_in).

At init b = 0, so only b moves the loss to first order: the expressible updates are
dW = diag(beta) M with M = B diag(d) A (d constant at init, so it cancels below). The best such
step lowers the loss by eta ||P(G)||_F^2, P the projection onto those updates:
sum_i <G_i, M_i>^2 / ||M_i||^2 (rows i): the same units as the per-site ``spectral`` proxy.
M is a scoring-only draw of VeRA's frozen pair (seeded by seed and shape), not the pair
training draws; a different draw changes the value by sampling noise only.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import torch

UNDEFINED = {
    "grad_norm": "VeRA's trainable vectors have no LoRA-comparable gradient norm at init",
    "snip": "SNIP of VeRA's scaling vectors is not comparable to per-site scores",
    "synflow": "synflow is defined for per-site LoRA adapters only",
}


def vera_spectral(G: torch.Tensor, rank: int, seed: int) -> float:  # noqa: N803
    d_out, d_in = G.shape
    g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(f"vera{d_in}x{d_out}r{rank}".encode())) % (2**63))
    A = (torch.rand(rank, d_in, generator=g, dtype=torch.float64) * 2 - 1) / d_in**0.5  # noqa: N806
    B = (torch.rand(d_out, rank, generator=g, dtype=torch.float64) * 2 - 1) / rank**0.5  # noqa: N806
    M = B @ A  # noqa: N806  (d_out, d_in)
    G = G.double()  # noqa: N806
    return float(((G * M).sum(1) ** 2 / (M * M).sum(1).clamp_min(1e-300)).sum())


def score(model: Any, sites: Sequence[Any], batches: Sequence[Any], section: Any,
          grads: dict[str, dict[str, torch.Tensor]], proxies: Sequence[str], seed: int) -> dict[str, Any]:
    """{"spectral": {site key: value}} for the sites of the section's roles."""
    if "spectral" not in proxies:
        return {}
    data_G = grads.get("data", {})  # noqa: N806
    return {"spectral": {s.key: vera_spectral(data_G[s.key], section.rank, seed)
                         for s in sites if s.role in section.roles and s.key in data_G}}

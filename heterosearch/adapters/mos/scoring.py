"""First-order value of a MoS element from base-model gradients (for the proxies; a pure function).

G_l = dL/dW0 of member site l, (d_out, d_in) (``proxies.state`` orientation, Conv1D transposed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from heterosearch.adapters._members import member_grads, role_spectral
from heterosearch.adapters.mos.config import MosElement, MosSpace

UNDEFINED = {
    "grad_norm": "a shard pool's init-time gradient norm is not comparable to per-site scores",
    "snip": "SNIP of a shard pool at init is not comparable to per-site scores",
    "synflow": "synflow is defined for per-site adapters only",
}


def mos_spectral(G_by_site: Mapping[str, torch.Tensor], element: MosElement) -> float:  # noqa: N803
    """A simple proxy: per-site spectral gains, capped by the pool's capacity.

    Exactly: collect sigma_j(G_l)^2 for j <= r_l (the top-r_l squared singular values of each
    member site l, as the per-site ``spectral`` proxy at rank r_l), and return the sum of the
    largest min(sum_l r_l, r_e L) of them. The cap counts the pool as r_e L independent rank-one
    directions (its parameters equal LoRA at rank r_e on each of the L layers), handed greedily
    to the sites that gain most. It ignores that drawn shards overlap across layers and that a
    row of A is stitched from l shards, so it is optimistic whenever r_l > r_e; ``shards`` and
    ``r_p`` do not enter. Under streaming scoring a member is given by its singular value
    estimates (1-D, ``proxies/streaming.py``; as many as the sketch width k = r_max + p).
    """
    gains = []
    for G, layer in zip(member_grads(G_by_site, element), element.layers):  # noqa: N806
        sigma = G.double() if G.dim() == 1 else torch.linalg.svdvals(G.double())
        gains.append(sigma[: element.ranks[layer]] ** 2)
    cap = element.r_e * len(element.layers)
    return float(torch.cat(gains).sort(descending=True).values[:cap].sum())


def score(model: Any, sites: Sequence[Any], batches: Sequence[Any], section: MosSpace,
          grads: dict[str, dict[str, torch.Tensor]], proxies: Sequence[str], seed: int, scale: Any = None) -> dict[str, Any]:
    """{"spectral": {role: {option label: value}}} from the base model's data gradients (``grads["data"]``)."""
    from heterosearch.adapters.mos.options import groups

    return role_spectral(groups(section, sites), mos_spectral, grads, proxies)

"""First-order value of a MoS element from base-model gradients (for the proxies; a pure function).

G_l = dL/dW0 of member site l, (d_out, d_in) (``proxies.state`` orientation, Conv1D transposed).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from heterosearch.adapters.mos.config import MosElement


def mos_spectral(G_by_site: Mapping[str, torch.Tensor], element: MosElement) -> float:  # noqa: N803
    """A simple proxy: per-site spectral gains, capped by the pool's capacity.

    Exactly: collect sigma_j(G_l)^2 for j <= r_l (the top-r_l squared singular values of each
    member site l, as the per-site ``spectral`` proxy at rank r_l), and return the sum of the
    largest min(sum_l r_l, r_e L) of them. The cap counts the pool as r_e L independent rank-one
    directions (its parameters equal LoRA at rank r_e on each of the L layers), handed greedily
    to the sites that gain most. It ignores that drawn shards overlap across layers and that a
    row of A is stitched from l shards, so it is optimistic whenever r_l > r_e; ``shards`` and
    ``r_p`` do not enter.
    """
    keys = [f"L{i}.{element.role}" for i in element.layers]
    missing = [k for k in keys if k not in G_by_site]
    if missing:
        raise ValueError(f"{element.key}: no gradient for member sites {', '.join(missing)}")
    gains = []
    for key, layer in zip(keys, element.layers):
        sigma = torch.linalg.svdvals(G_by_site[key].double())
        gains.append(sigma[: element.ranks[layer]] ** 2)
    cap = element.r_e * len(element.layers)
    return float(torch.cat(gains).sort(descending=True).values[:cap].sum())

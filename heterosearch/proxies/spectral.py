"""spectral: a rank-aware score from the singular values of G = dL/dW0 (methods.md, B = 0 fact).

A gradient step restricted to rank r, dW = -eta * P_r(G), lowers the loss to first order by
eta * sum_{j<=r} sigma_j(G)^2: the marginal value of rank j is sigma_j^2 at a cost of
d_in + d_out parameters. The score does not depend on the virtual adapter, so it is exact
at the standard init (B = 0) and needs no scoring-only state. Related: GoRA, SPT.
"""

from __future__ import annotations

import torch

from heterosearch.errors import UserError
from heterosearch.proxies.base import PROXIES, Proxy, SiteState, with_rank_zero


@PROXIES.register("spectral")
class Spectral(Proxy):
    name = "spectral"
    summary = "sum of the top-r squared singular values of dL/dW0 (first-order gain of a rank-r step)"
    scale_degree = 0  # G does not depend on the adapter

    def curve(self, state: SiteState) -> torch.Tensor:
        r_max = state.A.shape[0]
        # Streaming scoring: the sketch's estimates of the top singular values (sketch.py).
        sigma = torch.linalg.svdvals(state.G) if state.G is not None else state.sigma
        if sigma is None:
            raise UserError("spectral needs G or its singular values, which this scoring state does not hold")
        padded = sigma.new_zeros(r_max)
        k = min(r_max, sigma.numel())
        padded[:k] = sigma[:k] ** 2
        return with_rank_zero(padded)
